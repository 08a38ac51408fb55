"""gdb as a source: memory, the program's layout and its allocator symbols.

Everything here asks gdb lazily and caches per objfile set (the Linux
lx-* `CachedType` idea): importing this module touches no target.
"""

from __future__ import annotations

import re

import gdb  # type: ignore[import-not-found]

from allocview.sources.hostmem import HostFirst, HostMemory, HostMemoryUnavailable, stub_owner
from allocview.model.arch import ARCHES, by_gdb_name
from allocview.model.arch import arch as arch_named
from allocview.model.entry_points import DEATH_PATHS, ENTRY_POINTS, tree_of
from allocview.model.errors import LayoutError, MemoryReadError
from allocview.model.layout import Layout, layout_for
from allocview.model.placement import Placement, place
from allocview.model.program import Program

from .session import session

__all__ = ["GdbMemory", "Program", "program", "placed", "relocation_command", "unmoved_symbols",
           "host_memory", "memory", "address_of"]


class GdbMemory:
    """model's Memory over `Inferior.read_memory`: one stub round trip per
    call, so callers read big ranges (metadata) in one go."""

    def __init__(self, inferior=None):
        self.inferior = inferior or gdb.selected_inferior()
        self.reads = 0

    def read(self, addr: int, size: int) -> bytes:
        self.reads += 1
        try:
            return self.inferior.read_memory(addr, size).tobytes()
        except gdb.MemoryError as e:
            raise MemoryReadError(addr, size, str(e)) from None
        except (OverflowError, ValueError) as e:
            raise MemoryReadError(addr, size, str(e)) from None


# ----------------------------------------------- the QEMU process behind the stub

def refuse_host(reason: str) -> None:
    """Stop using the QEMU process for this connection, saying why."""
    host = session().host
    if host.memory is not None:
        host.memory.close()
    host.memory, host.why_not = None, reason


