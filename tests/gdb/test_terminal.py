"""gdb at a terminal, as a user has it (a pseudo-terminal through pexpect):
Enter does not repeat a command with side effects, questions go through
the terminal and honour `set confirm`, colour follows gdb's styling."""

import os
import re
import shutil

import pexpect
import pytest

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
PROMPT = r"\(gdb\) "


@pytest.fixture
def terminal_gdb(make_guest):
    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(2)
    g.gdb.disconnect()                       # the stub takes one client; the guest stays paused
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(shutil.which("gdb"), ["-nx", "-q", str(g.elf)], env=env,
                          encoding="utf-8", timeout=60, dimensions=(50, 160))
    child.expect(PROMPT)
    for line in ("set pagination off", f"target remote 127.0.0.1:{g.gdb_port}",
                 f"source {ROOT}/gdbext/alloc.py"):
        child.sendline(line)
        child.expect(PROMPT)
    yield child, g
    child.sendline("detach")
    child.expect(PROMPT)
    child.close(force=True)


def run(child, line: str) -> str:
    child.sendline(line)
    child.expect(PROMPT)
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", child.before)


def test_enter_repeats_only_what_is_cheap_and_harmless(terminal_gdb):
    child, _g = terminal_gdb
    assert "saved snapshot s1" in run(child, "alloc snapshot")
    again = run(child, "")                   # Enter: gdb repeats the last command unless told
    assert "saved snapshot" not in again
    assert "saved snapshot s2" in run(child, "alloc snapshot")   # only when asked for
    assert "free of" in run(child, "alloc stats")
    assert "free of" in run(child, "")       # a cheap read repeats, as `x` and `info` do
    run(child, "alloc map")
    assert "legend" not in run(child, "")    # a costly one does not


def test_drive_asks_at_the_terminal_and_set_confirm_off_answers(terminal_gdb, tmp_path):
    child, _g = terminal_gdb
    child.sendline(f"alloc drive --ops 3 --out {tmp_path}/d")
    child.expect(r"\(y or n\) ")
    child.sendline("n")
    child.expect(PROMPT)
    assert "not driven" in child.before
    assert "driving" not in child.before
    out = run(child, "")                     # Enter does not ask again
    assert "(y or n)" not in out
    run(child, "set confirm off")
    assert "no divergence" in run(child, f"alloc drive --ops 3 --out {tmp_path}/d")


def test_colour_follows_gdb_styling(terminal_gdb):
    child, _g = terminal_gdb
    sgr = re.compile(r"\x1b\[[0-9;]*m")      # colour, not the terminal's other escapes
    child.sendline("alloc check")
    child.expect(PROMPT)
    assert sgr.search(child.before)          # gdb styles at this terminal: so do we
    run(child, "set style enabled off")
    child.sendline("alloc check")
    child.expect(PROMPT)
    assert not sgr.search(child.before)
    assert "off now" in run(child, "show alloc color")
