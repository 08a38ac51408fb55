"""The processes allocview-qemu starts, and the sockets it hands QEMU.

Every child gets PR_SET_PDEATHSIG=SIGKILL, so a wrapper killed outright
(the runner's `timeout -k`) takes them along instead of leaving a paused
QEMU or a gdb behind. QEMU stays in the wrapper's process group (terminal
signals reach it as they would reach a plain QEMU); gdb gets its own
session, so a Ctrl-C meant for the test never interrupts the debugger.

The gdb stub listens on a socket bound here and passed to QEMU as a
descriptor: the port is ours before QEMU starts (no race for a "free"
port, no bind error in the test's output) and gdb may connect at once.
QMP is one end of a socket pair: private, and no file to clean up.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
from typing import Sequence

__all__ = ["spawn", "reap", "kill", "Listeners"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, between fork and exec."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def spawn(argv: Sequence[str], *, own_session: bool = False, pass_fds: Sequence[int] = (),
          **kwargs) -> subprocess.Popen:
    """Popen that dies with this process (the spawning thread: call it from
    the main thread). stdin/stdout/stderr are inherited unless given."""
    return subprocess.Popen(list(argv), preexec_fn=_die_with_parent,
                            start_new_session=own_session, pass_fds=tuple(pass_fds),
                            close_fds=True, **kwargs)


def kill(proc: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
    """Signal a child we have not reaped yet."""
    if proc is not None and proc.returncode is None:
        try:
            proc.send_signal(sig)
        except (ProcessLookupError, OSError):
            pass


def reap(proc: subprocess.Popen | None, timeout: float = 2.0) -> int | None:
    """Wait for a child, SIGKILL it after `timeout`; its status."""
    if proc is None:
        return None
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        return proc.wait()


class Listeners:
    """A loopback TCP listener for the gdb stub and a socket pair for QMP,
    made here; `qemu_args()` hands QEMU its ends as descriptors,
    `close_ours()` drops the wrapper's copies of those once QEMU holds them
    (so a QEMU that died refuses gdb instead of leaving it queued).
    `qmp_socket` is the wrapper's end of the monitor."""

    def __init__(self) -> None:
        self._gdb = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._gdb.bind(("127.0.0.1", 0))
            self._gdb.listen(1)
            self.qmp_socket, self._qmp_qemu = socket.socketpair()
        except OSError:
            self._gdb.close()
            raise
        self.gdb_port = self._gdb.getsockname()[1]

    @property
    def fds(self) -> tuple[int, int]:
        return self._gdb.fileno(), self._qmp_qemu.fileno()

    def qemu_args(self) -> list[str]:
        gdb_fd, qmp_fd = self.fds
        # nodelay: without it every gdb round trip waits for a delayed ACK
        return ["-chardev", f"socket,id=allocview-gdb,fd={gdb_fd},server=on,wait=off,"
                "nodelay=on", "-gdb", "chardev:allocview-gdb",
                "-chardev", f"socket,id=allocview-qmp,fd={qmp_fd},server=off",
                "-mon", "chardev=allocview-qmp,mode=control"]

    def close_ours(self) -> None:
        self._gdb.close()
        self._qmp_qemu.close()

    def close(self) -> None:
        self.close_ours()
        self.qmp_socket.close()
