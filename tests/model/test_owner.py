"""Who owns a page (model/owner.py) from synthetic traces: blocks sized as
the design sizes them, ended by their free, re-allocation, reservations
cut by unreserve, memory handed out twice, frees of unknown blocks, old
traces without callers; and the trace format's caller field."""

import json

from allocview.model.owner import Owners, block_pages
from allocview.model.reference import Allocator
from allocview.model.replay import apply_call
from allocview.model.layout import layout_for
from allocview.model.trace import Call, TraceWriter, read_trace

PS = 4096
BASE = 0x1000000


def calls(*specs):
    """Call records from (func, args, result[, ra]) tuples, numbered."""
    return [Call(i, s[0], tuple(s[1]), s[2], ra=s[3] if len(s) > 3 else None)
            for i, s in enumerate(specs)]


def test_block_extent_is_the_designs_from_the_arguments():
    assert block_pages(Call(0, "alloc_pages_flags", (3, 0x10000), BASE), PS) == 8
    # memalign: size rounded up to whole pages, then to a power of two
    assert block_pages(Call(0, "memalign_pages_flags", (64, 3 * PS + 1, 0), BASE), PS) == 4
    assert block_pages(Call(0, "memalign_pages_flags", (PS, 1, 0), BASE), PS) == 1
    assert block_pages(Call(0, "memalign_pages_area", (-1 & 0xFFFFFFFF, PS, 5 * PS), BASE),
                       PS) == 8
    assert block_pages(Call(0, "alloc_pages_area", (0xFFFFFFFF, 2), BASE), PS) == 4
    # what owns nothing: a failed allocation or reservation, a free, an init
    assert block_pages(Call(0, "alloc_pages_flags", (3, 0), 0), PS) is None
    assert block_pages(Call(0, "reserve_pages", (BASE, 4), -1), PS) is None
    assert block_pages(Call(0, "reserve_pages", (BASE, 4), 0), PS) == 4
    assert block_pages(Call(0, "alloc_pages_special", (BASE, 2), 0), PS) is None
    assert block_pages(Call(0, "alloc_pages_special", (BASE, 2), BASE), PS) == 2
    assert block_pages(Call(0, "free_pages", (BASE,), None), PS) is None


def test_the_extents_are_the_reference_allocators():
    """What the model allocator marks ALLOCATED for each call is the block
    the ownership says the call got."""
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(2, 0x1000, 0x1400)          # LOW: [16 MiB, 4 GiB)
    made = []
    for i, (func, args) in enumerate([("alloc_pages_flags", (2, 0)),
                                      ("memalign_pages_flags", (PS * 4, 3 * PS - 7, 0)),
                                      ("memalign_pages_flags", (64, 5 * PS, 0)),
                                      ("alloc_pages_flags", (0, 0))]):
        c = Call(i, func, args, None)
        made.append(Call(i, func, args, apply_call(al, c)))
    for b in Owners(made, PS).live():
        a = al.areas[2]
        pfn = b.start // PS
        byte = a.meta[pfn - a.base]
        assert byte & 0xC0 == 0x80 and (1 << (byte & 0x3F)) * PS == b.size, b


def test_the_latest_allocation_owns_and_earlier_ones_are_kept():
    t = calls(("page_alloc_init_area", (255, 0x1000, 0x2000), None),
              ("alloc_pages_flags", (2, 0), BASE, 0x101000),          # [BASE, +16K)
              ("free_pages", (BASE,), None, 0x102000),
              ("alloc_pages_flags", (0, 0), BASE + PS, 0x103000),     # inside the old block
              ("alloc_pages_flags", (0, 0), BASE, 0x104000))
    o = Owners(t, PS)
    got = o.owner(BASE + PS + 8)
    assert got.block.call.i == 3 and got.block.freed_by is None
    assert got.block.start == BASE + PS and got.block.end == BASE + 2 * PS
    assert [(b.call.i, b.freed_by.i) for b in got.earlier] == [(1, 2)]
    assert got.also_live == () and o.started_at_boot
    # an address only the freed block held: that block, freed
    old = o.owner(BASE + 3 * PS)
    assert old.block.call.i == 1 and old.block.freed_by.i == 2 and old.earlier == ()
    assert o.owner(BASE + 4 * PS) is None
    assert o.owner(BASE - 1) is None


