"""What the commands ask of gdb (allocview.commands.Context): the snapshot
at this stop, saved snapshots and dump files, the program's placement,
confirmation, progress, and the guest to drive.

The snapshot is decoded once per stop and kept in the session until the
guest runs, stops again or gdb writes its memory.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import gdb  # type: ignore[import-not-found]

from allocview.commands import CommandError
from allocview.inspect import NothingToCheck
from allocview.model.assess import assess, with_cause
from allocview.model.drive_io import start_image
from allocview.model.memory import CachedMemory
from allocview.model.placement import verify
from allocview.model.snapshot import Snapshot, decode

from . import target
from .session import session

__all__ = ["GdbContext", "current", "fresh_snapshot", "symbols_at_guest", "recorded"]


def current(require: bool = True) -> Snapshot:
    """The allocator as it is at this stop (decoded once per stop). With
    `require`, a state with nothing to check (not initialised, not an
    allocator) raises NothingToCheck, which says so."""
    s = session()
    if s.snapshot is None:
        target.program()
        if gdb.selected_inferior().pid == 0:
            raise gdb.GdbError("allocview: no running target; `target remote :1234` first")
        try:
            prog, where = target.placed()
            _advise_relocation(prog, where)
            snap = decode(target.memory(), prog.layout, prog.areas_addr, prog.mask_addr,
                          format=s.format)
        except KeyboardInterrupt:
            raise gdb.GdbError("allocview: interrupted") from None
        unchecked = assess(snap)
        s.snapshot = snap
        s.unchecked = None if unchecked is None else with_cause(unchecked, where.found)
    if require and s.unchecked is not None:
        raise NothingToCheck(s.unchecked, s.snapshot, target.placed()[1])
    return s.snapshot


def _advise_relocation(prog, where) -> None:
    """Once per program: where it is loaded, and the command that moves
    gdb's own symbols there."""
    cmd = target.relocation_command()
    s = session()
    if cmd and prog.path not in s.told:
        s.told.add(prog.path)
        gdb.write(f"allocview: {prog.name} is {where.how}; allocview reads it there, but gdb's "
                  f"symbols are at its link addresses: `{cmd}` moves them\n")


def symbols_at_guest(what: str):
    """The program, for commands that plant breakpoints or call functions
    by gdb's symbols: those must be where the guest has the program."""
    prog, where = target.placed()
    cmd = target.relocation_command()
    if cmd:
        raise CommandError(f"{what} needs gdb's symbols where the guest has {prog.name} "
                           f"({where.how}): `{cmd}` first")
    return prog


def fresh_snapshot() -> Snapshot:
    """Decode now, whatever is cached (a breakpoint callback, after a write)."""
    session().invalidate()
    return current(require=False)


def recorded() -> tuple[Snapshot, list[tuple[int, bytes]]]:
    """The state decoded through a recording memory, and every range read
    (with the program's code samples: what locates it in a saved file)."""
    prog, _where = target.placed()
    mem = CachedMemory(target.memory(), record=True)
    snap = decode(mem, prog.layout, prog.areas_addr, prog.mask_addr, format=session().format)
    verify(mem, list(prog.samples), target.unmoved_symbols())
    return snap, mem.ranges()


class GdbContext:
    """allocview.commands.Context inside gdb."""

    def __init__(self, from_tty: bool = False):
        self.from_tty = from_tty

    def snapshot(self, require: bool = True) -> Snapshot:
        return current(require)

    def placement(self):
        return target.placed()[1]

    def program(self):
        return target.program()

    def arch(self) -> str:
        return target.program().arch

    def load_offset(self) -> int | None:
        return None                 # placement finds it; a trace names its own

    def trace_in_progress(self) -> str | None:
        """The file `alloc trace` is recording, flushed to this call, or
        the one it last wrote."""
        tracer = session().tracer
        return session().last_trace if tracer is None else tracer.flush()

    def phys_offset(self) -> int:
        return 0

    def resolve(self, ref: str, load_offset: int | None = None) -> Snapshot:
        """A saved snapshot by name, else a dump file read with this program."""
        s = session()
        if ref in s.saved:
            return s.saved[ref]
        if not os.path.exists(ref):
            saved = ", ".join(s.saved) or "none yet (`alloc snapshot NAME`)"
            raise CommandError(f"{ref}: no saved snapshot or file of that name (saved: {saved})")
        return dump_snapshot(ref, target.program(), s.format, load_offset)

    def recorded(self):
        return recorded()

    def width(self) -> int:
        try:
            w = gdb.parameter("width")
        except gdb.error:
            w = None
        return max(60, min(int(w or 100), 200))

    def confirm(self, question: str) -> bool:
        """gdb's convention: `set confirm off` answers yes. With confirm on,
        ask at a terminal; in a script, refuse rather than answer for the
        user."""
        if not gdb.parameter("confirm"):
            return True
        if not (self.from_tty and os.isatty(0)):
            raise CommandError("this writes guest memory: pass --yes, or `set confirm off` "
                               "first, to run it from a script")
        try:
            answer = input(f"{question} (y or n) ")
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")

    def progress(self, line: str) -> None:
        gdb.write(f"allocview: {line}\n" if not line.startswith(" ") else f"{line}\n")
        gdb.flush()

    def drive_start(self):
        prog = symbols_at_guest("alloc drive")
        mem = CachedMemory(target.memory(), record=True)
        start = decode(mem, prog.layout, prog.areas_addr, prog.mask_addr,
                       format=session().format)
        return start, start_image(mem, prog), prog

    @contextmanager
    def drive_guest(self, timeout: float, console: str | None = None):
        from .drive import GdbGuest
        try:
            with GdbGuest(timeout, console) as guest:
                yield guest
        finally:
            session().invalidate()

    def decode_now(self):
        return fresh_snapshot().state()


def dump_snapshot(path: str, program, format: str | None,
                  load_offset: int | None = None) -> Snapshot:
    """The allocator in a dump file, as this program lays it out."""
    from allocview.inspect import inspect
    from allocview.sources import open_source
    with open_source(dump=path, elf=None, arch=program.arch) as src:
        return inspect(CachedMemory(src), program, format=format, load_offset=load_offset,
                       guest_machine=src.guest_machine(), require=False).snapshot
