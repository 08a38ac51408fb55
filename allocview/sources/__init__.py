"""Where guest bytes come from: dump files, shared RAM files, QMP, gdb.

Every source is a `model.memory.Memory` (`read(addr, size) -> bytes`,
raising `MemoryReadError`) with a lifecycle (`close`, context manager), a
batched `read_many` and `stats` ("reads" served, "bytes" returned,
"round_trips" to a live target; QMP adds "commands"). Addresses are guest
*virtual*; sources that see physical memory map them with `phys_offset`
(virt = phys + phys_offset; 0, the identity, on x86 and s390x
kvm-unit-tests guests). gdb reads virtual memory itself.

Importing this package never touches a target and never imports qemu.qmp
or pygdbmi; `open_source` imports the one it needs.
"""

from __future__ import annotations

from allocview.model.errors import MemoryReadError
from allocview.model.memory import read_each

from ..errors import SourceError

__all__ = ["Source", "open_source", "SourceError"]


class Source:
    """Guest memory plus a lifecycle. Subclasses implement `read_phys`
    (physical sources) or override `_read` (virtual ones, like gdb)."""

    name: str = "source"

    def __init__(self, name: str, *, phys_offset: int = 0):
        self.name = name
        self.phys_offset = phys_offset
        self.stats: dict[str, int] = {"reads": 0, "round_trips": 0, "bytes": 0}
        self.closed = False

    # ---------------------------------------------------------------- reads
    def read(self, addr: int, size: int) -> bytes:
        """`size` bytes at guest virtual address `addr`, or MemoryReadError."""
        if self.closed:
            raise SourceError(f"{self.name}: read after close")
        if size < 0:
            raise MemoryReadError(addr, size, "negative size")
        data = self._read(addr, size)
        self.stats["reads"] += 1
        self.stats["bytes"] += size
        return data

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """Each (addr, size) read; None where one is unreadable. Sources with
        round trips override this to batch."""
        return read_each(self, ranges)

    def _read(self, addr: int, size: int) -> bytes:
        phys = addr - self.phys_offset
        if phys < 0:
            raise MemoryReadError(addr, size, f"below the physical offset {self.phys_offset:#x}")
        if not self.phys_offset:
            return self.read_phys(phys, size)
        try:
            return self.read_phys(phys, size)
        except MemoryReadError as e:     # name the address the caller asked for
            raise MemoryReadError(addr, size, f"{e.reason} (physical {phys:#x})") from None

    def read_phys(self, phys: int, size: int) -> bytes:
        """`size` bytes at guest physical address `phys`."""
        raise MemoryReadError(phys, size, f"{self.name} cannot read physical memory")

    def ram_phys(self) -> list[tuple[int, int]] | None:
        """Guest physical RAM as [(start, end)], when the source knows."""
        return None

    def ram_ranges(self) -> list[tuple[int, int]] | None:
        """Guest RAM as addresses (model.memory's protocol)."""
        ram = self.ram_phys()
        if ram is None:
            return None
        return [(lo + self.phys_offset, hi + self.phys_offset) for lo, hi in ram]

    def view(self, addr: int, size: int) -> memoryview | None:
        """A zero-copy view of guest memory, where the source has one."""
        return None

    def guest_machine(self) -> tuple[str, int, str] | None:
        """(e_machine, ELF class bits, endianness) of the guest the memory
        comes from, when the source says (a dump's ELF header)."""
        return None

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release what the source holds; idempotent."""
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{' closed' if self.closed else ''}>"


def open_source(*, dump: str | None = None, raw_base: int | None = None,
                memfile: str | None = None, qmp: str | None = None, gdb: str | None = None,
                elf: str | None = None, phys_offset: int = 0,
                machine_ram_below_4g: int | None = None, machine: str = "pc",
                arch: str | None = None, host_memory: bool = True,
                resume: bool | None = None, timeout: float = 5.0) -> Source:
    """The source the command line names.

    dump: a dump-guest-memory ELF, or a raw pmemsave file with `raw_base`
    (guest physical address of its first byte). memfile: a shared RAM file
    (QEMU's flat view places it when a `qmp` socket is beside it, else
    `machine` pc|q35 and `machine_ram_below_4g`); the `qmp` socket also
    pauses the guest while the source is open. qmp alone:
    reads QEMU's memory from /proc when it can (`host_memory`), else
    through pmemsave; so does gdb for a local stub, else through the stub. gdb: "HOST:PORT" of a gdb stub, with `elf`
    (symbols) and `arch`. Attaching gdb stops the guest and the stub cannot
    tell whether it ran before: `resume` True/False says what to do at the
    end; None asks QMP before attaching (the `qmp` socket, or one on the
    local QEMU's command line) and, when there is none, leaves the guest
    paused (the source's `run_state` says which was done and why).
    """
    memories = [k for k, v in (("--dump", dump), ("--memfile", memfile), ("--gdb", gdb)) if v]
    if len(memories) > 1:
        raise SourceError(f"{' and '.join(memories)}: give one memory source")
    if raw_base is not None and not dump:
        raise SourceError("--base applies to a raw --dump file only")
    if dump:
        if qmp:
            raise SourceError("--qmp with --dump: a dump file needs no guest")
        from .dump import open_dump
        return open_dump(dump, raw_base=raw_base, phys_offset=phys_offset)
    if memfile:
        from .memfile import MemfileSource
        pauser = extents = None
        try:
            if qmp:
                from .qmp import QmpPauser, memfile_extents
                pauser = QmpPauser(qmp, timeout=timeout)
                if machine_ram_below_4g is None:
                    extents = memfile_extents(pauser.client, memfile)
            return MemfileSource(memfile, machine=machine, below_4g=machine_ram_below_4g,
                                 phys_offset=phys_offset, pauser=pauser, extents=extents)
        except BaseException:
            if pauser is not None:
                pauser.close()
            raise
    if gdb:
        from .gdbmi import GdbMiSource
        how = "as asked"
        if resume is None:
            resume, how = _was_running(gdb, qmp, timeout)
        src = GdbMiSource(gdb, elf=elf, arch=arch, resume=resume, host_memory=host_memory,
                          timeout=timeout)
        src.run_state = ("resumed" if resume else "left paused") + f" ({how})"
        return src
    if qmp:
        from .qmp import QmpSource
        return QmpSource(qmp, phys_offset=phys_offset, host_memory=host_memory, timeout=timeout)
    raise SourceError("no memory source: give --dump, --memfile, --qmp or --gdb")


def _was_running(gdb: str, qmp: str | None, timeout: float) -> tuple[bool, str]:
    """Whether the guest behind a gdb stub runs now (asked before gdb
    attaches and stops it), and how that is known."""
    from .qmp import query_running
    if qmp:
        sockets, wait = [qmp], timeout
    else:
        from .hostmem import qmp_sockets, stub_owner
        pid, _why = stub_owner(gdb if ":" in gdb else f"127.0.0.1:{gdb}")
        sockets, wait = (qmp_sockets(pid) if pid else []), min(2.0, timeout)
        if not sockets:
            return False, ("the gdb stub cannot tell whether the guest ran, and its QEMU has "
                           "no QMP socket to ask; --resume lets it run")
    why = ""
    for sock in sockets:                 # a monitor with a client already does not answer
        try:
            running = query_running(sock, timeout=wait)
        except SourceError as e:
            why = str(e)
            continue
        return running, f"QMP {sock} said it was {'running' if running else 'paused'}"
    return False, f"QMP did not say whether it ran ({why}); --resume lets it run"
