"""allocview-qemu as a runner's QEMU= binary, on the fixture guest under a
stand-in for kvm-unit-tests' runner (kut_runner.sh): probes answered by
QEMU itself, the console byte for byte, QEMU's status, a report for every
test, and nothing left running."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from harness import Variant

from .helpers import guest_args

HEALTHY = "seed=1 exit=1"


def test_probes_are_answered_by_qemu_itself(work):
    for probe in (["--help"], ["-h"], ["-version"], ["-device", "?"], ["-machine", "help"]):
        want = subprocess.run(["qemu-system-x86_64"] + probe, capture_output=True)
        got = subprocess.run([str(work.wrapper)] + probe, capture_output=True, env=work.env())
        assert (got.returncode, got.stdout, got.stderr) == \
            (want.returncode, want.stdout, want.stderr), probe
    assert not work.reports.exists(), "a probe is no test: no report"


@pytest.mark.parametrize("variant", ["x86_64-2021", "i386-2021"])
def test_a_healthy_test_runs_as_without_allocview_and_gets_a_clean_report(work, variant):
    v = Variant.parse(variant)
    args = guest_args(v, HEALTHY, work.marker)
    plain = work.run(v.qemu, args)
    wrapped = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME=variant))
    assert plain.status == 1 and b"exit code=0" in plain.stdout
    assert wrapped.stdout == plain.stdout                      # byte for byte
    assert wrapped.stderr == plain.stderr == b""               # quiet with a report dir
    assert wrapped.status == plain.status
    assert wrapped.version == plain.version and wrapped.version.startswith("QEMU emulator")
    assert wrapped.verdict == plain.verdict == "PASS"
    doc = work.report(variant)
    t = doc["test"]
    assert (t["ended"], t["checked"], t["qemu_status"], t["status"]) == ("exit(0)", True, 1, 1)
    assert t["qemu"] == v.qemu and t["elf"] == str(v.elf) and t["wall_time"] > 0
    assert doc["arch"] == v.arch and doc["format"] == v.fmt
    assert not [f for f in doc["findings"] if f["severity"] in ("error", "warning")]
    areas = [a for a in doc["areas"] if "pages" in a]
    free = sum(a["pages"]["free"] + a["pages"]["fresh"] for a in areas)
    largest = max(a["largest_order"] for a in areas if a["largest_order"] is not None)
    assert free > 0 and work.summary_lines() == [
        f"allocview: {variant}: exit(0), QEMU status 1: clean; {len(areas)} areas, "
        f"{free} free pages, largest block order {largest}"]


def test_the_report_is_the_one_allocview_report_json_gives(work, make_guest):
    """The same guest state (the workload's end; without exit=1 the guest
    idles there) read by `allocview --gdb ... report --json`."""
    import json
    import sys

    from .helpers import ROOT

    v = Variant.parse("x86_64-2021")
    work.run(work.wrapper, guest_args(v, HEALTHY, work.marker),
             env=work.env(ALLOCVIEW_TEST_NAME="t"))
    doc = work.report("t")
    assert doc["test"]["read_via"].startswith("QEMU process memory (/proc/"), doc["test"]
    work.run(work.wrapper, guest_args(v, HEALTHY, work.marker),
             env=work.env(ALLOCVIEW_TEST_NAME="s", ALLOCVIEW_SOURCE="stub"))
    stub = work.report("s")
    assert stub["test"]["read_via"] == "gdb stub"
    g = make_guest(v, seed=1)
    g.resume()
    g.wait_console(r"^checkpoint 5 ", timeout=60)
    cli = subprocess.run([sys.executable, "-m", "allocview.cli", "--gdb",
                          f"127.0.0.1:{g.gdb_port}", "--elf", str(v.elf), "report", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert cli.returncode == 0, cli.stderr
    want = json.loads(cli.stdout)
    assert {k: v for k, v in doc.items() if k != "test"} == want
    assert {k: v for k, v in stub.items() if k != "test"} == want


def test_error_findings_leave_the_status_alone_unless_asked(work):
    v = Variant.parse("x86_64-2021-nomerge")
    args = guest_args(v, HEALTHY, work.marker)
    plain = work.run(v.qemu, args)
    kept = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="kept"))
    failed = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="failed",
                                                      ALLOCVIEW_FAIL_ON="error"))
    assert kept.status == plain.status == 1 and kept.stdout == failed.stdout == plain.stdout
    assert kept.stderr == b""
    assert failed.status == 4 and failed.verdict == "FAIL" and kept.verdict == "PASS"
    line = failed.stderr_text.strip()
    assert line.startswith("allocview: failed: exit(0), QEMU status 1, exit status 4: ") \
        and "unmerged-buddies" in line, line
    for name, status in (("kept", 1), ("failed", 4)):
        doc = work.report(name)
        codes = {f["code"] for f in doc["findings"] if f["severity"] == "error"}
        assert codes == {"unmerged-buddies"} and doc["test"]["status"] == status
        assert doc["test"]["qemu_status"] == 1
    # with findings, the state and its HTML report beside the JSON: the test
    # reopens with --dump and says the same
    state, page = work.reports / "kept.elf", work.reports / "kept.html"
    assert page.read_text().startswith("<!doctype html")
    again = subprocess.run([sys.executable, "-m", "allocview.cli", "--dump", str(state), "--elf",
                            str(v.elf), "report", "--json"], capture_output=True, text=True)
    doc = work.report("kept")
    assert {k: w for k, w in json.loads(again.stdout).items() if k != "program"} == \
        {k: w for k, w in doc.items() if k not in ("test", "program")}
    assert state.stat().st_size < 1 << 20


# Every way a test can end, as (guest command line, extra QEMU arguments,
# runner timeout): the runner's verdict must be the same with and without
# allocview-qemu, with and without a report directory.
ENDINGS = {
    "pass": (HEALTHY, [], 60),
    "pass with QEMU warnings": (HEALTHY, ["-cpu", "Haswell"], 60),   # status 1, warning lines
    "abort": ("seed=1 exit=1 mode=abort", [], 60),
    "timeout": ("seed=1 exit=1 mode=hang", [], 4),
    "allocator never initialised": ("exit=1 mode=noalloc", [], 60),
    "qemu refuses its command line": (HEALTHY, ["-device", "no-such-device"], 60),
}


def _sender(stderr: bytes) -> bytes:
    return re.sub(rb"from pid \d+ \([^)]*\)", b"from pid P", stderr)


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_the_runner_verdict_is_the_same_with_allocview_qemu(work, ending):
    append, extra, timeout = ENDINGS[ending]
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, append, work.marker) + extra
    plain = work.run(v.qemu, args, timeout=timeout)
    assert plain.verdict, "the runner's probes failed on plain QEMU"
    for report_dir in (str(work.reports), ""):
        r = work.run(work.wrapper, args, timeout=timeout,
                     env=work.env(ALLOCVIEW_REPORT_DIR=report_dir, ALLOCVIEW_TEST_NAME="t"))
        assert (r.verdict, r.status) == (plain.verdict, plain.status), (ending, report_dir)
        assert r.stdout == plain.stdout
        # nothing of ours; QEMU names who signalled it (timeout, or the
        # wrapper passing timeout's signal on)
        assert _sender(r.stderr) == _sender(plain.stderr), (ending, report_dir)
    assert work.summary_lines() and all(line.startswith("allocview: t: ")
                                        for line in work.summary_lines())


def test_the_summary_goes_where_the_user_says_and_keeps_the_verdict(work):
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, HEALTHY, work.marker)
    env = dict(ALLOCVIEW_REPORT_DIR="", ALLOCVIEW_TEST_NAME="loud")
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_SUMMARY="stderr", **env))
    lines = r.stderr_text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("allocview: warning: loud: exit(0), QEMU "
                                                   "status 1: clean"), lines
    assert r.verdict == "PASS"
    legacy = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_STDERR="1", **env))
    assert legacy.stderr == r.stderr and legacy.verdict == "PASS"
    path = work.path / "summaries.txt"
    for _ in range(2):
        f = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_SUMMARY=str(path), **env))
        assert f.stderr == b"" and f.verdict == "PASS"
    got = path.read_text().splitlines()
    assert len(got) == 2 and all(g.startswith("allocview: loud: exit(0)") for g in got)
    assert not work.reports.exists()


def test_an_aborting_test_is_checked_at_abort(work):
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, "seed=1 exit=1 mode=abort", work.marker)
    plain = work.run(v.qemu, args)
    wrapped = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="abort"))
    assert wrapped.status == plain.status == 129 and wrapped.stdout == plain.stdout
    assert b"abort\n" in wrapped.stdout
    t = work.report("abort")["test"]
    assert (t["ended"], t["checked"], t["qemu_status"]) == ("abort", True, 129)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_hanging_test_killed_by_the_runner_is_reported_killed(work, sig):
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, "seed=1 exit=1 mode=hang", work.marker)
    env = work.env(ALLOCVIEW_TEST_NAME="hang")
    if sig == signal.SIGTERM:           # the runner's timeout(1)
        plain = work.run(v.qemu, args, timeout=4)
        r = work.run(work.wrapper, args, env=env, timeout=4)
        assert r.status == plain.status == 124
    else:                               # a Ctrl-C that reaches the wrapper only
        plain = work.run(v.qemu, args, signal_after=(sig, 3))
        r = work.run(work.wrapper, args, env=env, signal_after=(sig, 3))
        assert r.status == plain.status == 0          # QEMU exits 0 on SIGINT
    assert r.stdout == plain.stdout and b"checkpoint 2 " in r.stdout
    assert b"terminating on signal" in r.stderr       # QEMU's own line
    t = work.report("hang")["test"]
    assert t["checked"] is False
    assert t["ended"] == f"no check: killed by {sig.name} before exit() or abort()"
    assert t["signals"] == [sig.name] and t["wall_time"] < 10


def test_a_test_that_exits_before_using_the_allocator(work):
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, "exit=1 mode=noalloc", work.marker)
    plain = work.run(v.qemu, args)
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="noalloc"))
    assert r.status == plain.status == 1 and r.stdout == plain.stdout and r.stderr == b""
    t = work.report("noalloc")["test"]
    assert t["ended"] == ("no check: exit(0) before the allocator was initialised "
                          "(areas_mask is 0)")


def test_an_elf_without_the_allocator_runs_plainly(work):
    v = Variant.parse("x86_64-2021")
    stripped = work.path / "stripped.elf"
    subprocess.run(["objcopy", "--strip-all", str(v.elf), str(stripped)], check=True)
    args = guest_args(v, HEALTHY, work.marker)
    plain = work.run(v.qemu, args)
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="noalloc",
                                                 ALLOCVIEW_ELF=stripped))
    assert (r.status, r.stdout, r.stderr) == (plain.status, plain.stdout, plain.stderr)
    t = work.report("noalloc")["test"]
    assert t["ended"] == "no check: no allocator" and "symbol table" in t["notes"][0]
    assert t["elf"] == str(stripped) and "findings" not in work.report("noalloc")


def test_no_gdb_runs_the_test_plainly(work):
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, HEALTHY, work.marker)
    plain = work.run(v.qemu, args)
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="nogdb",
                                                 ALLOCVIEW_GDB="/nonexistent"))
    assert (r.status, r.stdout, r.stderr) == (plain.status, plain.stdout, plain.stderr)
    assert work.report("nogdb")["test"]["ended"] == "no check: gdb not found (/nonexistent)"


@pytest.mark.parametrize("gdb,why", [
    ("exits", "attaching failed: gdb exited"),          # a gdb that is not one
    ("hangs", "attaching failed: gdb gave no answer"),  # a gdb that never answers
    ("dies", "reading the guest failed"),               # gdb dies at the breakpoint
])
def test_gdb_trouble_never_hangs_the_test(work, gdb, why):
    """QEMU waits in -S or at the breakpoint while gdb fails: allocview
    kills gdb and lets the guest run on through QMP."""
    v = Variant.parse("x86_64-2021")
    if gdb == "exits":
        shim = work.gdb_shim("gdb-exits", "-batch -ex 'echo nope'")
    elif gdb == "hangs":
        shim = work.path / "bin" / "gdb-hangs"
        shim.write_text(f"#!/bin/bash\nexec -a {work.marker}-gdb sleep 600\n")
        shim.chmod(0o755)
    else:
        script = work.path / "die.py"
        script.write_text("import gdb, os\n"
                          "gdb.events.stop.connect(lambda e: os._exit(9) "
                          "if isinstance(e, gdb.BreakpointEvent) else None)\n")
        shim = work.gdb_shim("gdb-dies", f"-x {script}")
    args = guest_args(v, HEALTHY, work.marker)
    plain = work.run(v.qemu, args)
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="trouble",
                                                 ALLOCVIEW_GDB=shim, ALLOCVIEW_TIMEOUT=2),
                 timeout=30)
    assert (r.status, r.stdout, r.stderr) == (plain.status, plain.stdout, plain.stderr)
    t = work.report("trouble")["test"]
    assert t["checked"] is False and t["ended"].startswith(f"no check: {why}"), t["ended"]


def test_a_qemu_that_fails_to_start(work):
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, HEALTHY, work.marker) + ["-m", "lots"]
    # the runner's own probe calls such a test SKIP before running it:
    # see the run itself
    plain = work.run(v.qemu, args, env=work.env(KUT_PREMATURE=0))
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="bad", KUT_PREMATURE=0))
    assert plain.status == 1 and b"lots" in plain.stderr and r.verdict == plain.verdict
    assert (r.status, r.stdout, r.stderr) == (plain.status, plain.stdout, plain.stderr)
    assert work.report("bad")["test"]["ended"] == \
        "no check: QEMU exited (status 1) before allocview could attach"
    # the runner's probe already fails on such a QEMU= (passed through)
    env = work.env(ALLOCVIEW_TEST_NAME="missing", ALLOCVIEW_QEMU="/nonexistent")
    assert work.run(work.wrapper, [], env=env).runner_status == 2
    missing = subprocess.run([str(work.wrapper)] + guest_args(v, HEALTHY, work.marker), env=env,
                             capture_output=True, timeout=60)
    assert missing.returncode == 127 and missing.stdout == b"" and missing.stderr == b""
    assert work.report("missing")["test"]["ended"].startswith(
        "no check: cannot start QEMU /nonexistent")


def test_a_wrapper_killed_outright_takes_qemu_and_gdb_along(work):
    import time

    from .helpers import leftovers

    v = Variant.parse("x86_64-2021")
    out = open(work.path / "console", "wb")
    proc = subprocess.Popen([str(work.wrapper)] + guest_args(v, "seed=1 exit=1 mode=hang",
                                                             work.marker),
                            env=work.env(), stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while b"checkpoint 2 " not in (work.path / "console").read_bytes():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    assert gdb_running(work.marker), "gdb is attached"
    proc.kill()
    proc.wait()
    out.close()
    assert leftovers(work.marker, wait=5) == []


def test_a_guest_paused_by_someone_else_stays_paused(work):
    """A QMP `stop` from the test's own monitor is not allocview's to undo:
    gdb leaves (disconnect), the guest stays paused until that monitor's
    `cont`."""
    import time

    v = Variant.parse("x86_64-2021")
    sock = work.path / "user-qmp.sock"
    args = guest_args(v, "seed=1 exit=1 mode=hang", work.marker) + \
        ["-qmp", f"unix:{sock},server=on,wait=off"]
    out = open(work.path / "console", "wb")
    proc = subprocess.Popen([str(work.wrapper)] + args, env=work.env(ALLOCVIEW_TEST_NAME="paused"),
                            stdout=out, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while b"checkpoint 2 " not in (work.path / "console").read_bytes():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        user_qmp(sock, "stop")
        time.sleep(1.0)                               # gdb sees the stop, allocview leaves
        assert user_qmp(sock, "query-status")["status"] == "paused"
        assert not gdb_running(work.marker), "gdb has left"
        user_qmp(sock, "cont")
        assert user_qmp(sock, "query-status")["status"] == "running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    t = work.report("paused")["test"]
    assert t["ended"].startswith("no check: the guest stopped (signal-received") \
        and "QEMU paused" in t["ended"], t["ended"]
    assert t["notes"] == ["killed by SIGTERM"]


def user_qmp(path, name: str):
    """One command on the test's own QMP socket."""
    import socket

    from allocview.wrapper.qmp import Qmp

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    q = Qmp(s)
    try:
        return q.command(name)
    finally:
        q.close()


