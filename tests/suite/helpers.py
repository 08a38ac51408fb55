"""Running the fixture guest the way a test runner does, with and without
allocview-qemu, and looking for processes left behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import Variant

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "kut_runner.sh"
DEBUG_EXIT = "isa-debug-exit,iobase=0xf4,iosize=0x4"

__all__ = ["ROOT", "RunResult", "Workdir", "guest_args", "leftovers",
           "measure_overhead"]


@dataclass
class RunResult:
    status: int | None          # QEMU's (or the wrapper's) status (None: not run)
    stdout: bytes
    stderr: bytes
    version: str
    seconds: float              # the test's command line alone (no probes)
    runner_status: int
    verdict: str                # the runner's: PASS, SKIP, FAIL (...); "" when a probe failed

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace")


def guest_args(variant: str | Variant, append: str, marker: str, memory: str = "256M") -> list[str]:
    """A kvm-unit-tests style command line for the fixture guest (without
    the binary): console on stdout, isa-debug-exit, `-name marker` so its
    processes can be found."""
    v = Variant.parse(variant)
    if v.arch in ("x86_64", "i386"):
        return ["-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-name", marker,
                "-m", memory, "-kernel", str(v.flat), "-append", append, "-serial", "stdio",
                "-device", DEBUG_EXIT]
    from harness import fixture_args
    return ["-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-name", marker,
            "-m", memory, "-kernel", str(v.kernel), "-append", append] + \
        fixture_args(v, "/dev/stdout")


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class Workdir:
    """A test's directory: the allocview-qemu shim (the console script is not
    installed in the venv yet), a gdb shim whose argv[0] carries the marker,
    a report directory, one output directory per run."""

    def __init__(self, path: Path):
        self.path = path
        self.marker = f"avq-{uuid.uuid4().hex[:12]}"
        bin_dir = path / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        self.wrapper = _executable(bin_dir / "allocview-qemu", (
            "#!/bin/sh\n"
            f"PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} "
            "-m allocview.qemu_wrapper \"$@\"\n"))
        self.gdb = self.gdb_shim("gdb")
        self.reports = path / "reports"
        self._runs = 0

    def gdb_shim(self, name: str, extra: str = "", binary: str = "gdb") -> Path:
        """A gdb that shows the marker in its command line (argv[0])."""
        return _executable(self.path / "bin" / name, (
            "#!/bin/bash\n"
            f"exec -a {self.marker}-gdb {binary} {extra} \"$@\"\n"))

    def env(self, **kw) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCVIEW_")}
        env.update({"ALLOCVIEW_REPORT_DIR": str(self.reports), "ALLOCVIEW_GDB": str(self.gdb)})
        env.update({k: str(v) for k, v in kw.items() if v is not None})
        return {k: v for k, v in env.items() if v != ""}

    def run(self, qemu: str | Path, args: list[str], *, env: dict | None = None,
            timeout: float = 60, signal_after: tuple[int, float] | None = None) -> RunResult:
        """The runner script on `qemu`; `signal_after` (sig, seconds) sends a
        signal to the QEMU (or wrapper) process itself meanwhile."""
        self._runs += 1
        out = self.path / f"run{self._runs}"
        out.mkdir()
        t0 = time.monotonic()
        proc = subprocess.Popen(["bash", str(RUNNER), str(qemu), f"{timeout:g}s", str(out)]
                                + args, env=env if env is not None else self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if signal_after is not None:
            sig, after = signal_after
            time.sleep(after)
            for pid in _pids_with(self.marker, exclude_gdb=True):
                os.kill(pid, sig)
        runner_out, runner_err = proc.communicate(timeout=timeout + 60)
        took = time.monotonic() - t0
        times = out / "time"
        if times.exists():
            start, end = (float(x) for x in times.read_text().split())
            took = end - start
        status_file = out / "status"
        status = int(status_file.read_text()) if status_file.exists() else None
        assert proc.returncode == 0 or status is None, (proc.returncode, runner_err)
        read = (lambda n: (out / n).read_bytes() if (out / n).exists() else b"")
        return RunResult(status, read("stdout"), read("stderr"),
                         read("version").decode().strip(), took, proc.returncode,
                         read("verdict").decode().strip())

    def report(self, name: str) -> dict:
        return json.loads((self.reports / f"{name}.json").read_text())

    def summary_lines(self) -> list[str]:
        path = self.reports / "summary.txt"
        return path.read_text().splitlines() if path.exists() else []


def _pids_with(marker: str, exclude_gdb: bool = False) -> list[int]:
    """Processes whose command line holds `marker` (the wrapper's python and
    QEMU hold it through -name; gdb through the shim's argv[0])."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if marker in cmd and not (exclude_gdb and f"{marker}-gdb" in cmd) \
                and "kut_runner.sh" not in cmd and not cmd.startswith("timeout"):
            # the top of the chain only: QEMU when plain, the wrapper when wrapped
            out.append(int(entry))
    return _topmost(out)


def _topmost(pids: list[int]) -> list[int]:
    def parent(pid: int) -> int | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[1])
        except (OSError, IndexError, ValueError):
            return None
    s = set(pids)
    return [p for p in pids if parent(p) not in s]


def leftovers(marker: str, wait: float = 3.0) -> list[str]:
    """Command lines of processes still holding `marker` after up to `wait`
    s (a zombie's cmdline is empty: only live processes count)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmd:
                found.append(f"{entry}: {cmd.decode(errors='replace')}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def measure_overhead(variant: str = "x86_64-2021", runs: int = 5,
                     append: str = "seed=1 exit=1", workdir: Path | None = None) -> dict:
    """Wall time of one fixture test with plain QEMU and through
    allocview-qemu (median of `runs` each, interleaved), for the bench."""
    import shutil
    import statistics
    import tempfile

    own = workdir is None
    path = Path(tempfile.mkdtemp(prefix="allocview-bench-")) if own else workdir
    try:
        w = Workdir(path)
        v = Variant.parse(variant)
        plain, wrapped, checks = [], [], []
        gdb = w.gdb_shim(f"gdb-{v.arch}", binary=v.gdb)
        for i in range(runs):
            args = guest_args(v, append, w.marker)
            plain.append(w.run(v.qemu, args).seconds)
            env = w.env(ALLOCVIEW_TEST_NAME=f"bench{i}", ALLOCVIEW_GDB=gdb)
            wrapped.append(w.run(w.wrapper, args, env=env).seconds)
            t = w.report(f"bench{i}")["test"]
            assert t["checked"], t["ended"]
            checks.append(t["check_time"])
        p, q = statistics.median(plain), statistics.median(wrapped)
        return {"variant": v.name, "runs": runs, "plain_s": round(p, 3),
                "wrapped_s": round(q, 3), "overhead_s": round(q - p, 3),
                "overhead_pct": round(100 * (q - p) / p, 1),
                "check_s": round(statistics.median(checks), 3),
                "note": "the test's command line under the runner, probes not counted"}
    finally:
        if own:
            shutil.rmtree(path, ignore_errors=True)
