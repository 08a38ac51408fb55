"""Guest memory through QEMU's QMP socket (`QmpSource`), and pausing a guest
around reads from elsewhere (`QmpPauser`).

qemu.qmp's async `QMPClient` runs on a private event loop in a daemon
thread, so the synchronous calls here work from any caller, including one
inside its own running asyncio loop (where the legacy sync wrapper fails),
and every call has a timeout.

Reads use `pmemsave` (guest *physical* memory) into a private temporary
directory (mode 0700), one file per round trip, deleted after reading.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from model.errors import MemoryReadError

from ..errors import SourceError
from . import Source
from .memfile import Extent, ram_extents, x86_below_4g

__all__ = ["QmpClient", "QmpPauser", "QmpSource", "query_running"]

# qemu.qmp logs failed connects at ERROR; with no handler configured Python
# would print them beside our one-line error.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 60.0        # pmemsave of a few hundred MiB takes seconds
MERGE_GAP = 512 << 10         # read_many: a pmemsave costs ~1.2 ms, ~1.6 ms more per MiB
MAX_SPAN = 32 << 20           # ... but no single pmemsave beyond this


def _address(address: str):
    """A unix socket path, or (host, port) for "host:port" that is not a file."""
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and not os.path.exists(address):
        return (host or "127.0.0.1", int(port))
    return address


class QmpClient:
    """A connected QMP monitor with synchronous, timed calls.

    `cmd(name, **args)` returns QEMU's "return" value and raises
    qemu.qmp's ExecuteError for an error reply, SourceError when the
    connection fails or times out. `counter["round_trips"]` counts commands.
    """

    def __init__(self, address: str, *, timeout: float = CONNECT_TIMEOUT,
                 counter: dict[str, int] | None = None):
        self.address = address
        self.label = f"--qmp {address}"
        self.counter = counter if counter is not None else {"round_trips": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"allocview-qmp {address}")
        self._thread.start()
        self._qmp = None
        try:
            self._connect(timeout)
        except BaseException:
            self.close()
            raise

    def _run(self, coro, timeout: float):
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        return fut.result()

    def _connect(self, timeout: float) -> None:
        from qemu.qmp import QMPClient
        from qemu.qmp.protocol import ConnectError

        addr = _address(self.address)
        if isinstance(addr, str) and not os.path.exists(addr):
            raise SourceError(f"{self.label}: no such socket (start QEMU with "
                              f"-qmp unix:{addr},server=on,wait=off)")

        async def make():
            return QMPClient("allocview")

        self._qmp = self._run(make(), timeout)
        try:
            self._run(self._qmp.connect(addr), timeout)
        except asyncio.TimeoutError:
            raise SourceError(f"{self.label}: no QMP greeting within {timeout:g} s "
                              "(not a QMP socket, or QEMU is hung)") from None
        except ConnectError as e:
            raise SourceError(f"{self.label}: {_connect_reason(e)}") from None

    def cmd(self, name: str, timeout: float = COMMAND_TIMEOUT, **args) -> Any:
        if self._qmp is None:
            raise SourceError(f"{self.label}: not connected")
        from qemu.qmp import ExecuteError
        from qemu.qmp.error import QMPError

        self.counter["round_trips"] = self.counter.get("round_trips", 0) + 1
        try:
            return self._run(self._qmp.execute(name, args or None), timeout)
        except ExecuteError:
            raise
        except asyncio.TimeoutError:
            raise SourceError(f"{self.label}: {name} got no reply in {timeout:g} s") from None
        except (QMPError, OSError, EOFError) as e:
            raise SourceError(f"{self.label}: {name} failed: {e or type(e).__name__} "
                              "(did QEMU exit?)") from None

    def close(self) -> None:
        if self._qmp is not None:
            try:
                self._run(self._qmp.disconnect(), CONNECT_TIMEOUT)
            except Exception:  # noqa: BLE001 - QEMU may be gone; closing anyway
                pass
            self._qmp = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONNECT_TIMEOUT)
        if not self._loop.is_running():
            self._loop.close()


def _connect_reason(e: Exception) -> str:
    root = getattr(e, "exc", None) or e
    while getattr(root, "exc", None) is not None:       # GreetingError wraps again
        root = root.exc
    if isinstance(root, ConnectionRefusedError):
        return "connection refused (QEMU gone? a stale socket?)"
    if isinstance(root, (EOFError, ConnectionResetError)):
        return "the peer hung up before a QMP greeting (not a QMP socket, or in use?)"
    if isinstance(root, OSError):
        return f"cannot connect: {root.strerror or root}"
    return f"not a QMP server ({str(root).splitlines()[0] if str(root) else type(root).__name__})"


class QmpPauser:
    """Keep a guest paused while reading its memory from elsewhere (a RAM
    file): `stop` on open when it runs; `cont` on close only when this
    stopped it. A guest paused already (-S, a debugger, a user) stays paused.
    """

    def __init__(self, address: str | None = None, *, client: QmpClient | None = None,
                 timeout: float = CONNECT_TIMEOUT):
        self.client = client if client is not None else QmpClient(address, timeout=timeout)
        self._own_client = client is None
        self.status = ""
        self.was_running = False
        self.resumed = False
        try:
            st = self.client.cmd("query-status")
            self.status, self.was_running = st["status"], bool(st["running"])
            if self.was_running:
                self.client.cmd("stop")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Resume the guest if this paused it; idempotent."""
        try:
            if self.was_running and not self.resumed and self.client._qmp is not None:
                self.resumed = True
                self.client.cmd("cont")
        finally:
            if self._own_client:
                self.client.close()

    def __enter__(self) -> "QmpPauser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def query_running(address: str, *, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether QMP says the guest runs now (one connection, no change)."""
    client = QmpClient(address, timeout=timeout)
    try:
        return bool(client.cmd("query-status")["running"])
    finally:
        client.close()


