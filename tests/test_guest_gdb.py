"""gdb and QMP on the fixture guest: inferior calls into the allocator,
the exit request, a 5 GiB guest (3 GiB on s390x), the other allocators'
globals, and the harness's memory dump helpers, on every arch."""

from __future__ import annotations

import struct

import pytest

from harness import NEW_ARCHES, GuestError, Variant, parse_value, replay
from harness.gdbstate import diff, read_guest, read_model
from allocview.model.constants import FLAG_DONTZERO, FLAG_FRESH

VARIANTS = ("x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020")
NEW_VARIANTS = tuple(f"{a}-{f}" for a in NEW_ARCHES for f in ("2021", "2020"))


def _call(gdb, expr: str) -> int:
    return parse_value(gdb.cli(f"print {expr}"))


@pytest.mark.parametrize("variant", VARIANTS + NEW_VARIANTS)
def test_inferior_calls_from_idle_match_the_model(make_guest, variant):
    """gdb's dummy frames on every arch (ppc64: ELFv2, relocated). Eight
    live blocks are freed first: the single-area arches have exhausted
    their only area at checkpoint 5."""
    g = make_guest(variant)
    g.resume()
    g.wait_checkpoint(5)
    gdb = g.gdb                                   # attaching stops it in idle()
    assert "idle" in gdb.cli("bt")
    w = replay(g, 5)
    m = w.allocator
    victims = [a for a, _ in w.live if a][:8]
    for victim in victims:
        gdb.cli(f"call free_pages((void *){victim:#x})")
        m.free_pages(victim)
    victim = victims[0]
    if variant.endswith("2021"):
        got = [_call(gdb, f"(unsigned long)alloc_pages_flags(1, {FLAG_DONTZERO:#x})"),
               _call(gdb, f"(unsigned long)memalign_pages_flags(0x8000, 0x2000, {FLAG_DONTZERO:#x})"),
               _call(gdb, f"(unsigned long)alloc_pages_flags(0, {FLAG_FRESH | FLAG_DONTZERO:#x})"),
               _call(gdb, f"(int)reserve_pages({victim:#x}, 3)"),
               _call(gdb, "(unsigned long)alloc_pages_flags(0, 0)")]
        want = [m.alloc_pages_flags(1, FLAG_DONTZERO),
                m.memalign_pages_flags(0x8000, 0x2000, FLAG_DONTZERO),
                m.alloc_pages_flags(0, FLAG_FRESH | FLAG_DONTZERO),
                m.reserve_pages(victim, 3),
                m.alloc_pages_flags(0, 0)]
    else:
        got = [_call(gdb, "(unsigned long)alloc_pages(1)"),
               _call(gdb, "(unsigned long)memalign_pages(0x8000, 0x2000)"),
               _call(gdb, f"(unsigned long)alloc_pages_special({victim:#x}, 3)"),
               _call(gdb, "(unsigned long)alloc_page()")]
        want = [m.alloc_pages_flags(1, FLAG_DONTZERO),
                m.memalign_pages_flags(0x8000, 0x2000, FLAG_DONTZERO),
                m.alloc_pages_special(victim, 3),
                m.alloc_pages_flags(0, FLAG_DONTZERO)]
    assert got == want
    assert got[0]                                 # not all NULL: the calls did work
    assert diff(read_guest(gdb), read_model(m)) == []
    # the guest still runs, and leaves through exit_request
    gdb.cli("set var exit_request = 3")
    g.resume()
    assert g.wait_exit(30) == 7                   # QEMU's status or the EXIT: line
    assert "exit code=3" in g.console.rstrip().splitlines()[-2:]


@pytest.mark.parametrize("variant,mask", [("x86_64-2021", 0b1110), ("x86_64-2020", 0b110)])
def test_5g_guest_has_low_and_high_areas(make_guest, variant, mask):
    g = make_guest(variant, memory="5G")
    gdb = g.stop_at_checkpoint(2)
    assert gdb.print_int("'alloc_page.c'::areas_mask") == mask
    high_base = gdb.print_int("'alloc_page.c'::areas[1].base")
    high_top = gdb.print_int("'alloc_page.c'::areas[1].top")
    low_top = gdb.print_int("'alloc_page.c'::areas[2].top")
    assert 0x100000 <= high_base < high_top == 0x180000      # [4 GiB, 6 GiB)
    assert 0x1000 < low_top <= 0x100000                      # below 4 GiB
    assert diff(read_guest(gdb), read_model(replay(g, 2).allocator)) == []
    # the highest slot is used first: allocations came from HIGH
    live = gdb.print_int("(unsigned long)workload_live[0].addr") or \
        gdb.print_int("(unsigned long)workload_live[1].addr")
    assert live >= 4 << 30


@pytest.mark.parametrize("variant", ["s390x-2021", "s390x-2020"])
def test_3g_s390x_guest_has_normal_and_low_areas(make_guest, variant):
    g = make_guest(variant, memory="3G")
    for cp in (2, 5):
        gdb = g.stop_at_checkpoint(cp)
        assert gdb.print_int("'alloc_page.c'::areas_mask") == 0b11
        assert gdb.print_int("'alloc_page.c'::areas[0].base") > 0x80000       # NORMAL
        assert gdb.print_int("'alloc_page.c'::areas[0].top") == 0xC0000
        assert gdb.print_int("'alloc_page.c'::areas[1].top") == 0x80000       # LOW
        assert diff(read_guest(gdb), read_model(replay(g, cp).allocator)) == []
    # NORMAL, slot 0, is used first
    assert gdb.print_int("(unsigned long)vm_ptrs[0]") >= 2 << 30