def _monitor(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        try:
            out.append(gdb.execute(f"monitor {line}", to_string=True))
        except gdb.error as e:
            raise HostMemoryUnavailable(f"monitor {line}: {e}") from None
    return out


def host_memory() -> HostMemory | None:
    """The memory of the QEMU process whose gdb stub gdb is connected to,
    when it runs on this host as this user (found once per connection:
    the stub's TCP port, then HMP `info mtree -f` and `gpa2hva` through
    `monitor`, sent only once a local QEMU owns that port). None, with
    the session's host.why_not, otherwise."""
    s = session()
    host = s.host
    if host.mode != "auto":
        return None               # what was found stays: switching back costs nothing
    inf = gdb.selected_inferior()
    conn = getattr(inf, "connection", None)
    details = getattr(conn, "details", None) or ""
    key = (getattr(inf, "connection_num", None), details)
    if key == host.key:
        return host.memory
    s.forget_host()
    host.key = key
    if getattr(conn, "type", None) not in ("remote", "extended-remote"):
        host.why_not = f"the target is not a gdb stub on a TCP port ({details or 'none'})"
        return None
    pid, host.why_not = stub_owner(details)
    if pid is None:
        return None
    try:
        host.memory = HostMemory.open(pid, _monitor)
        host.why_not = ""
    except HostMemoryUnavailable as e:
        host.why_not = str(e)
    return host.memory


def memory(inferior=None):
    """A Memory for this stop: guest RAM from the QEMU process when it can
    be (checked against the stub on the first read), else the stub."""
    stub = GdbMemory(inferior)
    host = host_memory()
    return stub if host is None else HostFirst(host, stub, refuse_host)


def _arch_name() -> str:
    try:
        name = gdb.selected_inferior().architecture().name()
    except (gdb.error, AttributeError):
        name = gdb.execute("show architecture", to_string=True).split()[-1].rstrip(".)")
    found = by_gdb_name(name)
    if found is None:
        raise gdb.GdbError(f"allocview: gdb architecture {name!r} is not one allocview knows "
                           f"({', '.join(ARCHES)})")
    return found.name


def address_of(names: list[str]) -> int | None:
    for n in names:
        try:
            return int(gdb.parse_and_eval(f"(unsigned long)&{n}"))
        except gdb.error:
            continue
    return None


def _field_offsets(t) -> dict:
    return {f.name: (f.bitpos // 8, f.type.sizeof, f.type) for f in t.fields()}


def _dwarf_layout(arch: str, format_hint: str | None) -> Layout | None:
    try:
        t = gdb.lookup_type("struct mem_area")
    except gdb.error:
        return None
    f = _field_offsets(t)
    needed = {"base", "top", "page_states", "freelists"}
    if not needed <= set(f):
        raise gdb.GdbError("allocview: struct mem_area lacks " + ", ".join(sorted(needed - set(f))))
    lo, hi = f["freelists"][2].range()
    try:
        areas_t = gdb.parse_and_eval("'alloc_page.c'::areas").type
    except gdb.error:
        areas_t = gdb.lookup_static_symbol("areas").type
    max_areas = areas_t.range()[1] + 1
    fmt = format_hint or ("2021" if "max_order" in f else "2020")
    return Layout.from_offsets(arch, fmt, size=t.sizeof, base_off=f["base"][0],
                               base_size=f["base"][1], top_off=f["top"][0],
                               page_states_off=f["page_states"][0],
                               max_order_off=f["max_order"][0] if "max_order" in f else None,
                               freelists_off=f["freelists"][0], nlists=hi - lo + 1,
                               max_areas=max_areas)


def program(format_hint: str | None = None) -> Program:
    """What the allocator looks like in the program gdb has loaded, at the
    addresses gdb's symbols say."""
    s = session()
    cached = s.program
    if cached is not None and (format_hint is None or cached.layout.format == format_hint):
        return cached
    if not gdb.objfiles():
        raise gdb.GdbError("allocview: no program loaded; `file TEST.elf` first")
    arch = _arch_name()
    areas = address_of(["'alloc_page.c'::areas", "areas"])
    mask = address_of(["'alloc_page.c'::areas_mask", "areas_mask"])
    if areas is None or mask is None:
        raise gdb.GdbError("allocview: no `areas`/`areas_mask` symbols: this program has no "
                           "kvm-unit-tests page allocator (or it is stripped)")
    try:
        layout = _dwarf_layout(arch, format_hint)
        source = "DWARF"
    except LayoutError as e:
        raise gdb.GdbError(f"allocview: {e}") from None
    syms = {e.name: a for e in ENTRY_POINTS if (a := address_of([e.name])) is not None}
    # drive stops a call that reaches these, and restores the lock after it
    syms.update({name: a for name in DEATH_PATHS if (a := address_of([name])) is not None})
    lock = address_of(["'alloc_page.c'::lock"])
    if lock is not None:
        syms["lock"] = lock
    if layout is None:
        hint = format_hint or tree_of(syms)
        layout, source = layout_for(arch, hint), "built-in table (no debug info)"
    path, code = _code_sections()
    a = arch_named(arch)
    s.program = Program(path, arch, layout, {"areas": areas, "areas_mask": mask, **syms},
                        has_dwarf=source == "DWARF", format_hint=layout.format,
                        relocatable=a.boot.relocatable,
                        link_base=min((lo for lo, _off, _n in code), default=0),
                        samples=_samples(path, code), layout_source=source)
    return s.program


_SECTION = re.compile(r"^\s*\[\d+\]\s+0x([0-9a-fA-F]+)->0x([0-9a-fA-F]+) at 0x([0-9a-fA-F]+): "
                      r"(\S+) (.*)$")


def _code_sections() -> tuple[str, list[tuple[int, int, int]]]:
    """The main file and its loaded code sections as (address, file offset,
    size), from `maint info sections` (gdb's view, relocated if the user
    relocated it)."""
    try:
        text = gdb.execute("maint info sections", to_string=True)
    except gdb.error:
        return "", []
    path, out = "", []
    for line in text.splitlines():
        if line.startswith(("Exec file:", "Object file:")):
            if path:
                break
            m = re.search(r"`(.*)'", line)
            path = m.group(1) if m else ""
            continue
        m = _SECTION.match(line)
        if m and {"ALLOC", "LOAD", "CODE", "HAS_CONTENTS"} <= set(m.group(5).split()):
            lo, hi, off = (int(m.group(i), 16) for i in (1, 2, 3))
            out.append((lo, off, hi - lo))
    return path, out


def _samples(path: str, code: list[tuple[int, int, int]], count: int = 8,
             size: int = 32) -> tuple[tuple[int, bytes], ...]:
    """Pieces of the code as the file has it (what model.placement looks
    for in guest memory)."""
    total = sum(n for _lo, _off, n in code)
    if not path or total < size:
        return ()
    out = []
    try:
        with open(path, "rb") as f:
            for lo, off, n in code:
                want = max(1, count * n // total)
                step = max(size, n // want)
                for pos in range(0, n - size + 1, step):
                    f.seek(off + pos)
                    piece = f.read(size)
                    if len(piece) == size and piece.count(0) < size // 2:
                        out.append((lo + pos, piece))
    except OSError:
        return ()
    return tuple(out[:count * 2])


def placed() -> tuple[Program, "Placement"]:
    """The program where the guest has it (model.placement, from the
    guest's bytes; once per connection and program), and how it was found.
    Raises GdbError when its code is definitely not in the guest."""
    s = session()
    prog = program()
    inf = gdb.selected_inferior()
    key = (id(prog), getattr(inf, "connection_num", None), inf.pid)
    if s.placed is not None and s.placed[0] == key:
        return s.placed[1], s.placed[2]
    a = arch_named(prog.arch)
    where = place(memory(inf), list(prog.samples), relocatable=prog.relocatable,
                  candidates=a.boot.load_addresses, link_base=prog.link_base)
    if where.found is False:
        raise gdb.GdbError(f"allocview: {prog.name} does not match the guest: {where.how}")
    if prog.relocatable and where.found is None:
        raise gdb.GdbError(f"allocview: {prog.name}: {where.how}")
    # what reports call the load offset is from the ELF's own addresses: a
    # relocatable program is linked at 0, so gdb's code base is what the
    # user already moved its symbols by (symbol-file -o)
    told = Placement(where.offset + (prog.link_base if prog.relocatable else 0), where.found,
                     where.how)
    s.placed = (key, prog.relocated(where.offset), told, where.offset)
    return s.placed[1], s.placed[2]


def unmoved_symbols() -> int:
    """How far gdb's symbols are from where the guest has the program
    (0: gdb's symbols are right)."""
    placed()
    return session().placed[3]


def relocation_command() -> str | None:
    """The command that moves gdb's symbols where the guest has the
    program, or None when they are there already."""
    prog, where = placed()
    if not unmoved_symbols():
        return None
    return f"symbol-file -o {where.offset:#x} {prog.path}"
