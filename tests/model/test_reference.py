"""The reference allocator executes ALLOCATOR.md's Operations, list order
included. Addresses here are worked out by hand from the specification."""

import pytest

from allocview.model.constants import AREA_ANY_NUMBER, FLAG_DONTZERO, FLAG_FRESH
from allocview.model.errors import ModelError
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator, get_order
from allocview.model.snapshot import decode

DZ = FLAG_DONTZERO


def small(fmt="2021", arch="x86_64"):
    """Area 3 over pfns [0x100, 0x110): one metadata page, base 0x101, then
    blocks 0x101/0, 0x102/1, 0x104/2, 0x108/3."""
    al = Allocator(layout_for(arch, fmt))
    al.init_area(3, 0x100, 0x110)
    return al


def lists(al, slot=3, upto=4):
    return [al.freelist(slot, k) for k in range(upto)]


def test_init_cuts_largest_aligned_blocks_and_lists_them_descending():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x120)        # base 0x101: 0x101/0 0x102/1 0x104/2 0x108/3 0x110/4
    a = al.area(3)
    assert (a.base, a.top, a.page_states, a.max_order) == (0x101, 0x120, 0x100000, 4)
    assert lists(al, upto=5) == [[0x101000], [0x102000], [0x104000], [0x108000], [0x110000]]
    assert a.meta[:4] == bytes([0x00, 0x01, 0x01, 0x02])
    assert al.areas_mask == 1 << 3


def test_init_pushes_each_block_at_the_front():
    al = Allocator(layout_for("x86_64", "2021"), areas_addr=0x2000_0000)
    al.init_area(3, 0x0, 0x1400)         # base 2: 2/1 4/2 ... 0x400/10 0x800/11 0x1000/10
    assert al.freelist(3, 10) == [0x1000000, 0x400000]
    assert al.freelist(3, 11) == [0x800000]


def test_metadata_pages_follow_the_formula():
    al = Allocator(layout_for("x86_64", "2021"), areas_addr=0x2000_0000)
    al.init_area(3, 0x0, 4097 + 1)       # (4098 + 4096) // 4097 = 2 metadata pages
    assert al.area(3).base == 2


def test_area_any_cuts_at_slot_boundaries_x86_2021():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(AREA_ANY_NUMBER, 0xF00, 0x100100)   # 15 MiB .. 4 GiB + 1 MiB
    got = {a.slot: (a.start, a.top) for a in al.areas if a}
    assert got == {3: (0xF00, 0x1000), 2: (0x1000, 0x100000), 1: (0x100000, 0x100100)}
    assert al.areas_mask == 0b1110


def test_named_slot_takes_the_whole_range_and_slots_init_once():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(0, 0xF00, 0x1100)
    assert (al.area(0).start, al.area(0).top) == (0xF00, 0x1100)
    with pytest.raises(ModelError, match="already initialised"):
        al.init_area(0, 0x2000, 0x2100)


def test_alloc_takes_front_and_split_fresh_goes_to_back():
    al = small()
    assert al.alloc_pages_flags(0, DZ) == 0x101000
    # list 0 empty: split 0x102/1 (FRESH): halves at the back: [0x102, 0x103]; first half goes on
    assert al.alloc_pages_flags(0, DZ) == 0x102000
    assert lists(al) == [[0x103000], [], [0x104000], [0x108000]]
    assert al.area(3).meta[:3] == bytes([0x80, 0x80, 0x00])


def test_split_of_a_free_block_goes_to_the_front_second_half_first():
    al = small("2020")
    al.free_pages(al.alloc_pages_flags(1, DZ))     # 0x102/1 back as a non-FRESH order-1 block
    al.alloc_pages_flags(0, DZ)                    # takes 0x101
    assert lists(al)[1] == [0x102000]
    al.alloc_pages_flags(0, DZ)                    # splits 0x102: list 0 = [second, first]
    assert lists(al)[0] == [0x103000]              # first (0x102) was taken


def test_free_merges_with_buddies_and_pushes_front():
    al = small()
    a0 = al.alloc_pages_flags(0, DZ)
    a1 = al.alloc_pages_flags(0, DZ)
    al.free_pages(a0)
    assert lists(al)[0] == [0x101000, 0x103000]
    al.free_pages(a1)      # 0x102 merges with 0x103 into 0x102/1; 0x101's buddy 0x100 is metadata
    assert lists(al) == [[0x101000], [0x102000], [0x104000], [0x108000]]
    assert al.area(3).meta[:3] == bytes([0x40, 0x41, 0x41])


def test_fresh_alloc_returns_second_half_and_keeps_first_fresh_at_back():
    al = small()
    a0, a1 = al.alloc_pages_flags(0, DZ), al.alloc_pages_flags(0, DZ)
    al.free_pages(a0)
    al.free_pages(a1)                              # list 1 now holds 0x102/1 FREE
    got = al.alloc_pages_flags(0, DZ | FLAG_FRESH)
    # list 1's back node is FREE, skipped; list 2's 0x104 (FRESH) is split once to order 1;
    # 0x104/1 is taken: 0x104/0 stays FRESH at the back of list 0, 0x105 is the result
    assert got == 0x105000
    assert lists(al) == [[0x101000, 0x104000], [0x102000, 0x106000], [], [0x108000]]
    assert al.area(3).meta[3:6] == bytes([0x00, 0x80, 0x01])


