"""A gdb driven over MI, for tests: CLI commands in, console text out.

One gdb process per guest. Every command carries a token and waits for its
own result record with a timeout, so a hung target fails a test instead of
hanging it. Async `*stopped` records are queued for `wait_stopped`.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pygdbmi.gdbmiparser import parse_response

from . import procs

__all__ = ["Gdb", "GdbError", "GdbTimeout", "parse_value"]

GDB = os.environ.get("ALLOCVIEW_GDB", "gdb")


class GdbError(RuntimeError):
    """gdb answered ^error, or died."""


class GdbTimeout(GdbError):
    """No answer in time."""


@dataclass
class _Reply:
    result: str
    payload: dict | None
    console: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.console)


def _mi_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_VALUE_RE = re.compile(r"^\$\d+ = (?:\([^)]*\) )?(.*?)\s*$", re.S)


def parse_value(text: str) -> int:
    """The integer of a `print` answer: `$1 = 0x10`, `$2 = (T *) 0x1000 <x>`."""
    m = _VALUE_RE.match(text.strip())
    if not m:
        raise GdbError(f"not a print answer: {text!r}")
    word = (m.group(1).split() or [""])[0]
    try:
        return int(word, 0)
    except ValueError:
        raise GdbError(f"not an integer: {text.strip()!r}") from None


class Gdb:
    """gdb on `elf`, architecture `arch` (gdb's name), log kept at `log_path`.

    gdb: the binary (default $ALLOCVIEW_GDB or gdb; gdb-multiarch for
    non-x86 guests). load_offset: where a relocatable ELF (linked at 0)
    runs: its symbols are loaded with `symbol-file -o load_offset`.
    """

    def __init__(self, elf: str | Path, arch: str, *, log_path: str | Path | None = None,
                 env: dict | None = None, gdb: str | None = None, load_offset: int = 0):
        self.elf = Path(elf)
        self.arch = arch
        self.binary = gdb or GDB
        self.load_offset = load_offset
        self.log_path = Path(log_path) if log_path else None
        self._log = open(self.log_path, "a", buffering=1) if self.log_path else None
        self._tmp = tempfile.TemporaryDirectory(prefix="allocview-gdb-")
        self._token = 0
        self._lines: "queue.Queue[dict | None]" = queue.Queue()
        self._stops: list[dict] = []
        self._pending: list[dict] = []
        self.proc = procs.spawn([self.binary, "--nx", "--quiet", "--interpreter=mi3"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, text=True,
                                errors="replace", bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            # async MI: gdb keeps taking commands (-exec-interrupt) while the guest runs
            self.mi("-gdb-set mi-async on")
            # A relocatable ELF: symbols at the load offset; the exec file
            # still tells gdb the ABI (ppc64 ELFv2 is only known from an
            # exec file's e_flags: without one gdb assumes ELFv1 and its
            # inferior calls never set r12).
            load = ((f"exec-file {self.elf}", f"symbol-file -o {self.load_offset:#x} {self.elf}")
                    if self.load_offset else (f"file {self.elf}",))
            for cmd in ("set pagination off", "set confirm off", "set width 0",
                        "set height 0", "set print elements unlimited",
                        "set print repeats unlimited", "set breakpoint pending off",
                        *load, f"set architecture {self.arch}"):
                self.cli(cmd)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ plumbing
    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self._log:
                self._log.write(line)
            line = line.rstrip("\n")
            if not line or line.startswith("(gdb)"):
                continue
            try:
                self._lines.put(parse_response(line))
            except Exception:  # noqa: BLE001 - keep reading whatever gdb prints
                self._lines.put({"type": "output", "payload": line, "token": None})
        self._lines.put(None)

    def _next_record(self, deadline: float) -> dict:
        if self._pending:
            return self._pending.pop(0)
        left = deadline - time.monotonic()
        if left <= 0:
            raise GdbTimeout("no answer from gdb")
        try:
            rec = self._lines.get(timeout=left)
        except queue.Empty:
            raise GdbTimeout("no answer from gdb") from None
        if rec is None:
            self._lines.put(None)
            raise GdbError(f"gdb exited (status {self.proc.poll()})")
        return rec

    def mi(self, command: str, timeout: float = 30.0) -> _Reply:
        """Send one MI command and wait for its result record."""
        if self.proc.poll() is not None:
            raise GdbError(f"gdb exited (status {self.proc.returncode})")
        self._token += 1
        token = self._token
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{token}{command}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise GdbError(f"gdb is gone: {e}") from e
        reply = _Reply("", None)
        deadline = time.monotonic() + timeout
        while True:
            try:
                rec = self._next_record(deadline)
            except GdbTimeout as e:
                raise GdbTimeout(f"{command!r}: no answer in {timeout} s") from e
            kind = rec.get("type")
            if kind == "console":
                reply.console.append(rec.get("payload") or "")
            elif kind == "log":
                reply.log.append(rec.get("payload") or "")
            elif kind == "notify" and rec.get("message") == "stopped":
                self._stops.append(rec.get("payload") or {})
            elif kind == "result" and rec.get("token") == token:
                reply.result = rec.get("message") or ""
                reply.payload = rec.get("payload")
                if reply.result == "error":
                    msg = (reply.payload or {}).get("msg", "")
                    raise GdbError(f"{command!r}: {msg}")
                return reply

    def cli(self, command: str, timeout: float = 30.0) -> str:
        """A CLI command (`print x`, `x/16xb p`...); its console output."""
        return self.mi(f"-interpreter-exec console {_mi_quote(command)}", timeout).text

    def print_int(self, expr: str, timeout: float = 30.0) -> int:
        """`print/x expr` as an int."""
        return parse_value(self.cli(f"print/x {expr}", timeout))

    def python(self, code: str, timeout: float = 60.0) -> str:
        """Run a gdb Python snippet (any length); what it printed."""
        fd, path = tempfile.mkstemp(suffix=".py", dir=self._tmp.name)
        with os.fdopen(fd, "w") as f:
            f.write(code)
        return self.cli(f"source {path}", timeout)

    def read_memory(self, addr: int, size: int, timeout: float = 60.0) -> bytes:
        """Bytes of target memory, through `dump binary memory`."""
        fd, path = tempfile.mkstemp(suffix=".bin", dir=self._tmp.name)
        os.close(fd)
        self.cli(f"dump binary memory {path} {addr:#x} {addr + size:#x}", timeout)
        data = Path(path).read_bytes()
        os.unlink(path)
        if len(data) != size:
            raise GdbError(f"dump of {size} bytes at {addr:#x} gave {len(data)}")
        return data

    # ------------------------------------------------------------ execution
    def connect(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        """`target remote`: the guest stops."""
        self.cli(f"target remote {host}:{port}", timeout)

    def wait_stopped(self, timeout: float) -> dict:
        """The next `*stopped` record's payload."""
        deadline = time.monotonic() + timeout
        while not self._stops:
            rec = self._next_record(deadline)
            if rec.get("type") == "notify" and rec.get("message") == "stopped":
                self._stops.append(rec.get("payload") or {})
            elif rec.get("type") == "result":
                continue
        return self._stops.pop(0)

    def cont(self, timeout: float = 60.0) -> dict:
        """Resume the guest and wait until it stops again (breakpoint,
        exit of the target...). On timeout, interrupt it and raise."""
        self._stops.clear()
        self.mi("-exec-continue", timeout=10.0)
        try:
            return self.wait_stopped(timeout)
        except GdbTimeout:
            try:
                self.mi("-exec-interrupt", timeout=5.0)
                self.wait_stopped(10.0)
            except GdbError:
                pass
            raise GdbTimeout(f"the guest did not stop within {timeout} s") from None

    def run_to_checkpoint(self, n: int, timeout: float = 60.0) -> None:
        """Continue until `checkpoint(n)` is entered (a breakpoint with the
        condition n == N), leave the guest stopped there."""
        self.cli("delete")
        self.cli(f"break checkpoint if n == {int(n)}")
        stop = self.cont(timeout)
        if stop.get("reason") != "breakpoint-hit":
            raise GdbError(f"stopped for {stop.get('reason')!r}, not at checkpoint {n}: {stop}")
        got = parse_value(self.cli("print n"))
        if got != n:
            raise GdbError(f"stopped in checkpoint({got}), wanted {n}")
        self.cli("delete")

    def disconnect(self) -> None:
        """Leave the target, which stays paused (QEMU's stub)."""
        self.cli("disconnect", timeout=10.0)

    def detach(self) -> None:
        """Leave the target, which resumes."""
        self.cli("detach", timeout=10.0)

    # ------------------------------------------------------------ teardown
    def close(self) -> None:
        """Kill gdb (the guest stays as it is: the stub keeps it paused)."""
        if self.proc.poll() is None:
            try:
                self.disconnect()
            except GdbError:
                pass
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("-gdb-exit\n")
                self.proc.stdin.flush()
                self.proc.wait(2.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        procs.kill_tree(self.proc)
        if self._log:
            self._log.close()
            self._log = None
        self._tmp.cleanup()
