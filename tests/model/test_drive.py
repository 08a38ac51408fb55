"""Drive without QEMU: the generator reaches every entry point and argument
class, and the driver goes on past every departure (adopting the guest's
state, or restarting both after a call that died), grouping departures
into distinct defects that shrink to sequences reproducing them. The
guest is the reference allocator with planted defects (fakeguest.py)."""

from collections import Counter

import pytest

from allocview.model.constants import FLAG_FRESH
from allocview.model.drive import Driver, group, shrink
from allocview.model.entry_points import ENTRY_POINTS
from allocview.model.memory import CachedMemory
from allocview.model.mixes import MIXES, generate, to_call
from allocview.model.snapshot import decode
from allocview.model.trace import Call, read_trace
from allocview.model.drive import write_trace
from allocview.model.reference import Allocator
from allocview.model.replay import replay

from fakeguest import FakeGuest

PLANTED = {"hang": "hang:alloc_pages_flags", "abort": "abort:reserve_pages",
           "unreserve": "metadata:free->reserved", "memalign": "result:memalign_pages_flags"}


def start_of(g):
    mem = CachedMemory(g.al.memory, record=True)
    snap = decode(mem, g.layout, g.al.areas_addr, g.al.mask_addr)
    return snap, mem.ranges()


@pytest.mark.parametrize("fmt", ["2021", "2020"])
@pytest.mark.parametrize("mix", list(MIXES))
def test_a_healthy_guest_over_5000_operations_of_each_mix_departs_nowhere(fmt, mix):
    g = FakeGuest(fmt=fmt)
    snap, image = start_of(g)
    ops = generate(11, 5000, g.layout, snap, mix=mix)
    res = Driver(g, snap, image=image).run(ops, go_on=True)
    assert res.departures == [] and res.ops >= 5000
    assert len(res.calls) > 0.6 * len(ops)          # most operations reach the guest


