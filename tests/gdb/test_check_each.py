"""alloc check-each: the guest stops at the exact call that breaks an
invariant, and runs on when nothing does."""

import re
from pathlib import Path

from harness.replay import replay

ROOT = Path(__file__).resolve().parents[2]


def sourced(gdb):
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    return gdb


def test_healthy_workload_runs_through(make_guest):
    g = make_guest("i386-2021", ops=800)
    gdb = sourced(g.stop_at_checkpoint(1))
    gdb.cli("alloc check-each --full-every 50")
    gdb.run_to_checkpoint(5, timeout=300)           # no stop on the way
    status = gdb.cli("alloc check-each status")
    calls = int(re.search(r"(\d+) calls checked", status).group(1))
    assert calls > 800 and "no error findings" in status
    gdb.cli("alloc check-each off")
    assert "off" in gdb.cli("alloc check-each status")


def first_merging_call(g, upto: int = 2) -> int:
    """Index, counted from checkpoint 1, of the first call after which the
    design has merged something: where a no-merge guest first breaks."""
    w1 = replay(g, 1)
    al = w1.allocator
    ops = replay(g, upto).ops[len(w1.ops):]
    for i, op in enumerate(ops):
        if op.func in ("free_pages", "unreserve_pages"):
            pfn = al.pfn(op.args[0])
            a = next(x for x in al.areas if x and x.base <= pfn < x.top)
            before = a.meta[pfn - a.base] & 0x3F
            getattr(al, op.func)(*op.args)
            if a.meta[pfn - a.base] & 0x3F > before:
                return i
        else:
            getattr(al, op.func)(*op.args)
    raise AssertionError("no merge in the workload")


def test_defect_build_stops_at_the_first_free_that_does_not_merge(make_guest):
    g = make_guest("x86_64-2021-nomerge", ops=2000)
    gdb = sourced(g.stop_at_checkpoint(1))
    gdb.cli("alloc check-each")
    gdb.cont(timeout=300)
    status = gdb.cli("alloc check-each status")
    m = re.search(r"call #(\d+) (\w+)\((0x[0-9a-f]+)[,)]", status)
    assert m and "unmerged-buddies" in status, status
    assert int(m.group(1)) == first_merging_call(g)
    assert m.group(2) in ("free_pages", "unreserve_pages")


def test_corruption_planted_between_two_calls_is_caught_at_the_next_call(make_guest):
    g = make_guest("x86_64-2021")
    gdb = sourced(g.stop_at_checkpoint(2))
    al = replay(g, 2).allocator
    slot = 2
    k = next(k for k in range(al.layout.nlists) if len(al.freelist(slot, k)) >= 2)
    node = al.freelist(slot, k)[1]
    gdb.cli("alloc check-each")
    gdb.cli(f"set var *(unsigned long *){node:#x} = {node + 0x1000:#x}")   # a wrong prev
    gdb.cont(timeout=120)
    status = gdb.cli("alloc check-each status")
    assert re.search(r"call #0 \w+\(", status), status
    assert f"list-broken-link at {node:#x}" in status