def test_max_order_drops_only_on_split():
    al = small()
    assert al.alloc_pages_flags(3, DZ) == 0x108000
    assert al.area(3).max_order == 3               # taken whole: max_order stays
    al.free_pages(0x108000)
    al.alloc_pages_flags(2, DZ)                    # 0x104 whole
    assert al.alloc_pages_flags(2, DZ) == 0x108000  # splits 0x108/3: list 3 empties
    assert al.area(3).max_order == 2


def test_alloc_fails_above_max_order_even_with_a_free_block_there():
    # The design's own gap: free() pushes a block above a max_order that split lowered.
    al = small()
    big = al.alloc_pages_flags(3, DZ)
    al.free_pages(big)
    al.alloc_pages_flags(2, DZ)
    b = al.alloc_pages_flags(2, DZ)                # split 0x108: max_order 2
    c = al.alloc_pages_flags(2, DZ)                # 0x10c/2
    al.free_pages(b)
    al.free_pages(c)                               # merges back to 0x108/3: raises max_order
    assert al.area(3).max_order == 3


def test_memalign_orders():
    assert [get_order(n) for n in (0, 1, 2, 3, 4, 5, 1024, 1025)] == [0, 0, 1, 2, 2, 3, 10, 11]
    al = small()
    # alignment 16 KiB (order 2), size 1 page: from list 2, split down to order 0
    assert al.memalign_pages_flags(0x4000, 0x1000, DZ) == 0x104000
    with pytest.raises(ModelError, match="power of two"):
        al.memalign_pages_flags(0x3000, 0x1000, DZ)


def test_area_flags_select_slots_in_ascending_order():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(AREA_ANY_NUMBER, 0xF00, 0x1100)   # LOWEST (3) and LOW (2)
    assert al.pfn(al.alloc_pages_flags(0, DZ)) >= 0x1000          # slot 2 first
    assert al.pfn(al.alloc_pages_flags(0, DZ | 1 << 3)) < 0x1000  # only slot 3
    assert al.alloc_pages_flags(0, DZ | 1 << 0) == 0              # slot 0 not initialised


def test_reserve_splits_down_and_marks_special_then_unreserve_merges_back():
    al = small()
    before = al.state()
    assert al.reserve_pages(0x10A000, 2) == 0
    meta = al.area(3).meta
    assert meta[0x10A - 0x101:0x10C - 0x101] == bytes([0xC0, 0xC0])
    al.unreserve_pages(0x10A000, 2)
    after = al.state()[0]
    assert after.metadata[7:] == bytes([0x43] * 8)         # 0x108/3 whole again, FREE now
    assert after.freelists[3] == before[0].freelists[3]


def test_reserve_of_a_taken_page_fails_and_gives_back_what_it_took():
    al = small()
    al.alloc_pages_flags(0, DZ)                    # 0x101 allocated
    meta_before = bytes(al.area(3).meta)
    assert al.reserve_pages(0x100000 + 0x1000 * 0, 1) == -1   # the metadata page: no area
    assert al.reserve_pages(0x0FF000, 3) == -1
    assert al.area(3).meta[0] == 0x80
    assert al.reserve_pages(0x102000, 2) == 0 and al.reserve_pages(0x101000, 2) == -1
    assert al.area(3).meta[1:3] == bytes([0xC0, 0xC0])
    assert meta_before[0] == 0x80


def test_caller_bugs_raise_model_errors():
    al = small()
    with pytest.raises(ModelError, match="not the first page of an allocated block"):
        al.free_pages(0x104000)
    with pytest.raises(ModelError, match="not a page of any area"):
        al.free_pages(0x900000)
    with pytest.raises(ModelError, match="not a special page"):
        al.unreserve_pages(0x104000, 1)
    with pytest.raises(ModelError, match="FLAG_FRESH does not exist"):
        small("2020").alloc_pages_flags(0, FLAG_FRESH)
    with pytest.raises(ModelError, match="beyond a 32-bit"):
        Allocator(layout_for("i386", "2021")).init_area(1, 0x100000, 0x100100)


def test_zeroing_clears_exactly_the_returned_block():
    al = small()
    mem = al.memory
    mem.write(0x101000, b"\xAA" * 0x1000)
    mem.write(0x102000, b"\xBB" * 8)
    assert al.alloc_pages_flags(0, 0) == 0x101000
    assert al.memory.read(0x101000, 0x1000) == bytes(0x1000)
    assert al.memory.read(0x102000, 8) == b"\xBB" * 8


@pytest.mark.parametrize("arch", ["x86_64", "i386", "s390x", "aarch64"])
@pytest.mark.parametrize("fmt", ["2020", "2021"])
def test_image_decodes_to_the_allocators_state(arch, fmt):
    al = Allocator(layout_for(arch, fmt))
    al.init_area(AREA_ANY_NUMBER, 0x800, 0x1201)
    ptrs = [al.alloc_pages_flags(k % 3, DZ) for k in range(40)]
    for p in ptrs[::3]:
        al.free_pages(p)
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr)
    assert snap.layout.format == fmt
    assert snap.state() == al.state()


def test_from_state_continues_identically():
    al = small()
    al.alloc_pages_flags(0, DZ)
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr)
    twin = Allocator.from_state(al.layout, list(snap.state()), snap.areas_mask)
    for order in (0, 1, 0, 2):
        assert twin.alloc_pages_flags(order, DZ) == al.alloc_pages_flags(order, DZ)
    assert twin.state() == al.state()
