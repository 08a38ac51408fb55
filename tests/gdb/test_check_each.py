"""alloc check-each: the guest stops at the exact call that breaks an
invariant, and runs on when nothing does."""

import re
from pathlib import Path

from harness.replay import first_merging_call, merging_calls, replay  # noqa: F401

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
    assert calls > 800 and "no new error findings" in status and "when armed" not in status
    gdb.cli("alloc check-each off")
    assert "off" in gdb.cli("alloc check-each status")


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


def test_an_old_breach_does_not_stop_every_call(make_guest):
    """Armed on a state that already breaks the design, check-each stops
    at the calls that add a breach, naming only the new ones."""
    g = make_guest("x86_64-2021-nomerge", ops=2000)
    gdb = sourced(g.stop_at_checkpoint(1))
    want = merging_calls(g)
    gdb.cli("alloc check-each")
    stops = []
    for _ in range(3):
        gdb.cont(timeout=300)
        status = gdb.cli("alloc check-each status")
        m = re.search(r"call #(\d+) (\w+)", status)
        assert m and "added" in status and "unmerged-buddies" in status, status
        stops.append(int(m.group(1)))
        # the frame, as gdb shows one at a breakpoint: the call's return
        assert re.search(rf"^0x[0-9a-f]+ in {m.group(2)} \(\) at \S*alloc_page\.c:\d+$",
                         status, re.M), status
    # re-armed at a stop: the breaches so far are the baseline
    gdb.cli("alloc check-each off")
    gdb.cli("alloc check-each")
    armed = gdb.cli("alloc check-each status")
    assert re.search(r"no new error findings; \d+ error finding\(s\) were there when armed",
                     armed), armed
    gdb.cont(timeout=300)
    status = gdb.cli("alloc check-each status")
    assert "added" in status, status
    # each stop is a call after which the design would have merged (the
    # no-merge guest leaves a new pair); not every such call leaves one,
    # since the guest's state has drifted from the design's by then
    assert stops[0] == want[0] and stops == sorted(set(stops)) and set(stops) <= set(want), \
        (stops, want[:8])