def test_stop_at_exact_checkpoints_and_refuse_the_past(make_guest):
    g = make_guest("i386-2021")
    gdb = g.stop_at_checkpoint(3)
    assert _call(gdb, "n") == 3 and set(g.checkpoints) == {1, 2}
    assert "checkpoint" in gdb.cli("frame")
    with pytest.raises(GuestError, match="past checkpoint 2"):
        g.stop_at_checkpoint(2)
    g.stop_at_checkpoint(4)
    assert _call(gdb, "n") == 4
    assert _call(gdb, "current_checkpoint") == 3     # checkpoint(4) has not run yet


@pytest.mark.parametrize("variant", ["x86_64-2021", "i386-2020", "s390x-2021", "ppc64-2020",
                                     "aarch64-2021", "riscv64-2020"])
def test_vmalloc_and_alloc_phys_globals(guest_at, variant):
    v = Variant.parse(variant)
    g = guest_at(variant, 2)
    gdb = g.gdb
    ptr = v.info.ptr_size
    ps = v.page_size                              # 64 KiB on ppc64
    assert _call(gdb, "vm_count") == 5
    ptrs = [gdb.print_int(f"(unsigned long)vm_ptrs[{i}]") for i in range(5)]
    for p, align in zip(ptrs[:3], (16, 64, 256)):
        assert p % ps == align
        assert gdb.print_int(f"((unsigned long *){p:#x})[-1]") == 0x7E57C0DE
    for p, npages in zip(ptrs[3:], (3, 6)):
        assert p % ps == 0
        meta = gdb.read_memory(p - 2 * ptr, 2 * ptr)
        fmt = (">" if v.big_endian else "<") + ("2Q" if ptr == 8 else "2I")
        assert struct.unpack(fmt, meta) == (npages, 0x7E57C0DE)
    vfree_top = gdb.print_int("(unsigned long)'vmalloc.c'::vfree_top")
    regions = [p & ~(ps - 1) for p in ptrs[:3]] + [p - ps for p in ptrs[3:]]
    assert vfree_top == min(regions)             # the lowest region start: growing down
    assert _call(gdb, "'alloc_phys.c'::nr_regions") == 3
    assert gdb.print_int("sizeof('alloc_phys.c'::regions) / sizeof('alloc_phys.c'::regions[0])") == 256
    r0 = gdb.print_int("'alloc_phys.c'::regions[0].base")
    end = gdb.print_int("'alloc_phys.c'::top")
    assert gdb.print_int("'alloc_phys.c'::base") == end            # the rest went away
    assert gdb.print_int("'alloc_phys.c'::align_min") == 64
    first_pfn = g.init_calls[0].base
    assert r0 < end <= first_pfn << v.page_shift


def test_noalloc_guest_idles_with_no_area(make_guest):
    g = make_guest("x86_64-2021", mode="noalloc", paused=False)
    g.wait_console(r"^noalloc$")
    gdb = g.gdb
    assert gdb.print_int("'alloc_page.c'::areas_mask") == 0
    assert gdb.print_int("'alloc_page.c'::areas[3].page_states") == 0
    assert not g.init_calls


# (variant, -m, the slot holding the area): ppc64's pseries takes RAM in 256 MiB units
QMP_CASES = [("x86_64-2021", "64M", 2), ("s390x-2021", "128M", 1), ("aarch64-2021", "128M", 0),
             ("ppc64-2021", "256M", 0), ("riscv64-2021", "128M", 0)]


@pytest.mark.parametrize("variant,memory,slot", QMP_CASES, ids=[c[0] for c in QMP_CASES])
def test_qmp_dump_pmemsave_and_shared_memory_see_the_metadata(make_guest, tmp_path, variant,
                                                              memory, slot):
    g = make_guest(variant, memory=memory, shared_memory=True)
    v = g.variant
    gdb = g.stop_at_checkpoint(2)
    ps = gdb.print_int(f"'alloc_page.c'::areas[{slot}].page_states")
    n = gdb.print_int(f"'alloc_page.c'::areas[{slot}].top - 'alloc_page.c'::areas[{slot}].base")
    want = gdb.read_memory(ps, n)
    assert any(want)
    assert g.read_phys(ps, n) == want             # identity mapped: virtual == physical
    with open(g.mem_path, "rb") as f:            # file offset 0 is the first RAM byte
        f.seek(g.mem_file_offset(ps))
        assert f.read(n) == want
    core = g.dump_guest_memory(tmp_path / "core.elf").read_bytes()
    e = ">" if v.big_endian else "<"
    assert core[:4] == b"\x7fELF" and core[4] == 2     # ELFCLASS64
    assert core[5] == (2 if v.big_endian else 1)        # ELFDATA2MSB on s390x and ppc64
    phoff, = struct.unpack_from(e + "Q", core, 0x20)
    phentsize, phnum = struct.unpack_from(e + "HH", core, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from(
            e + "IIQQQQ", core, phoff + i * phentsize)
        if p_type == 1 and p_paddr <= ps and ps + n <= p_paddr + p_filesz:
            off = p_offset + ps - p_paddr
            assert core[off:off + n] == want
            break
    else:
        pytest.fail("no PT_LOAD segment covers the metadata")
    assert g.query_status() in ("debug", "paused")
