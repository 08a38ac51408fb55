"""Guest memory through a gdb stub (QEMU -gdb / -s), driving gdb over MI
(allocview.mi); guest RAM straight from the QEMU process behind the stub
when it is local (hostmem), the stub checking the first read.

gdb reads *virtual* memory through the CPU's current page tables, so no
phys_offset applies. Attaching stops the guest (QEMU's stub reports it
paused whatever it was before); closing `disconnect`s, leaving it paused,
unless `resume=True`, which `detach`es and so lets it run (ALLOCATOR.md,
"How to see the real thing": only QMP can tell which it was before).
"""

from __future__ import annotations

from allocview.model.arch import ARCHES

from ..errors import SourceError
from ..mi import BATCH, CHUNK, MiError, MiSession, StubMemory, c_string, message
from . import Source

__all__ = ["GdbMiSource", "CHUNK", "BATCH", "debugger_for"]

# A silent stub is given this long to attach and to answer (--timeout);
# reads are given more for their size.
CONNECT_TIMEOUT = 5.0


def _target(address: str) -> str:
    """gdb's `target remote` argument: "1234" means localhost:1234."""
    return f"localhost:{address}" if address.isdigit() else address


def debugger_for(arch: str | None, wanted: str | None = None) -> str:
    """The gdb to run: `wanted` (the user's), else the first of the arch's
    debuggers on PATH (model.arch: gdb for x86, gdb-multiarch for the
    others, whose registers the host's plain gdb cannot read)."""
    import shutil

    from allocview.model.arch import ARCHES
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
        self.host = None
        self.via = "the gdb stub (--stub-only)"
        self._memory = StubMemory(self.batch, self.label, timeout)
        try:
            self._mi = MiSession(debugger_for(arch, gdb))
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
        self._memory = HostFirst(self.host, StubMemory(self.batch, self.label, self.timeout),
                                 refused)

    def _monitor(self, lines: list[str]) -> list[str]:
        """HMP through the stub: `monitor LINE`, its output (MI target and
        console streams), one command at a time so the output is its own."""
        from .hostmem import HostMemoryUnavailable
        out = []
        for line in lines:
            text: list[str] = []
            try:
                rec = self.batch([f"-interpreter-exec console {c_string('monitor ' + line)}"],
                                     self.timeout, streams=text)[0]
            except SourceError as e:
                raise HostMemoryUnavailable(f"monitor {line}: {e}") from None
            if rec["message"] == "error":
                raise HostMemoryUnavailable(f"monitor {line}: {message(rec)}")
            out.append("".join(text))
        return out

    def ram_ranges(self) -> list[tuple[int, int]] | None:
        """Where RAM is, when QEMU's process told us (its addresses read
        as the guest's, as the reads from it are)."""
        from allocview.model.memory import ram_ranges
        return ram_ranges(self._memory)

    @property
    def pid(self) -> int | None:
        """gdb's process."""
        return self._mi.proc.pid

    def _setup(self, elf: str | None, arch: str | None, timeout: float) -> None:
        setup = ["-gdb-set confirm off", "-gdb-set pagination off",
                 "-gdb-set tcp auto-retry off",   # refused: fail now, not after the timeout
                 f"-gdb-set tcp connect-timeout {max(1, int(timeout))}"]
        if elf:
            setup.append(f"-file-exec-and-symbols {c_string(elf)}")
        if arch:
            if arch not in ARCHES:
                raise SourceError(f"--arch {arch}: unknown (expected one of {', '.join(ARCHES)})")
            setup += [f"-gdb-set architecture {ARCHES[arch].gdb_arch}",
                      f"-gdb-set endian {ARCHES[arch].endian}"]
        for cmd, rec in zip(setup, self.batch(setup, timeout)):
            if rec["message"] == "error":
                raise SourceError(f"{self.label}: gdb refused {cmd.split()[0]}: {message(rec)}")
        rec = self.batch([f"-target-select remote {_target(self.target)}"], timeout + 5)[0]
        if rec["message"] == "error":
            raise SourceError(f"{self.label}: cannot attach: {message(rec)}")
        self.connected = True

    # ------------------------------------------------------------------- MI
    def batch(self, commands: list[str], timeout: float,
              streams: list[str] | None = None) -> list[dict]:
        """Send commands in one write; their result records, in order.
        `streams` collects what gdb prints meanwhile (console, target)."""
        self.stats["round_trips"] += 1
        try:
            return self._mi.batch(commands, timeout, streams)
        except MiError as e:
            raise SourceError(f"{self.label}: {e}") from None

    def interrupt(self) -> None:
        """Interrupt what the target is doing (an inferior call that hangs)."""
        self._mi.interrupt()

    @property
    def stops(self) -> list[dict]:
        """The `*stopped` payloads gdb reported so far, oldest first."""
        return self._mi.stops

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
                if self.connected and self._mi.proc.poll() is None:
                    self.batch(["-target-detach" if self.resume else "-target-disconnect"],
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
        self._mi.close(polite=True)
