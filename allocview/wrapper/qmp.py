"""QMP for the wrapper: let a guest that gdb left stopped run on
(`query-status`, `cont`) and ask HMP where guest RAM lives
(`human-monitor-command`).

qemu.qmp, through sources.qmp.QmpClient, over the wrapper's end of a socket
pair whose other end QEMU got as a descriptor: no socket file to leave
behind, no one else who could connect. Every call has a timeout, and every
failure is a QmpError: stderr here is the test's, so nothing may print.
"""

from __future__ import annotations

import logging
import socket

from ..errors import SourceError
from ..sources.qmp import QmpClient, hmp

__all__ = ["QmpError", "Qmp"]

# A QEMU that dies under qemu.qmp can leave asyncio complaining on stderr
# ("Task exception was never retrieved"); the runner reads stderr.
logging.getLogger("asyncio").addHandler(logging.NullHandler())


class QmpError(RuntimeError):
    """QMP did not answer, or answered with an error."""


class Qmp:
    """A monitor connection over `sock`, made on first use."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._client: QmpClient | None = None

    def _connected(self, timeout: float) -> QmpClient:
        if self._client is None:
            self._client = QmpClient(self._sock, timeout=timeout, label="QMP")
        return self._client

    def command(self, name: str, timeout: float = 5.0):
        """A QMP command's return value."""
        from qemu.qmp import ExecuteError
        try:
            return self._connected(timeout).cmd(name, timeout)
        except SourceError as e:
            raise QmpError(str(e).removeprefix("QMP: ")) from None
        except ExecuteError as e:
            raise QmpError(f"{name}: {e}") from None

    def hmp(self, lines: list[str], timeout: float = 5.0) -> list[str]:
        """HMP command lines' output, pipelined (hostmem's monitor)."""
        try:
            return hmp(self._connected(timeout), timeout)(lines)
        except SourceError as e:
            raise QmpError(str(e).removeprefix("QMP: ")) from None

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
        if self._client is not None:
            self._client.close()
        try:
            self._sock.close()
        except OSError:
            pass
