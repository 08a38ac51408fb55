"""Helpers for the client tests: bare QEMU machines with known bytes loaded
(no guest program), QMP status checks, process accounting, and the
one-line error check. Tests fail (never skip) when qemu or gdb is missing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from allocview.dumpwrite import Segment
from allocview.errors import SourceError


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (apt: qemu-system-x86 gdb)", pytrace=False)
    return path


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(name: str) -> list[int]:
    """pids of our live child processes whose command is `name`."""
    me, out = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if comm == name and int(fields[1]) == me and fields[0] != "Z":
            out.append(int(pid))
    return out


def one_line(err: Exception, *names: str) -> str:
    """The message, checked to be one line naming each of `names`."""
    msg = str(err)
    assert "\n" not in msg and msg, msg
    for n in names:
        assert str(n) in msg, f"{n!r} not in {msg!r}"
    return msg


class Qemu:
    """One qemu-system-x86_64 with a QMP socket, optionally a gdb stub and
    blobs loaded at physical addresses (-device loader, force-raw)."""

    def __init__(self, workdir: Path, *, memory: str = "16M", machine: str = "pc",
                 paused: bool = True, gdb: bool = False,
                 blobs: "list[tuple[int, bytes]] | list[Segment]" = (),
                 extra: tuple[str, ...] = ()):
        self.workdir = workdir
        # a unix socket path has at most 107 bytes: not under pytest's tmp_path
        self.sockdir = Path(tempfile.mkdtemp(prefix="avq-"))
        self.qmp_path = self.sockdir / "qmp.sock"
        self.gdb_port = free_port() if gdb else None
        argv = [need("qemu-system-x86_64"), "-machine", machine, "-m", memory, "-nodefaults",
                "-display", "none", "-accel", "tcg",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if paused:
            argv.append("-S")
        if gdb:
            argv += ["-gdb", f"tcp:127.0.0.1:{self.gdb_port}"]
        for n, blob in enumerate(blobs):
            addr, data = (blob.phys, _flat(blob)) if isinstance(blob, Segment) else blob
            path = workdir / f"blob-{id(self)}-{n}"
            path.write_bytes(data)
            argv += ["-device", f"loader,file={path},addr={addr:#x},force-raw=on"]
        self.argv = argv + list(extra)
        self.log = workdir / f"qemu-{id(self)}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        try:
            self._wait_ready(time.monotonic() + 20)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, deadline: float) -> None:
        while not self.qmp_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"QEMU did not start: {' '.join(self.argv)}\n{self.log.read_text()}")
            time.sleep(0.01)
        while True:        # QMP answers once the machine (and its RAM file) exists
            try:
                self.status()
                return
            except SourceError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def status(self) -> str:
        """query-status over a second connection (QEMU serves one client per
        socket at a time: call only while no source holds it)."""
        from allocview.sources.qmp import QmpClient

        c = QmpClient(str(self.qmp_path))
        try:
            return c.cmd("query-status")["status"]
        finally:
            c.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.sockdir, ignore_errors=True)


def _flat(seg: Segment) -> bytes:
    buf = bytearray(seg.size)
    for off, data in seg.pieces:
        buf[off:off + len(data)] = data
    return bytes(buf)
