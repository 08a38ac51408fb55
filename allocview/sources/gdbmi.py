"""Guest memory through a gdb stub (QEMU -gdb / -s), driving gdb over MI
with pygdbmi; guest RAM straight from the QEMU process behind the stub
when it is local (hostmem), the stub checking the first read.

gdb reads *virtual* memory through the CPU's current page tables, so no
phys_offset applies. Attaching stops the guest (QEMU's stub reports it
paused whatever it was before); closing `disconnect`s, leaving it paused,
unless `resume=True`, which `detach`es and so lets it run (ALLOCATOR.md,
"How to see the real thing": only QMP can tell which it was before).
"""

from __future__ import annotations

import subprocess
import time

from model.errors import MemoryReadError
from model.arch import ARCHES

from ..errors import SourceError
from . import Source

__all__ = ["GdbMiSource", "StubMemory", "CHUNK", "BATCH"]

CHUNK = 64 << 10         # bytes per -data-read-memory-bytes: gdb answers in hex
BATCH = 64               # commands per write: one round trip to gdb
# A silent stub is given this long to attach and to answer (--timeout);
# reads are given more for their size.
CONNECT_TIMEOUT = 5.0
STUB_RATE = 1 << 20           # bytes per second the slowest stub still sends


def _c_string(text: str) -> str:
    """An MI argument quoted as a C string (MI does not take shell quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target(address: str) -> str:
    """gdb's `target remote` argument: "1234" means localhost:1234."""
    return f"localhost:{address}" if address.isdigit() else address


def debugger_for(arch: str | None, wanted: str | None = None) -> str:
    """The gdb to run: `wanted` (the user's), else the first of the arch's
    debuggers on PATH (model.arch: gdb for x86, gdb-multiarch for the
    others, whose registers the host's plain gdb cannot read)."""
    import shutil

    from model.arch import ARCHES
    if wanted:
        return wanted
    names = ARCHES[arch].debuggers if arch in ARCHES else ("gdb", "gdb-multiarch")
    return next((n for n in names if shutil.which(n)), names[0])