def test_live_groups_by_call_site_largest_first():
    t = calls(("alloc_pages_flags", (0, 0), BASE, 0xA),
              ("alloc_pages_flags", (0, 0), BASE + PS, 0xA),
              ("alloc_pages_flags", (3, 0), BASE + 8 * PS, 0xB),
              ("alloc_pages_flags", (0, 0), BASE + 2 * PS, 0xC),
              ("free_pages", (BASE + 2 * PS,), None, 0xD),
              ("reserve_pages", (BASE + 16 * PS, 3), 0, 0xE),
              ("reserve_pages", (BASE + 24 * PS, 3), -1, 0xF))
    o = Owners(t, PS)
    live = o.live()
    assert [(b.start, b.size, b.kind) for b in live] == [
        (BASE, PS, "allocated"), (BASE + PS, PS, "allocated"),
        (BASE + 8 * PS, 8 * PS, "allocated"), (BASE + 16 * PS, 3 * PS, "reserved")]
    sites = o.by_call_site()
    assert [(s.key, len(s.blocks), s.size) for s in sites] == [
        (0xB, 1, 8 * PS), (0xE, 1, 3 * PS), (0xA, 2, 2 * PS)]
    # any grouping the caller asks for (the command groups by source line)
    assert [s.key for s in o.by_call_site(lambda c: c.func)] == ["alloc_pages_flags",
                                                                "reserve_pages"]
    assert not o.started_at_boot


def test_unreserve_in_the_middle_leaves_the_rest_owned():
    t = calls(("reserve_pages", (BASE, 5), 0, 0x10),
              ("unreserve_pages", (BASE + PS, 2), None, 0x20))
    o = Owners(t, PS)
    assert [(b.start, b.end, b.call.i) for b in o.live()] == [
        (BASE, BASE + PS, 0), (BASE + 3 * PS, BASE + 5 * PS, 0)]
    gone = o.owner(BASE + PS)
    assert gone.block.call.i == 0 and gone.block.freed_by.i == 1
    kept = o.owner(BASE + 4 * PS)
    assert kept.block.freed_by is None and kept.block.call.i == 0


def test_memory_handed_out_twice_is_recorded_never_replaced():
    t = calls(("alloc_pages_flags", (1, 0), BASE),
              ("alloc_pages_flags", (0, 0), BASE + PS))     # inside a live block
    o = Owners(t, PS)
    (live, again), = o.doubles
    assert live.call.i == 0 and again.call.i == 1
    got = o.owner(BASE + PS)
    assert got.block.call.i == 1 and [b.call.i for b in got.also_live] == [0]
    assert len(o.live()) == 2


def test_a_free_of_an_unknown_block_is_a_stray_not_an_error():
    t = calls(("free_pages", (BASE,), None, 0x30), ("free_pages", (0,), None),
              ("alloc_pages_flags", (0, 0), BASE + PS))
    o = Owners(t, PS)
    assert [c.i for c in o.stray_frees] == [0]              # free(NULL) is nothing
    got = o.owner(BASE)
    assert got.block is None and [c.i for c in got.stray_frees] == [0]
    assert o.owner(BASE + 8) is None                        # its extent is unknown


def test_a_free_gives_back_the_latest_block_at_that_address():
    t = calls(("alloc_pages_flags", (0, 0), BASE), ("alloc_pages_flags", (0, 0), BASE),
              ("free_pages", (BASE,), None))
    o = Owners(t, PS)
    assert [b.call.i for b in o.live()] == [0]


def test_trace_callers_round_trip_and_old_traces_read_as_before(tmp_path):
    path = tmp_path / "t.jsonl"
    w = TraceWriter(str(path), {"arch": "x86_64", "format": "2021", "callers": True})
    w.call("alloc_pages_flags", (0, 0), BASE, ra=0x101F58)
    w.call("free_pages", (BASE,), None, wrote=[(0x2000, b"\x40")], ra=0x1019B4)
    w.flush()
    t = read_trace(str(path))          # readable while the writer is open
    assert [c.ra for c in t.calls] == [0x101F58, 0x1019B4]
    assert t.calls[1].wrote == ((0x2000, b"\x40"),)
    assert read_trace(str(path), footprints=False).calls[1].wrote is None
    w.close()
    assert json.loads(path.read_text().splitlines()[1])["ra"] == 0x101F58
    # a call compares equal with or without its caller
    assert t.calls[0] == Call(0, "alloc_pages_flags", (0, 0), BASE)
    assert t.calls[0].to_json()["ra"] == 0x101F58
    old = tmp_path / "old.jsonl"
    old.write_text('{"trace": 1, "arch": "x86_64", "format": "2021"}\n'
                   '{"i": 0, "func": "alloc_pages_flags", "args": [0, 0], "result": 16777216}\n')
    c, = read_trace(str(old)).calls
    assert c.ra is None and "ra" not in c.to_json()
    o = Owners(read_trace(str(old)).calls, PS)
    assert o.callers == 0 and o.owner(BASE).block.call.ra is None
