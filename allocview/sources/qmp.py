"""Guest memory through QEMU's QMP socket (`QmpSource`), and pausing a guest
around reads from elsewhere (`QmpPauser`).

qemu.qmp's async `QMPClient` runs on a private event loop in a daemon
thread, so the synchronous calls here work from any caller, including one
inside its own running asyncio loop (where the legacy sync wrapper fails),
and every call has a timeout.

Reads come straight from the QEMU process's memory (hostmem.HostMemory:
QEMU's pid from the socket's SO_PEERCRED, RAM's host address from HMP)
when QEMU runs on this host as this user: no QMP command per read at all.
Otherwise, and for anything that path refuses, `pmemsave` (guest
*physical* memory) into a private temporary directory (mode 0700), one
file per command, deleted after reading; many pmemsaves go pipelined in
one round trip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from typing import Any, Callable

from allocview.model.errors import MemoryReadError

from ..errors import SourceError, first_line
from . import Source
from .hostmem import HostMemory, HostMemoryUnavailable, parse_mtree, unix_peer_pid
from .mapped import Extent

__all__ = ["QmpClient", "QmpPauser", "QmpSource", "query_running"]

# qemu.qmp logs failed connects at ERROR; with no handler configured Python
# would print them beside our one-line error.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())

# A silent peer is given this long, for the greeting and for each reply
# (--timeout); a pmemsave is given more for its size.
CONNECT_TIMEOUT = 5.0
PMEMSAVE_RATE = 50 << 20      # bytes per second a slow host still writes
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

    def __init__(self, address, *, timeout: float = CONNECT_TIMEOUT,
                 counter: dict[str, int] | None = None, label: str | None = None):
        """address: a socket path, "HOST:PORT", or a connected socket.
        timeout: seconds to wait for the greeting and for each reply."""
        self.address = address
        self.timeout = timeout
        self.label = label or f"--qmp {address}"
        self.counter = counter if counter is not None else {"round_trips": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_serve, args=(self._loop,), daemon=True,
                                        name=f"allocview-qmp {self.label}")
        self._thread.start()
        self._qmp = None
        self._negotiated = False
        self.peer_pid: int | None = None
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

        if isinstance(self.address, str):
            addr = _address(self.address)
        else:                                  # a socket the caller connected
            addr = self.address
            self.peer_pid = unix_peer_pid(addr)
            addr.setblocking(False)
        if isinstance(addr, str) and not os.path.exists(addr):
            raise SourceError(f"{self.label}: no such socket (start QEMU with "
                              f"-qmp unix:{addr},server=on,wait=off)")

        if isinstance(addr, str):
            # our own socket, to learn QEMU's pid (SO_PEERCRED) for HostMemory
            sock = _unix_connect(addr, timeout, self.label)
            self.peer_pid = unix_peer_pid(sock)
            addr = sock

        async def connect():
            self._qmp = QMPClient("allocview")     # made on the loop it will run on
            # the greeting is checked here; qmp_capabilities rides along with
            # the first pipeline instead of costing a round trip of its own
            self._qmp.negotiate = False
            await self._qmp.connect(addr)

        try:
            self._run(connect(), timeout)
        except asyncio.TimeoutError:
            raise SourceError(f"{self.label}: no QMP greeting within {timeout:g} s "
                              "(not a QMP socket, or QEMU is hung)") from None
        except ConnectError as e:
            raise SourceError(f"{self.label}: {_connect_reason(e)}") from None

    def cmd(self, name: str, timeout: float | None = None, **args) -> Any:
        result = self.pipeline([(name, args)], timeout)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def pipeline(self, calls: list[tuple[str, dict]],
                 timeout: float | None = None) -> list[Any]:
        """Send every command, then await every reply: one round trip for
        many commands (QEMU runs them in order). Each result is the return
        value or the ExecuteError of that command; a broken connection or
        timeout (default: the client's) raises SourceError."""
        timeout = self.timeout if timeout is None else timeout
        if self._qmp is None:
            raise SourceError(f"{self.label}: not connected")
        from qemu.qmp import ExecuteError
        from qemu.qmp.error import QMPError

        first = [] if self._negotiated else [("qmp_capabilities", {})]

        async def run_all():
            return await asyncio.gather(*(self._qmp.execute(n, a or None)
                                          for n, a in first + calls),
                                        return_exceptions=True)

        self.counter["round_trips"] = self.counter.get("round_trips", 0) + 1
        self.counter["commands"] = self.counter.get("commands", 0) + len(calls)
        what = calls[0][0] if len(calls) == 1 else f"{len(calls)} commands"
        try:
            results = self._run(run_all(), timeout)
        except asyncio.TimeoutError:
            raise SourceError(f"{self.label}: {what} got no reply in {timeout:g} s") from None
        if first:
            if isinstance(results[0], BaseException):
                raise SourceError(f"{self.label}: qmp_capabilities failed: {results[0]}")
            self._negotiated = True
            results = results[1:]
        for r in results:
            if isinstance(r, ExecuteError) or not isinstance(r, BaseException):
                continue
            if isinstance(r, (QMPError, OSError, EOFError)):
                raise SourceError(f"{self.label}: {what} failed: {r or type(r).__name__} "
                                  "(did QEMU exit?)") from None
            raise r
        return results

    def close(self) -> None:
        """Hang up. Nothing waits on QEMU here (every command already has
        its reply): the loop thread disconnects, stops and closes its loop
        on its own, so closing costs the caller no round trip."""
        qmp, self._qmp = self._qmp, None
        if not self._thread.is_alive():
            if not self._loop.is_closed():
                self._loop.close()
            return

        async def hang_up():
            if qmp is not None:
                try:
                    await asyncio.wait_for(qmp.disconnect(), CONNECT_TIMEOUT)
                except Exception:  # noqa: BLE001 - QEMU may be gone; closing anyway
                    pass
            self._loop.stop()

        try:
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(hang_up()))
        except RuntimeError:           # the loop is closed already
            pass


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The loop thread: run until close() stops the loop, then close it."""
    try:
        loop.run_forever()
    finally:
        loop.close()


def _unix_connect(path: str, timeout: float, label: str):
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise SourceError(f"{label}: {_connect_reason(e)}") from None
    sock.setblocking(False)
    return sock


def _hmp_call(line: str) -> tuple[str, dict]:
    return ("human-monitor-command", {"command-line": line})


def hmp(client: QmpClient, timeout: float | None = None) -> Callable[[list[str]], list[str]]:
    """HMP command lines through QMP, pipelined (HostMemory's monitor)."""
    def run(lines: list[str]) -> list[str]:
        got = client.pipeline([_hmp_call(x) for x in lines], timeout)
        bad = [r for r in got if isinstance(r, Exception)]
        if bad:
            raise HostMemoryUnavailable(f"human-monitor-command: {bad[0]}")
        return got
    return run


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
    return f"not a QMP server ({first_line(root)})"


class QmpPauser:
    """Keep a guest paused while reading its memory from elsewhere (a RAM
    file): `stop` on open when it runs; `cont` on close only when this
    stopped it. A guest paused already (-S, a debugger, a user) stays paused.
    """

    def __init__(self, address: str | None = None, *, client: QmpClient | None = None,
                 timeout: float = CONNECT_TIMEOUT, status: dict | Exception | None = None):
        """`status`: the reply to query-status when the caller pipelined it
        with its own commands. `stop` is sent only to a running guest: sent
        blindly it is not always harmless (on an incoming-migration guest it
        clears autostart)."""
        self.client = client if client is not None else QmpClient(address, timeout=timeout)
        self._own_client = client is None
        self.status = ""
        self.was_running = False
        self.resumed = False
        try:
            st = status if status is not None else self.client.pipeline([("query-status", {})])[0]
            if isinstance(st, Exception):
                raise SourceError(f"{self.client.label}: query-status: {st}")
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
    """Guest physical memory, the guest paused meanwhile: from QEMU's own
    memory when it is readable from here (`via` says), else through pmemsave.

    The RAM map (`info mtree -f`, any machine) lets reads outside RAM fail
    as they would in a dump; pmemsave itself reads unassigned memory as
    zeros without complaint. Without HMP reads are not checked.
    `read_many` merges nearby ranges into one pmemsave each and pipelines
    those. stats: "commands" counts QMP commands, "round_trips" the waits
    for their replies, "host_reads" the reads served from QEMU's memory.
    """

    def __init__(self, address: str, *, phys_offset: int = 0, timeout: float = CONNECT_TIMEOUT,
                 merge_gap: int = MERGE_GAP, max_span: int = MAX_SPAN, host_memory: bool = True,
                 pause: bool = True):
        """pause: hold the guest paused from open to close; False leaves
        that to `paused()` around each snapshot (watch)."""
        super().__init__(f"qmp {address}", phys_offset=phys_offset)
        self.address = address
        self.merge_gap = merge_gap
        self.max_span = max_span
        self._dir = None
        self.host: HostMemory | None = None
        self.host_reason = "not tried (--pmemsave)"
        self.stats["commands"] = 0      # QMP commands; round_trips counts waits for replies
        self.client = QmpClient(address, timeout=timeout, counter=self.stats)
        try:
            # One round trip: the run state, the memory map (which ranges
            # are RAM) and, guessing RAM starts at 0 as on x86, where it
            # lives in QEMU; other machines ask gpa2hva again. A running
            # guest costs one more: its `stop`.
            head = [("query-status", {})] if pause else []
            calls = head + [_hmp_call("info mtree -f")]
            if host_memory:
                calls.append(_hmp_call("gpa2hva 0"))
            replies = self.client.pipeline(calls)
            self.pauser = QmpPauser(client=self.client, status=replies[0]) if pause else None
            self._seq = 0
            n = len(head)
            mtree = replies[n] if isinstance(replies[n], str) else ""
            self.ram = [Extent(r.gpa, r.end - r.gpa, r.offset) for r in parse_mtree(mtree)] or None
            if host_memory:
                self._open_host(mtree, replies[n + 1:])
        except BaseException:
            self._release()
            raise

    def _open_host(self, mtree: str, answers: list) -> None:
        try:
            self.host = HostMemory.open(self.client.peer_pid, hmp(self.client), mtree=mtree,
                                        answers=[a for a in answers if isinstance(a, str)])
            self.host_reason = f"reading /proc/{self.host.pid}/mem"
            self.stats["host_reads"] = 0
        except HostMemoryUnavailable as e:
            self.host_reason = str(e)

    @contextmanager
    def paused(self):
        """The guest paused for the duration (one round trip; a second to
        resume it when it ran), unless the source holds it paused already."""
        if self.pauser is not None:
            yield
            return
        pauser = QmpPauser(client=self.client)
        try:
            yield
        finally:
            pauser.close()

    def ram_phys(self) -> list[tuple[int, int]] | None:
        return None if self.ram is None else [(e.phys, e.end) for e in self.ram]

    @property
    def via(self) -> str:
        """How reads are served, for the user."""
        return self.host_reason if self.host else f"pmemsave ({self.host_reason})"

    def _host_read(self, phys: int, size: int) -> bytes | None:
        """From QEMU's memory when that covers the range; None to fall back."""
        if self.host is None or not self.host.covers(phys, size):
            return None
        try:
            data = self.host.read(phys, size)
        except MemoryReadError:
            return None
        self.stats["host_reads"] += 1
        return data

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
        data = self._host_read(phys, size)
        if data is not None:
            return data
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
                if self._dir is None:          # made on first use: the host path needs none
                    self._dir = tempfile.mkdtemp(prefix="allocview-qmp-")
                paths.append(os.path.join(self._dir, f"pmem-{self._seq}"))
            calls = [("pmemsave", {"val": a, "size": n, "filename": p})
                     for (a, n), p in zip(batch, paths) if n]
            wait = self.client.timeout + sum(n for _a, n in batch) / PMEMSAVE_RATE
            results = iter(self.client.pipeline(calls, wait) if calls else [])
            for (a, n), p in zip(batch, paths):
                out.append(_collect(a, n, p, next(results) if n else None))
        return out

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """From QEMU's memory when it is open; the rest (all of them
        without it) through pmemsave, where ranges within `merge_gap` of
        each other (spanning at most `max_span`) share one pmemsave and all
        go in one pipelined round trip."""
        if self.closed:
            raise SourceError(f"{self.name}: read after close")
        if self.host is None:
            out = self._read_many_pmemsave(ranges)
        else:
            out = self.host.read_many([(a - self.phys_offset, n) for a, n in ranges])
            rest = [i for i, d in enumerate(out) if d is None]
            self.stats["host_reads"] += len(ranges) - len(rest)
            if rest:        # outside RAM or refused: pmemsave says why
                for i, got in zip(rest, self._read_many_pmemsave([ranges[i] for i in rest])):
                    out[i] = got
        served = [d for d in out if d is not None]
        self.stats["reads"] += len(served)
        self.stats["bytes"] += sum(map(len, served))
        return out

    def _read_many_pmemsave(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """A group that fails is read again range by range."""
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
            if self.host is not None:
                self.host.close()
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




def memfile_extents(client: QmpClient, path: str) -> list[Extent] | None:
    """Where QEMU maps the RAM file `path`, on any machine: the memory
    backend whose mem-path it is (query-memdev, qom-get), then that
    backend's ranges in the flat view (`info mtree -f` names a backend's
    region after its id). None when QEMU does not say."""
    memdevs, mtree = client.pipeline([("query-memdev", {}), _hmp_call("info mtree -f")])
    if isinstance(memdevs, Exception) or not isinstance(mtree, str):
        return None
    ids = [m["id"] for m in memdevs if m.get("id")]
    paths = client.pipeline([("qom-get", {"path": f"/objects/{i}", "property": "mem-path"})
                             for i in ids]) if ids else []
    want = os.path.realpath(path)
    mine = [i for i, p in zip(ids, paths) if isinstance(p, str) and os.path.realpath(p) == want]
    if len(mine) != 1:
        return None
    return [Extent(r.gpa, r.end - r.gpa, r.offset) for r in parse_mtree(mtree)
            if r.region == mine[0]] or None
