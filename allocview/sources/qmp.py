"""Guest memory through QEMU's QMP socket (`QmpSource`), and pausing a guest
around reads from elsewhere (`QmpPauser`).

qemu.qmp's async `QMPClient` runs on a private event loop in a daemon
thread, so the synchronous calls here work from any caller, including one
inside its own running asyncio loop (where the legacy sync wrapper fails),
and every call has a timeout.

Reads use `pmemsave` (guest *physical* memory) into a private temporary
directory (mode 0700), one file per command, deleted after reading; many
pmemsaves go pipelined in one round trip.
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
from .mapped import Extent
from .memfile import ram_extents, x86_below_4g

__all__ = ["QmpClient", "QmpPauser", "QmpSource", "query_running"]

# qemu.qmp logs failed connects at ERROR; with no handler configured Python
# would print them beside our one-line error.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 60.0        # pmemsave of a few hundred MiB takes seconds
MERGE_GAP = 256 << 10         # read_many: a pipelined pmemsave ~0.5 ms, a MiB more ~1.6 ms
MAX_SPAN = 32 << 20           # ... but no single pmemsave beyond this
PIPELINE = 256                # pmemsaves in flight at once (files in the temp dir)


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
    connection fails or times out. `counter` (a Source's stats) counts
    "commands" and "round_trips" (waits for replies).
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

    @property
    def connected(self) -> bool:
        return self._qmp is not None

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
        result = self.pipeline([(name, args)], timeout)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def pipeline(self, calls: list[tuple[str, dict]],
                 timeout: float = COMMAND_TIMEOUT) -> list[Any]:
        """Send every command, then await every reply: one round trip for
        many commands (QEMU runs them in order). Each result is the return
        value or the ExecuteError of that command; a broken connection or
        timeout raises SourceError."""
        if self._qmp is None:
            raise SourceError(f"{self.label}: not connected")
        from qemu.qmp import ExecuteError
        from qemu.qmp.error import QMPError

        async def run_all():
            return await asyncio.gather(*(self._qmp.execute(n, a or None) for n, a in calls),
                                        return_exceptions=True)

        self.counter["round_trips"] = self.counter.get("round_trips", 0) + 1
        self.counter["commands"] = self.counter.get("commands", 0) + len(calls)
        what = calls[0][0] if len(calls) == 1 else f"{len(calls)} commands"
        try:
            results = self._run(run_all(), timeout)
        except asyncio.TimeoutError:
            raise SourceError(f"{self.label}: {what} got no reply in {timeout:g} s") from None
        for r in results:
            if isinstance(r, ExecuteError) or not isinstance(r, BaseException):
                continue
            if isinstance(r, (QMPError, OSError, EOFError)):
                raise SourceError(f"{self.label}: {what} failed: {r or type(r).__name__} "
                                  "(did QEMU exit?)") from None
            raise r
        return results

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
            if self.was_running and not self.resumed and self.client.connected:
                self.resumed = True
                self.client.cmd("cont")
        except SourceError:
            pass                       # QEMU is gone: there is nothing to resume
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
    not checked. `read_many` merges nearby ranges into one pmemsave each
    and pipelines those. stats: "commands" counts QMP commands,
    "round_trips" the waits for their replies.
    """

    def __init__(self, address: str, *, phys_offset: int = 0, timeout: float = CONNECT_TIMEOUT,
                 merge_gap: int = MERGE_GAP, max_span: int = MAX_SPAN):
        super().__init__(f"qmp {address}", phys_offset=phys_offset)
        self.address = address
        self.merge_gap = merge_gap
        self.max_span = max_span
        self._dir = None
        self.stats["commands"] = 0      # QMP commands; round_trips counts waits for replies
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
        got = self._pmemsave([(phys, size)])[0]
        if isinstance(got, MemoryReadError):
            raise got
        return got

    def _pmemsave(self, spans: list[tuple[int, int]]) -> list[bytes | MemoryReadError]:
        """Physical (addr, size) spans, each through its own pmemsave file,
        pipelined PIPELINE at a time."""
        out: list[bytes | MemoryReadError] = []
        for b in range(0, len(spans), PIPELINE):
            batch = spans[b:b + PIPELINE]
            paths = []
            for _ in batch:
                self._seq += 1
                paths.append(os.path.join(self._dir, f"pmem-{self._seq}"))
            calls = [("pmemsave", {"val": a, "size": n, "filename": p})
                     for (a, n), p in zip(batch, paths) if n]
            results = iter(self.client.pipeline(calls) if calls else [])
            for (a, n), p in zip(batch, paths):
                out.append(_collect(a, n, p, next(results) if n else None))
        return out

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """Ranges within `merge_gap` of each other (spanning at most
        `max_span`) share one pmemsave; all of them go in one pipelined round
        trip. A group that fails is read again range by range."""
        if self.closed:
            raise SourceError(f"{self.name}: read after close")
        out: list[bytes | None] = [None] * len(ranges)
        groups = self._groups(ranges)
        spans = [(lo - self.phys_offset, hi - lo) for lo, hi, _ in groups]
        retry: list[int] = []
        for (lo, hi, members), got in zip(groups, self._pmemsave(spans)):
            if isinstance(got, MemoryReadError):
                retry += members if len(members) > 1 else []
                continue
            for i in members:
                a, s = ranges[i]
                out[i] = got[a - lo:a - lo + s]
        if retry:
            spans = [(ranges[i][0] - self.phys_offset, ranges[i][1]) for i in retry]
            for i, got in zip(retry, self._pmemsave(spans)):
                out[i] = None if isinstance(got, MemoryReadError) else got
        served = [i for i, d in enumerate(out) if d is not None]
        self.stats["reads"] += len(served)
        self.stats["bytes"] += sum(len(out[i]) for i in served)
        return out

    def _groups(self, ranges: list[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
        """(lo, hi, range indexes) of readable ranges, merged by address."""
        groups: list[list] = []
        for i in sorted(range(len(ranges)), key=lambda i: ranges[i][0]):
            a, s = ranges[i]
            phys = a - self.phys_offset
            if s < 0 or phys < 0 or not self._in_ram(phys, s):
                continue
            if groups:
                g = groups[-1]
                hi = max(g[1], a + s)
                if a - g[1] <= self.merge_gap and hi - g[0] <= self.max_span \
                        and self._in_ram(g[0] - self.phys_offset, hi - g[0]):
                    g[1] = hi
                    g[2].append(i)
                    continue
            groups.append([a, a + s, [i]])
        return [tuple(g) for g in groups]

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


def _collect(addr: int, size: int, path: str, result) -> bytes | MemoryReadError:
    """The bytes pmemsave wrote to path (then removed), or why not."""
    from qemu.qmp import ExecuteError

    if not size:
        return b""
    try:
        if isinstance(result, ExecuteError):
            return MemoryReadError(addr, size, f"pmemsave: {result}")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return MemoryReadError(addr, size, f"pmemsave wrote no file: {e.strerror}")
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    if len(data) != size:
        return MemoryReadError(addr, size, f"pmemsave wrote {len(data)} bytes")
    return data


def _ram_map(client: QmpClient) -> list[Extent] | None:
    """Guest RAM as physical extents on x86 pc/q35; None elsewhere."""
    target, mtype, summary, cap = client.pipeline([
        ("query-target", {}), ("qom-get", {"path": "/machine", "property": "type"}),
        ("query-memory-size-summary", {}),
        ("qom-get", {"path": "/machine", "property": "max-ram-below-4g"})])
    if any(isinstance(r, Exception) for r in (target, mtype, summary, cap)):
        return None
    if target.get("arch") not in ("x86_64", "i386"):
        return None
    machine = "q35" if "q35" in str(mtype) else "pc" if str(mtype).startswith("pc") else None
    if machine is None:
        return None
    ram = int(summary["base-memory"])
    return ram_extents(ram, x86_below_4g(ram, machine, int(cap or 0)))