class QmpSource(Source):
    """Guest physical memory through pmemsave, the guest paused meanwhile.

    On x86 pc/q35 machines the RAM map (from the RAM size and machine type)
    lets reads outside RAM fail as they would in a dump; pmemsave itself
    reads unassigned memory as zeros without complaint. Elsewhere reads are
    not checked. `read_many` merges nearby ranges into one pmemsave each.
    """

    def __init__(self, address: str, *, phys_offset: int = 0, timeout: float = CONNECT_TIMEOUT,
                 merge_gap: int = MERGE_GAP, max_span: int = MAX_SPAN):
        super().__init__(f"qmp {address}", phys_offset=phys_offset)
        self.address = address
        self.merge_gap = merge_gap
        self.max_span = max_span
        self._dir = None
        self.client = QmpClient(address, timeout=timeout, counter=self.stats)
        try:
            self.pauser = QmpPauser(client=self.client)
            self._dir = tempfile.mkdtemp(prefix="allocview-qmp-")
            self._seq = 0
            self.ram = _ram_map(self.client)
        except BaseException:
            self._release()
            raise

    # ---------------------------------------------------------------- reads
    def _in_ram(self, phys: int, size: int) -> bool:
        if self.ram is None:
            return True
        pos, end = phys, phys + size
        for e in self.ram:
            if e.phys <= pos < e.end:
                pos = e.end
                if pos >= end:
                    return True
        return size == 0

    def read_phys(self, phys: int, size: int) -> bytes:
        if not self._in_ram(phys, size):
            raise MemoryReadError(phys, size, "not guest RAM")
        if size == 0:
            return b""
        from qemu.qmp import ExecuteError

        self._seq += 1
        path = os.path.join(self._dir, f"pmem-{self._seq}")
        try:
            self.client.cmd("pmemsave", val=phys, size=size, filename=path)
            with open(path, "rb") as f:
                data = f.read()
        except ExecuteError as e:
            raise MemoryReadError(phys, size, f"pmemsave: {e}") from None
        except OSError as e:
            raise MemoryReadError(phys, size, f"pmemsave wrote no file: {e.strerror}") from None
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        if len(data) != size:
            raise MemoryReadError(phys, size, f"pmemsave wrote {len(data)} bytes")
        return data

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """One pmemsave per group of ranges lying within `merge_gap` of each
        other (and spanning at most `max_span`); a group that fails is read
        range by range."""
        out: list[bytes | None] = [None] * len(ranges)
        order = sorted((i for i, (a, s) in enumerate(ranges) if s >= 0),
                       key=lambda i: ranges[i][0])
        group: list[int] = []
        lo = hi = 0
        for i in order:
            a, s = ranges[i]
            if group and a - hi <= self.merge_gap and max(hi, a + s) - lo <= self.max_span \
                    and self._in_ram(lo, max(hi, a + s) - lo):
                group.append(i)
                hi = max(hi, a + s)
                continue
            self._read_group(ranges, group, lo, hi, out)
            group, lo, hi = [i], a, a + s
        self._read_group(ranges, group, lo, hi, out)
        return out

    def _read_group(self, ranges, group, lo, hi, out) -> None:
        if not group:
            return
        if len(group) == 1:
            out[group[0]] = super().read_many([ranges[group[0]]])[0]
            return
        try:
            blob = self.read(lo, hi - lo)
        except MemoryReadError:
            for i in group:
                out[i] = super().read_many([ranges[i]])[0]
            return
        for i in group:
            a, s = ranges[i]
            out[i] = blob[a - lo:a - lo + s]

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if not self.closed:
            self._release()
        super().close()

    def _release(self) -> None:
        try:
            pauser = getattr(self, "pauser", None)
            if pauser is not None:
                pauser.close()
        finally:
            self.client.close()
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)


def _ram_map(client: QmpClient) -> list[Extent] | None:
    """Guest RAM as physical extents on x86 pc/q35; None elsewhere."""
    from qemu.qmp import ExecuteError

    try:
        if client.cmd("query-target")["arch"] not in ("x86_64", "i386"):
            return None
        mtype = str(client.cmd("qom-get", path="/machine", property="type"))
        machine = "q35" if "q35" in mtype else "pc" if mtype.startswith("pc") else None
        if machine is None:
            return None
        ram = int(client.cmd("query-memory-size-summary")["base-memory"])
        cap = int(client.cmd("qom-get", path="/machine", property="max-ram-below-4g") or 0)
    except (ExecuteError, KeyError, TypeError, ValueError):
        return None
    return ram_extents(ram, x86_below_4g(ram, machine, cap))