class GdbMiSource(Source):
    """Guest memory read by a gdb attached to a remote stub.

    target: "HOST:PORT" (or a port). elf: a program gdb loads for symbols.
    arch: a model arch name for `set architecture` (needed without elf only
    when the stub sends no target description). resume: detach on close
    (the guest runs on) instead of disconnecting (it stays paused).
    """

    def __init__(self, target: str, *, elf: str | None = None, arch: str | None = None,
                 resume: bool = False, gdb: str | None = None, timeout: float = CONNECT_TIMEOUT,
                 host_memory: bool = True):
        """host_memory: read guest RAM from the QEMU process behind the stub
        when it is local (hostmem.HostFirst, the stub checking the first
        read of every snapshot); `via` says which."""
        super().__init__(f"gdb {target}")
        self.target = target
        self.label = f"--gdb {target}"
        self.timeout = timeout
        self.resume = resume
        self.connected = False
        self._token = 0
        self.host = None
        self.via = "the gdb stub (--stub-only)"
        self._memory = StubMemory(self._mi_batch, self.label, timeout)
        from pygdbmi.gdbcontroller import GdbController

        try:
            # a tiny quiet period: results are awaited by token, not by silence
            self._mi = GdbController(command=[debugger_for(arch, gdb), "--interpreter=mi3", "-nx",
                                              "-q"],
                                     time_to_check_for_additional_output_sec=0.001)
        except (ValueError, OSError) as e:
            raise SourceError(f"{self.label}: cannot start gdb ({e})") from None
        try:
            self._setup(elf, arch, timeout)
            if host_memory:
                self._open_host()
        except BaseException:
            self._exit_gdb()
            raise

    def _open_host(self) -> None:
        from .hostmem import HostFirst, HostMemory, HostMemoryUnavailable, stub_owner
        pid, why = stub_owner(_target(self.target))
        if pid is None:
            self.via = f"the gdb stub ({why})"
            return
        try:
            self.host = HostMemory.open(pid, self._monitor)
        except HostMemoryUnavailable as e:
            self.via = f"the gdb stub ({e})"
            return
        self.via = f"QEMU process memory (/proc/{self.host.pid}/mem)"

        def refused(why: str) -> None:
            self.via = f"the gdb stub ({why})"
        self._memory = HostFirst(self.host, StubMemory(self._mi_batch, self.label, self.timeout),
                                 refused)

    def _monitor(self, lines: list[str]) -> list[str]:
        """HMP through the stub: `monitor LINE`, its output (MI target and
        console streams), one command at a time so the output is its own."""
        from .hostmem import HostMemoryUnavailable
        out = []
        for line in lines:
            text: list[str] = []
            try:
                rec = self._mi_batch([f"-interpreter-exec console {_c_string('monitor ' + line)}"],
                                     self.timeout, streams=text)[0]
            except SourceError as e:
                raise HostMemoryUnavailable(f"monitor {line}: {e}") from None
            if rec["message"] == "error":
                raise HostMemoryUnavailable(f"monitor {line}: {_msg(rec)}")
            out.append("".join(text))
        return out

    def ram_ranges(self) -> list[tuple[int, int]] | None:
        """Where RAM is, when QEMU's process told us (its addresses read
        as the guest's, as the reads from it are)."""
        from model.memory import ram_ranges
        return ram_ranges(self._memory)

    @property
    def pid(self) -> int | None:
        proc = self._mi.gdb_process
        return proc.pid if proc is not None else None

    def _setup(self, elf: str | None, arch: str | None, timeout: float) -> None:
        setup = ["-gdb-set confirm off", "-gdb-set pagination off",
                 "-gdb-set tcp auto-retry off",   # refused: fail now, not after the timeout
                 f"-gdb-set tcp connect-timeout {max(1, int(timeout))}"]
        if elf:
            setup.append(f"-file-exec-and-symbols {_c_string(elf)}")
        if arch:
            if arch not in ARCHES:
                raise SourceError(f"--arch {arch}: unknown (expected one of {', '.join(ARCHES)})")
            setup += [f"-gdb-set architecture {ARCHES[arch].gdb_arch}",
                      f"-gdb-set endian {ARCHES[arch].endian}"]
        for cmd, rec in zip(setup, self._mi_batch(setup, timeout)):
            if rec["message"] == "error":
                raise SourceError(f"{self.label}: gdb refused {cmd.split()[0]}: {_msg(rec)}")
        rec = self._mi_batch([f"-target-select remote {_target(self.target)}"], timeout + 5)[0]
        if rec["message"] == "error":
            raise SourceError(f"{self.label}: cannot attach: {_msg(rec)}")
        self.connected = True

    # ------------------------------------------------------------------- MI
    def _mi_batch(self, commands: list[str], timeout: float,
                  streams: list[str] | None = None) -> list[dict]:
        """Send commands in one write; their result records, in order.
        `streams` collects what gdb prints meanwhile (console, target)."""
        tokens = []
        lines = []
        for c in commands:
            self._token += 1
            tokens.append(self._token)
            lines.append(f"{self._token}{c}")
        self.stats["round_trips"] += 1
        try:
            self._mi.write(lines, timeout_sec=timeout, read_response=False)
        except (OSError, ValueError) as e:
            raise SourceError(f"{self.label}: gdb is gone ({e})") from None
        results: dict[int, dict] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(tokens):
            left = deadline - time.monotonic()
            if left <= 0:
                raise SourceError(f"{self.label}: gdb gave no answer in {timeout:g} s")
            if self._mi.gdb_process.poll() is not None:
                raise SourceError(f"{self.label}: gdb exited "
                                  f"(status {self._mi.gdb_process.returncode})")
            for r in self._mi.get_gdb_response(timeout_sec=min(left, 0.5),
                                               raise_error_on_timeout=False):
                if r.get("type") == "result" and r.get("token") in tokens:
                    results[r["token"]] = r
                elif streams is not None and r.get("type") in ("console", "target"):
                    streams.append(r.get("payload") or "")
        return [results[t] for t in tokens]

    # ---------------------------------------------------------------- reads
    def _read(self, addr: int, size: int) -> bytes:
        return self._memory.read(addr, size)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """From QEMU's memory, or every range's MI commands BATCH to a write."""
        if self.closed:
            raise SourceError(f"{self.name}: read after close")
        out = self._memory.read_many(ranges)
        for got in out:
            if got is not None:
                self.stats["reads"] += 1
                self.stats["bytes"] += len(got)
        return out

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Disconnect (guest stays paused) or detach (it runs: resume=True),
        then end gdb, killing it if it does not exit."""
        if not self.closed:
            try:
                if self.connected and self._mi.gdb_process.poll() is None:
                    self._mi_batch(["-target-detach" if self.resume else "-target-disconnect"],
                                   self.timeout)
            except SourceError:
                pass
            finally:
                self.connected = False
                self._exit_gdb()
                if self.host is not None:
                    self.host.close()
        super().close()

    def _exit_gdb(self) -> None:
        proc = self._mi.gdb_process
        if proc is None:
            return
        try:
            if proc.poll() is None:
                self._mi.write("-gdb-exit", timeout_sec=1, read_response=False)
                proc.wait(3)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        self._mi.gdb_process = None


class StubMemory:
    """Guest memory through gdb/MI `-data-read-memory-bytes`, BATCH commands
    a write: `batch(commands, timeout)` sends commands and gives their result
    records (a GdbMiSource's own gdb, or the wrapper's MI session).
    `timeout` is allowed for a silent stub, plus time for the bytes."""

    def __init__(self, batch, label: str, timeout: float):
        self.batch = batch
        self.label = label
        self.timeout = timeout

    def read(self, addr: int, size: int) -> bytes:
        got = self._read_ranges([(addr, size)])[0]
        if isinstance(got, MemoryReadError):
            raise got
        return got

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        return [g if isinstance(g, bytes) else None for g in self._read_ranges(ranges)]

    def _read_ranges(self, ranges: list[tuple[int, int]]) -> list:
        """bytes, or the MemoryReadError, per range."""
        pieces: list[tuple[int, int, int]] = []           # (range index, addr, size)
        errors: dict[int, MemoryReadError] = {}
        for i, (addr, size) in enumerate(ranges):
            if size < 0:
                errors[i] = MemoryReadError(addr, size, "negative size")
            for off in range(0, size, CHUNK):
                pieces.append((i, addr + off, min(CHUNK, size - off)))
        parts: list[list[bytes]] = [[] for _ in ranges]
        for b in range(0, len(pieces), BATCH):
            batch = pieces[b:b + BATCH]
            recs = self.batch([f"-data-read-memory-bytes {a:#x} {s}" for _, a, s in batch],
                              self.timeout + sum(s for _, _, s in batch) / STUB_RATE)
            for (i, a, s), rec in zip(batch, recs):
                if i in errors:
                    continue
                data = _contents(rec, a, s)
                if isinstance(data, str):
                    errors[i] = MemoryReadError(ranges[i][0], ranges[i][1], data)
                else:
                    parts[i].append(data)
        return [errors.get(i) or b"".join(parts[i]) for i in range(len(ranges))]


def _msg(rec: dict) -> str:
    payload = rec.get("payload") or {}
    return str(payload.get("msg", payload)) if isinstance(payload, dict) else str(payload)


def _contents(rec: dict, addr: int, size: int) -> bytes | str:
    """The bytes a -data-read-memory-bytes result holds for exactly
    [addr, addr + size), or why not (gdb returns only readable blocks)."""
    if rec["message"] != "done":
        return _msg(rec)
    blocks = sorted((int(m["begin"], 16), m["contents"])
                    for m in (rec.get("payload") or {}).get("memory", []))
    pos, out = addr, []
    for begin, hexdata in blocks:
        if begin != pos:
            return f"gdb could read only part (no bytes at {pos:#x})"
        data = bytes.fromhex(hexdata)
        out.append(data)
        pos += len(data)
    if pos != addr + size:
        return f"gdb could read only part (no bytes at {pos:#x})"
    return b"".join(out)
