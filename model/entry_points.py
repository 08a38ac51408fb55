"""The allocator's entry points, one list for both API generations
(ALLOCATOR.md, "Entry points"): names, parameters and results. trace,
check-each, drive, replay and the symbol readers all take them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EntryPoint", "ENTRY_POINTS", "ROLES", "DEATH_PATHS", "BY_NAME", "SIGNATURES", "VOID_FUNCS", "outermost",
           "tree_of"]


@dataclass(frozen=True)
class EntryPoint:
    """One function. params: (name, size in bytes; 0 for the guest's word:
    a pointer, size_t or unsigned long); returns: "pointer", "int" or None;
    outer: one of the set that sees every call of its tree without
    calling another of the set (what trace and check-each break on);
    role: what it does to the allocator, which is how drive generates its
    calls (model/mixes.py makes each parameter by its name)."""
    name: str
    tree: str                                  # "2021", "2020" or "both"
    params: tuple[tuple[str, int], ...]
    returns: str | None
    outer: bool
    role: str                                  # ROLES

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(size for _, size in self.params)

    def c_signature(self) -> str:
        ctype = {1: "u8", 4: "unsigned int", 8: "u64", 0: "unsigned long"}
        ret = {"pointer": "void *", "int": "int", None: "void "}[self.returns]
        args = ", ".join(f"{ctype[s]} {n}" for n, s in self.params) or "void"
        return f"{ret}{self.name}({args})"


# init adds an area; alloc and memalign take a block; free gives one back;
# reserve takes given pages, unreserve gives them back
ROLES = ("init", "alloc", "memalign", "free", "reserve", "unreserve")

ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("page_alloc_init_area", "both", (("n", 1), ("base_pfn", 8), ("top_pfn", 8)),
               None, True, "init"),
    EntryPoint("free_pages", "both", (("mem", 0),), None, True, "free"),
    # 2021: alloc_page(), alloc_pages(), memalign_pages() and the *_area
    # forms are inline wrappers over these
    EntryPoint("alloc_pages_flags", "2021", (("order", 4), ("flags", 4)), "pointer", True,
               "alloc"),
    EntryPoint("memalign_pages_flags", "2021", (("alignment", 0), ("size", 0), ("flags", 4)),
               "pointer", True, "memalign"),
    EntryPoint("reserve_pages", "2021", (("addr", 8), ("n", 0)), "int", True, "reserve"),
    EntryPoint("unreserve_pages", "2021", (("addr", 8), ("n", 0)), None, True,
               "unreserve"),
    # 2020: alloc_pages(), alloc_page() and memalign_pages() call the *_area forms
    EntryPoint("alloc_pages_area", "2020", (("areas", 4), ("order", 4)), "pointer", True,
               "alloc"),
    EntryPoint("alloc_pages", "2020", (("order", 4),), "pointer", False, "alloc"),
    EntryPoint("alloc_page", "2020", (), "pointer", False, "alloc"),
    EntryPoint("memalign_pages_area", "2020", (("areas", 4), ("alignment", 0), ("size", 0)),
               "pointer", True, "memalign"),
    EntryPoint("memalign_pages", "2020", (("alignment", 0), ("size", 0)), "pointer", False,
               "memalign"),
    EntryPoint("alloc_pages_special", "2020", (("addr", 8), ("n", 0)), "pointer", True,
               "reserve"),
    EntryPoint("free_pages_special", "2020", (("addr", 8), ("n", 0)), None, True,
               "unreserve"),
)
BY_NAME: dict[str, EntryPoint] = {e.name: e for e in ENTRY_POINTS}

# Where a test ends when something goes wrong (kvm-unit-tests' assert and
# report_abort call abort(), unhandled exceptions end in abort() or exit()):
# a call that reaches one has killed the guest (drive stops it there).
DEATH_PATHS = ("abort", "exit")

# (parameter sizes, returns something) by name: what trace files and the
# call readers need
SIGNATURES: dict[str, tuple[tuple[int, ...], bool]] = {
    e.name: (e.sizes, e.returns is not None) for e in ENTRY_POINTS}
VOID_FUNCS = frozenset(e.name for e in ENTRY_POINTS if e.returns is None)


def tree_of(names) -> str:
    """Which API generation a program has, from the function names it
    defines: the 2021 set has alloc_pages_flags."""
    return "2021" if "alloc_pages_flags" in set(names) else "2020"


def outermost(names) -> list[str]:
    """The outer entry points of the program's tree that it defines, in
    table order."""
    have = set(names)
    tree = tree_of(have)
    return [e.name for e in ENTRY_POINTS if e.outer and e.tree in (tree, "both")
            and e.name in have]
