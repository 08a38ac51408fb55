"""The fixture guest run to its end with nothing attached: exit paths and
modes, the console lines the tools parse, the defect builds, and the Python
mirror's checkpoint hashes for every variant."""

from __future__ import annotations

import re
import time

import pytest

from harness import replay
from guest.workload import parse_init_calls

VARIANTS = ("x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seed,mix", [(1, "default"), (7, "allocs"), (12345, "reserve")])
def test_exit_run_prints_the_mirrors_checkpoints(make_guest, variant, seed, mix):
    g = make_guest(variant, seed=seed, mix=mix, exit=True, paused=False)
    assert g.wait_exit(60) == 1                 # exit(0) through isa-debug-exit
    console = g.console
    assert re.search(rf"^allocview-guest arch={variant.split('-')[0]} "
                     rf"format={variant.split('-')[1]} defect=none$", console, re.M)
    assert console.rstrip().endswith("exit code=0")
    w = replay(g, 5)
    assert g.checkpoints == w.checkpoints


def test_ops_option_changes_the_mixed_phase(make_guest):
    g = make_guest("x86_64-2021", ops=300, mix="simple", exit=True, paused=False)
    assert g.wait_exit(60) == 1
    w = replay(g, 5)
    assert g.checkpoints == w.checkpoints
    assert w.checkpoints[2][0] < 400


@pytest.mark.parametrize("memory,slots", [("64M", {3, 2}), ("32M", {3, 2}), ("16M", {3})])
def test_small_memory_gives_lowest_and_low(make_guest, memory, slots):
    g = make_guest("x86_64-2021", memory=memory, exit=True, paused=False)
    assert g.wait_exit(60) == 1
    calls = parse_init_calls(g.console)
    assert {c.slot for c in calls} == slots
    assert all(c.n == 255 for c in calls)
    assert g.checkpoints == replay(g, 5).checkpoints


def test_mode_abort_fails_after_checkpoint_2(make_guest):
    g = make_guest("x86_64-2021", mode="abort", paused=False)
    assert g.wait_exit(60) == (64 << 1) | 1
    assert set(g.checkpoints) == {1, 2}
    assert re.search(r"^checkpoint 2 .*\nabort\nexit code=64$", g.console, re.M)


def test_mode_hang_spins_after_checkpoint_2(make_guest):
    g = make_guest("i386-2021", mode="hang", exit=True, paused=False)
    g.wait_checkpoint(2)
    time.sleep(1.0)
    assert g.running and g.query_status() == "running"
    assert set(g.checkpoints) == {1, 2}


def test_mode_noalloc_exits_before_any_init(make_guest):
    g = make_guest("x86_64-2020", mode="noalloc", exit=True, paused=False)
    assert g.wait_exit(60) == 1
    assert "noalloc" in g.console.splitlines()
    assert not parse_init_calls(g.console) and not g.checkpoints


@pytest.mark.parametrize("defect", ["nomerge", "splitend"])
def test_defect_builds_diverge_from_the_model_after_checkpoint_1(make_guest, defect):
    g = make_guest(f"x86_64-2021-{defect}", exit=True, paused=False)
    assert g.wait_exit(60) == 1
    assert f"defect={defect}" in g.console
    w = replay(g, 5)
    assert g.checkpoints[1] == w.checkpoints[1]
    assert g.checkpoints[2] != w.checkpoints[2]


def test_console_lines_are_parseable(make_guest):
    g = make_guest("x86_64-2021", exit=True, paused=False)
    g.wait_exit(60)
    lines = g.console.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("allocview-guest "))
    known = re.compile(r"^(allocview-guest arch=\S+ format=\d+ defect=\S+|cmdline: .*"
                       r"|mmap base=0x[0-9a-f]+ len=0x[0-9a-f]+ type=\d+"
                       r"|init_area n=255 base=0x[0-9a-f]+ top=0x[0-9a-f]+ slot=\d"
                       r"|skip_area .*|checkpoint \d ops=\d+ hash=0x[0-9a-f]+|exit code=\d+)$")
    assert [l for l in lines[start:] if not known.match(l)] == []
