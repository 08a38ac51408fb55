"""Just enough QMP to let a paused guest run on (`query-status`, `cont`)
and to ask HMP where guest RAM lives (`human-monitor-command`).

The wrapper needs QMP only when gdb fails while it holds the guest
stopped, so this is a blocking socket with a timeout on every read, on the
wrapper's end of a socket pair whose other end QEMU got as a descriptor:
no socket file to leave behind, no one else who could connect. It does
not use qemu.qmp: that client's asyncio tasks report a QEMU that goes away
as tracebacks on stderr, and stderr here is the test's.
"""

from __future__ import annotations

import json
import socket
import time

__all__ = ["QmpError", "Qmp"]


class QmpError(RuntimeError):
    """QMP did not answer, or answered with an error."""


class Qmp:
    """A monitor connection; capabilities are negotiated on first use."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._file = sock.makefile("rwb")
        self._ready = False

    def _reply(self, deadline: float) -> dict:
        """The next message that is not an event."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError("no answer in time")
            self._sock.settimeout(left)
            line = self._file.readline()
            if not line:
                raise QmpError("QEMU closed the monitor")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def command(self, name: str, timeout: float = 5.0, arguments: dict | None = None):
        """A QMP command's return value."""
        deadline = time.monotonic() + timeout
        try:
            if not self._ready:
                if "QMP" not in self._reply(deadline):
                    raise QmpError("no QMP greeting")
                self._ready = True
                self.command("qmp_capabilities", timeout)
            msg = {"execute": name, **({"arguments": arguments} if arguments else {})}
            self._file.write(json.dumps(msg).encode() + b"\n")
            self._file.flush()
            msg = self._reply(deadline)
        except (OSError, ValueError) as e:
            raise QmpError(str(e) or type(e).__name__) from None
        if "error" in msg:
            raise QmpError(f"{name}: {msg['error'].get('desc', msg['error'])}")
        return msg.get("return")

    def hmp(self, lines: list[str], timeout: float = 5.0) -> list[str]:
        """HMP command lines' output (hostmem's monitor)."""
        return [self.command("human-monitor-command", timeout, {"command-line": line})
                for line in lines]

    def status(self, timeout: float = 5.0) -> str:
        return self.command("query-status", timeout)["status"]

    def resume(self, timeout: float = 5.0) -> str:
        """`cont` when the guest is held (by -S or a gdb stop); the status
        seen before. A guest paused for its own reasons (a QMP stop from
        elsewhere, a panic, an I/O error) is left as it is."""
        status = self.status(timeout)
        if status in ("prelaunch", "debug"):
            self.command("cont", timeout)
        return status

    def close(self) -> None:
        for f in (self._file, self._sock):
            try:
                f.close()
            except OSError:
                pass