@pytest.mark.parametrize("fmt", ["2021", "2020"])
def test_the_mixes_reach_every_entry_point_and_argument_class(fmt):
    g = FakeGuest(fmt=fmt)
    snap, _ = start_of(g)
    ops = [op for mix in MIXES for op in generate(3, 3000, g.layout, snap, mix=mix)]
    funcs = Counter(op.func for op in ops)
    tree = {e.name for e in ENTRY_POINTS if e.tree in (fmt, "both") and e.role != "init"}
    assert set(funcs) == tree
    ps = g.layout.page_size
    if fmt == "2021":
        fresh_orders = {op.args[0] for op in ops
                        if op.func == "alloc_pages_flags" and op.args[1] & FLAG_FRESH}
        top = max(a.max_order for a in snap.state())
        assert set(range(0, top + 1)) <= fresh_orders     # FRESH with every order from 0 up
        flag_sets = {op.args[1] >> 16 for op in ops if op.func == "alloc_pages_flags"}
        assert flag_sets == {0, 1, 2, 3}                  # every DONTZERO/FRESH combination
        masks = {op.args[1] & 0xFFFF for op in ops if op.func == "alloc_pages_flags"}
        assert len(masks) >= 4                            # none, single areas, several, all
    mem = [op for op in ops if op.role == "memalign"]
    align_size = {(op.args[-3 if fmt == "2021" else -2] > op.args[-2 if fmt == "2021" else -1])
                  for op in mem}
    assert align_size == {True, False}                # alignment above and below the size
    reserves = [op for op in ops if op.role == "reserve"]
    assert {op.ref is None for op in reserves} == {True, False}   # pages given, and blocks
    assert any(op.in_range for op in reserves)        # pages already reserved
    areas = [(a.base, a.top) for a in snap.areas if a.decoded]
    assert any(op.ref is None and any(base <= op.args[0] // ps < top < op.args[0] // ps +
                                      op.args[1] for base, top in areas) for op in reserves)
    assert any(op.args[1] > 1 and (op.args[0] // ps + 1) % 2 == 0 for op in reserves
               if op.ref is None)                     # ranges crossing a block boundary
    unreserves = [op for op in ops if op.role == "unreserve"]
    assert {op.count for op in unreserves} - {0}      # parts of a reserved range, and all


def test_merge_mix_frees_buddies_the_model_merges():
    g = FakeGuest()
    snap, image = start_of(g)
    ops = generate(5, 1000, g.layout, snap, mix="merge")
    al = Driver(g, snap, image=image).model()
    results: dict = {}
    merges = 0
    for op in ops:
        call = to_call(op, g.layout, results, {})
        if call is None:
            continue
        before = sum(len(x) for a in al.state() for x in a.freelists)
        r = getattr(al, call[0])(*call[1])
        results[op.n] = r
        if op.role == "free" and sum(len(x) for a in al.state() for x in a.freelists) <= before:
            merges += 1                               # the freed block joined its buddy
    assert merges > 100


def test_one_run_lists_each_planted_defect_once_and_each_shrinks_to_a_reproducer():
    g = FakeGuest(defects=PLANTED)
    snap, image = start_of(g)
    ops = generate(4, 1500, g.layout, snap)
    driver = Driver(g, snap, image=image)
    res = driver.run(ops, go_on=True)
    defects = group(res.departures)
    assert sorted(d.signature for d in defects) == sorted(PLANTED.values())
    hang = next(d for d in defects if d.signature.startswith("hang"))
    # recovered from the hang and went on finding defects after it
    assert any(d.first.op > hang.first.op for d in defects)
    assert res.skipped > 0                            # repeats of a deadly call not sent
    for d in defects:
        seq = shrink(driver, ops[:d.first.op + 1], d.signature, budget_s=20)
        assert len(seq) <= 4, (d.signature, seq)
        driver.restore()
        again = driver.run(seq, go_on=True, want=d.signature)
        assert again.departures[-1].signature == d.signature
    abort = next(d for d in defects if d.signature.startswith("abort"))
    assert abort.first.console == "bug: reserve of 11 pages\n"


def test_first_stops_at_the_first_departure():
    g = FakeGuest(defects=PLANTED)
    snap, image = start_of(g)
    ops = generate(4, 1500, g.layout, snap)
    res = Driver(g, snap, image=image).run(ops)
    assert len(res.departures) == 1 and res.ops == res.departures[0].op + 1


def test_a_reproducer_whose_call_died_replays_as_that_call(tmp_path):
    calls = [Call(0, "alloc_pages_flags", (0, 0x10000), 0x1004000),
             Call(1, "alloc_pages_flags", (3, 0x30000), None)]
    write_trace(str(tmp_path / "t.jsonl"), calls, {"arch": "x86_64"},
                died=(1, "hang: alloc_pages_flags(0x3, 0x30000) did not return"))
    t = read_trace(str(tmp_path / "t.jsonl"))
    assert t.calls[1].died.startswith("hang:") and t.calls[0].died is None
    g = FakeGuest()
    al = Allocator.from_state(g.layout, list(g.snapshot().state()), g.snapshot().areas_mask,
                              areas_addr=g.al.areas_addr, mask_addr=g.al.mask_addr)
    res = replay(al, t.calls)
    assert res.divergence.index == 1 and res.divergence.differences[0].kind == "died"


def test_a_call_that_takes_the_guest_with_it_ends_the_run_with_what_was_found(tmp_path):
    from allocview.model.drive_io import drive_session
    g = FakeGuest(defects=["memalign", "gone"])
    snap, image = start_of(g)
    ops = generate(4, 3000, g.layout, snap, mix="flags")
    out = drive_session(g, snap, image, ops, mode="exact", accepted=frozenset(), shrink_it=True,
                        prefix=str(tmp_path / "d"), header={}, write_dump=None,
                        decode_end=None)
    sigs = [d["signature"] for d in out["defects"]]
    assert sigs == ["result:memalign_pages_flags", "gone:alloc_pages_flags"], sigs
    assert "QEMU exited" in out["gone"] and out["ops"] < 3000
    assert all(d["files"] == [] for d in out["defects"])       # nothing left to shrink with


def test_dontzero_puts_flag_dontzero_on_every_allocation():
    from allocview.model.constants import FLAG_DONTZERO
    g = FakeGuest()
    snap, _ = start_of(g)
    ops = generate(3, 2000, g.layout, snap, mix="flags", dontzero=True)
    flagged = [op for op in ops if op.func in ("alloc_pages_flags", "memalign_pages_flags")]
    assert flagged and all(op.args[-1] & FLAG_DONTZERO for op in flagged)
    plain = generate(3, 2000, g.layout, snap, mix="flags")
    assert any(not op.args[-1] & FLAG_DONTZERO for op in plain
               if op.func in ("alloc_pages_flags", "memalign_pages_flags"))


def test_no_fresh_leaves_flag_fresh_out():
    g = FakeGuest()
    snap, _ = start_of(g)
    for mix in MIXES:
        ops = generate(3, 1000, g.layout, snap, mix=mix, fresh=False)
        assert not any(op.args[-1] & FLAG_FRESH for op in ops
                       if op.func in ("alloc_pages_flags", "memalign_pages_flags"))