def gdb_running(marker: str) -> bool:
    """The gdb shim's process (argv[0] is MARKER-gdb) is alive."""
    from .helpers import leftovers
    return any(ln.split(": ", 1)[1].startswith(f"{marker}-gdb ")
               for ln in leftovers(marker, wait=0))


def test_a_qemu_killed_by_a_signal_kills_the_wrapper_alike(work):
    """A parent sees the wrapper die of QEMU's signal, as it would QEMU."""
    import time

    v = Variant.parse("x86_64-2021")
    out = open(work.path / "console", "wb")
    proc = subprocess.Popen([str(work.wrapper)] + guest_args(v, "seed=1 exit=1 mode=hang",
                                                             work.marker),
                            env=work.env(ALLOCVIEW_TEST_NAME="sigkill"), stdout=out)
    deadline = time.monotonic() + 30
    while b"checkpoint 2 " not in (work.path / "console").read_bytes():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    qemu = [int(ln.split(":")[0]) for ln in leftovers_of(work.marker)
            if "qemu-system" in ln.split(": ", 1)[1].split()[0]]
    assert len(qemu) == 1
    import os
    os.kill(qemu[0], signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    out.close()
    t = work.report("sigkill")["test"]
    assert t["ended"] == "no check: QEMU died of SIGKILL before the guest reached exit() or abort()"
    assert (t["qemu_status"], t["qemu_signal"]) == (128 + signal.SIGKILL, "SIGKILL")


def leftovers_of(marker: str) -> list[str]:
    from .helpers import leftovers
    return leftovers(marker, wait=0)


def test_a_guest_that_dies_before_exit_is_reported_so(work):
    """64-bit code on qemu-system-i386 triple-faults at boot (-no-reboot:
    QEMU exits 0) long before exit()."""
    v = Variant.parse("x86_64-2021")
    args = guest_args(v, HEALTHY, work.marker)
    plain = work.run("qemu-system-i386", args)
    r = work.run(work.wrapper, args, env=work.env(ALLOCVIEW_TEST_NAME="dies",
                                                 ALLOCVIEW_QEMU="qemu-system-i386"))
    assert (r.status, r.stdout, r.stderr) == (plain.status, plain.stdout, plain.stderr)
    assert plain.status == 0 and b"exit code" not in plain.stdout
    assert work.report("dies")["test"]["ended"] == \
        "no check: QEMU exited (status 0) before the guest reached exit() or abort()"
