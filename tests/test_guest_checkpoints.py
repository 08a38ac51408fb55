"""The fixture guest's allocator, read with plain gdb at each checkpoint,
equals the reference model replaying the same workload: areas, masks,
metadata bytes, and every free list node by node. x86 at every
checkpoint, the other arches (big-endian s390x and ppc64, 64 KiB pages on
ppc64, relocated aarch64, ppc64 and riscv64) at 2 and 5."""

from __future__ import annotations

import pytest

from harness import NEW_ARCHES, Variant, replay
from harness.gdbstate import diff, read_guest, read_model

VARIANTS = ("x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020")
NEW_VARIANTS = tuple(f"{a}-{f}" for a in NEW_ARCHES for f in ("2021", "2020"))
CASES = [(v, cp) for v in VARIANTS for cp in (1, 2, 3, 4, 5)] + \
    [(v, cp) for v in NEW_VARIANTS for cp in (2, 5)]


@pytest.mark.parametrize("variant,cp", CASES, ids=[f"{v}-cp{c}" for v, c in CASES])
def test_guest_state_equals_model_at_checkpoint(guest_at, variant, cp):
    g = guest_at(variant, cp)
    gdb = g.gdb
    w = replay(g, cp)

    ops, hsh = w.checkpoints[cp]
    assert gdb.print_int("workload_ops") == ops
    assert gdb.print_int("workload_hash") == hsh
    for n, printed in g.checkpoints.items():   # the lines already printed
        assert printed == w.checkpoints[n], f"checkpoint {n} line"

    guest = read_guest(gdb)
    model = read_model(w.allocator)
    assert diff(guest, model) == []
    assert guest.raw_areas == model.raw_areas
    assert guest.areas_mask and set(guest.areas) == set(model.areas)


@pytest.mark.parametrize("variant", NEW_VARIANTS)
def test_new_arch_areas_match_memory_size(guest_at, variant):
    """256M: one area, in the slot of the RAM (s390x: LOW, below 2 GiB;
    the others' single NORMAL slot), up to the end of RAM in the arch's
    pages; the 2021 pfns are 64-bit, 2020's pointer sized (8 bytes too)."""
    v = Variant.parse(variant)
    g = guest_at(variant, 2)
    gdb = g.gdb
    slot = 1 if v.arch == "s390x" else 0
    assert gdb.print_int("'alloc_page.c'::areas_mask") == 1 << slot
    top = gdb.print_int(f"'alloc_page.c'::areas[{slot}].top")
    assert top == (v.ram_start + (256 << 20)) >> v.page_shift
    base = gdb.print_int(f"'alloc_page.c'::areas[{slot}].base")
    image_end = gdb.print_int("(unsigned long)&_end")
    assert image_end >> v.page_shift < base < top       # the RAM above the image
    assert gdb.print_int("sizeof('alloc_page.c'::areas[0].base)") == 8
    nlists = gdb.print_int("sizeof('alloc_page.c'::areas[0].freelists) / "
                           "sizeof('alloc_page.c'::areas[0].freelists[0])")
    assert nlists == 64 - v.page_shift                  # 48 on ppc64 (64 KiB pages)
    max_areas = gdb.print_int("sizeof('alloc_page.c'::areas) / sizeof('alloc_page.c'::areas[0])")
    assert max_areas == v.info.max_areas[v.fmt]


@pytest.mark.parametrize("variant", VARIANTS)
def test_areas_match_memory_size(guest_at, variant):
    """256M: 2021 has LOWEST (below 16 MiB) and LOW; 2020 has LOW alone."""
    g = guest_at(variant, 1)
    mask = g.gdb.print_int("'alloc_page.c'::areas_mask")
    assert mask == (0b1100 if variant.endswith("2021") else 0b100)
    top = g.gdb.print_int("'alloc_page.c'::areas[2].top")
    assert 0xF000 < top <= 0x10000       # just below 256 MiB
    # the i386 build keeps its 64-bit pfns in 2021, pointer-sized in 2020
    size = g.gdb.print_int("sizeof('alloc_page.c'::areas[0].base)")
    assert size == (8 if variant.endswith("2021") or variant.startswith("x86_64") else 4)


def test_workload_reaches_every_kind_of_state(guest_at):
    """The checkpoints hold what they promise (2021 x86_64)."""
    from allocview.model.constants import FLAG_FRESH

    g = guest_at("x86_64-2021", 5)
    w = replay(g, 5)
    at = {n: w.checkpoints[n][0] for n in w.checkpoints}
    ops = w.ops
    funcs = {op.func for op in ops[:at[2]]}
    assert {"alloc_pages_flags", "memalign_pages_flags", "free_pages", "reserve_pages",
            "unreserve_pages"} <= funcs
    assert any(op.func == "reserve_pages" and op.result == -1 for op in ops[:at[2]])
    # 3: reserved pages held
    meta = b"".join(a.metadata for a in read_model(w.allocator).areas.values())
    assert meta.count(0xC0) > 0
    # 4: fresh allocations all served
    fresh = [op for op in ops[at[3]:at[4]] if op.args[1] & FLAG_FRESH]
    assert len(fresh) == 32 and all(op.result for op in fresh)
    # 5: the smallest area (LOWEST, slot 3) is exhausted: no free page left
    lowest = read_guest(g.gdb).areas[3]
    assert all(len(lst) == 0 for lst in lowest.freelists)
    assert not any(b & 0xC0 in (0x00, 0x40) for b in lowest.metadata)
