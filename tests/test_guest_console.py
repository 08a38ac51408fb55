"""The fixture guest run to its end with nothing attached: exit paths and
modes, the console lines the tools parse, the defect builds, and the Python
mirror's checkpoint hashes for every variant."""

from __future__ import annotations

import re
import time

import pytest

from harness import NEW_ARCHES, Variant, parse_exit_status, replay
from guest.workload import parse_init_calls

VARIANTS = ("x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020")
NEW_VARIANTS = tuple(f"{a}-{f}" for a in NEW_ARCHES for f in ("2021", "2020"))
# QEMU's own status for exit(code) on the arches whose machine cannot carry it
QEMU_STATUS_ZERO = ("s390x", "ppc64")
KNOWN_LINE = re.compile(r"^(allocview-guest arch=\S+ format=\d+ defect=\S+|cmdline: .*"
                        r"|mmap base=0x[0-9a-f]+ len=0x[0-9a-f]+ type=\d+"
                        r"|init_area n=255 base=0x[0-9a-f]+ top=0x[0-9a-f]+ slot=\d"
                        r"|skip_area .*|checkpoint \d ops=\d+ hash=0x[0-9a-f]+|exit code=\d+"
                        r"|EXIT: STATUS=\d+)$")


def _assert_exit(g, code: int) -> None:
    """exit(code) as the variant's arch ends it: the test's status through
    wait_exit, the console's last lines, QEMU's own status."""
    v = g.variant
    assert g.wait_exit(60) == (code << 1) | 1
    lines = g.console.rstrip().splitlines()
    if v.arch in ("x86_64", "i386"):
        assert lines[-1] == f"exit code={code}" and g.console_status is None
    else:
        assert lines[-2:] == [f"exit code={code}", f"EXIT: STATUS={(code << 1) | 1}"]
        assert g.console_status == (code << 1) | 1
    assert g.qemu_status == (0 if v.arch in QEMU_STATUS_ZERO else (code << 1) | 1)


@pytest.mark.parametrize("variant", VARIANTS + NEW_VARIANTS)
@pytest.mark.parametrize("seed,mix", [(1, "default"), (7, "allocs"), (12345, "reserve")])
def test_exit_run_prints_the_mirrors_checkpoints(make_guest, variant, seed, mix):
    g = make_guest(variant, seed=seed, mix=mix, exit=True, paused=False)
    _assert_exit(g, 0)                          # exit(0): status 1
    console = g.console
    assert re.search(rf"^allocview-guest arch={variant.split('-')[0]} "
                     rf"format={variant.split('-')[1]} defect=none$", console, re.M)
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


@pytest.mark.parametrize("arch", ("x86_64",) + NEW_ARCHES)
def test_mode_abort_fails_after_checkpoint_2(make_guest, arch):
    g = make_guest(f"{arch}-2021", mode="abort", paused=False)
    _assert_exit(g, 64)                         # status 129
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


@pytest.mark.parametrize("arch", ("x86_64",) + NEW_ARCHES)
@pytest.mark.parametrize("defect", ["nomerge", "splitend"])
def test_defect_builds_diverge_from_the_model_after_checkpoint_1(make_guest, arch, defect):
    g = make_guest(f"{arch}-2021-{defect}", exit=True, paused=False)
    assert g.wait_exit(60) == 1
    assert f"defect={defect}" in g.console
    w = replay(g, 5)
    assert g.checkpoints[1] == w.checkpoints[1]
    assert g.checkpoints[2] != w.checkpoints[2]


@pytest.mark.parametrize("arch", ("x86_64",) + NEW_ARCHES)
def test_console_lines_are_parseable(make_guest, arch):
    """From the banner on (riscv64's OpenSBI prints its own first)."""
    g = make_guest(f"{arch}-2021", exit=True, paused=False)
    g.wait_exit(60)
    lines = g.console.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("allocview-guest "))
    assert [l for l in lines[start:] if not KNOWN_LINE.match(l)] == []
    assert lines[start + 1] == f"cmdline: {g.cmdline}" or arch == "x86_64"   # x86: path first
    # one RAM range from the firmware's description, starting where RAM does
    mmap = [l for l in lines if l.startswith("mmap ")]
    if arch != "x86_64":
        v = Variant.parse(f"{arch}-2021")
        assert mmap == [f"mmap base={v.ram_start:#x} len={256 << 20:#x} type=1"]


@pytest.mark.parametrize("memory,slots,mask", [("256M", {1}, 0b10), ("3G", {0, 1}, 0b11)])
def test_s390x_ram_above_2g_fills_the_normal_slot(make_guest, memory, slots, mask):
    """s390x slots: NORMAL (0) from 2 GiB, LOW (1) below: the mirror agrees
    with either."""
    g = make_guest("s390x-2021", memory=memory, exit=True, paused=False)
    _assert_exit(g, 0)
    calls = parse_init_calls(g.console)
    assert {c.slot for c in calls} == slots
    if 0 in slots:
        normal = next(c for c in calls if c.slot == 0)
        assert (normal.base, normal.top) == (0x80000, 0xC0000)     # [2 GiB, 3 GiB)
    w = replay(g, 5)
    assert g.checkpoints == w.checkpoints and w.allocator.areas_mask == mask


def test_parse_exit_status():
    assert parse_exit_status("exit code=3\nEXIT: STATUS=7\n") == 7
    assert parse_exit_status("EXIT: STATUS=1\nEXIT: STATUS=129\n") == 129
    assert parse_exit_status("exit code=0\n") is None
