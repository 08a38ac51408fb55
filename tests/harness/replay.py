"""The reference model (model.reference) replaying a guest's workload.

The model's `areas[]` and `areas_mask` are placed at the guest's own
addresses (from the ELF symbol table, plus the variant's load offset when
it is relocatable), so its memory image can be compared byte for byte
with the guest's.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile

from .build import Variant

__all__ = ["elf_objects", "model_for", "replay", "merging_calls", "first_merging_call"]


def elf_objects(elf: "str | Path", names=("areas", "areas_mask")) -> dict[str, int]:
    """Addresses of data objects (local ones included) by name; a name
    defined more than once is an error."""
    found: dict[str, list[int]] = {n: [] for n in names}
    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        for sym in symtab.iter_symbols():
            if sym.name in found and sym["st_info"]["type"] == "STT_OBJECT":
                found[sym.name].append(sym["st_value"])
    out = {}
    for n, addrs in found.items():
        if len(addrs) != 1:
            raise LookupError(f"{elf}: {len(addrs)} data symbols named {n!r}")
        out[n] = addrs[0]
    return out


def model_for(variant: "str | Variant"):
    """A fresh reference Allocator laid out like `variant`'s guest."""
    from allocview.model.layout import layout_for
    from allocview.model.reference import Allocator

    v = Variant.parse(variant)
    sym = elf_objects(v.elf)
    off = v.load_offset
    return Allocator(layout_for(v.arch, v.fmt), areas_addr=sym["areas"] + off,
                     mask_addr=sym["areas_mask"] + off)


def replay(guest, checkpoint: int):
    """A guest.workload.Workload run on a fresh model up to `checkpoint`,
    with `guest`'s init calls, seed, mix and ops; `.allocator` is the model."""
    from guest.workload import DEFAULT_OPS, Workload

    calls = guest.init_calls
    if not calls:
        raise ValueError("the guest printed no init_area line yet")
    w = Workload(model_for(guest.variant), guest.seed, guest.mix, guest.variant.fmt, calls,
                 nops=guest.ops if guest.ops is not None else DEFAULT_OPS,
                 arch=guest.variant.arch)
    return w.run_to(checkpoint)


def merging_calls(g, upto: int = 2) -> list[int]:
    """Indexes, counted from checkpoint 1, of the calls after which the
    design has merged something: where a no-merge guest breaks anew."""
    w1 = replay(g, 1)
    al = w1.allocator
    ops = replay(g, upto).ops[len(w1.ops):]
    out = []
    for i, op in enumerate(ops):
        if op.func in ("free_pages", "unreserve_pages"):
            pfn = al.pfn(op.args[0])
            a = next(x for x in al.areas if x and x.base <= pfn < x.top)
            before = a.meta[pfn - a.base] & 0x3F
            getattr(al, op.func)(*op.args)
            if a.meta[pfn - a.base] & 0x3F > before:
                out.append(i)
        else:
            getattr(al, op.func)(*op.args)
    assert out, "no merge in the workload"
    return out


def first_merging_call(g, upto: int = 2) -> int:
    return merging_calls(g, upto)[0]
