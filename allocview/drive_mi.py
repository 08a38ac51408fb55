"""`allocview drive --gdb`: the drive guest over gdb/MI (pygdbmi).

Inferior calls are `-data-evaluate-expression` of the entry point cast to
its prototype. A call that does not return in time is interrupted (SIGINT
to gdb, which unwinds it: `unwindonsignal on`); one that reaches the
test's abort/exit path stops at a breakpoint there and its frames are
discarded by `return` from the frame gdb's dummy frame called. Either is a
CallDied naming the call, with what the guest printed when its console
file is known.
"""

from __future__ import annotations

from allocview.model.drive import CallDied, GuestCallError, GuestGone
from allocview.model.drive_io import (GUEST_GONE_WORDS, STOPPED_IN_CALL, ConsoleTail, aborted,
                                      call_expression, call_words, hung, outside_death_paths,
                                      parse_int)
from allocview.model.entry_points import DEATH_PATHS, VOID_FUNCS

from .errors import SourceError
from .mi import c_string, message
from .sources.gdbmi import GdbMiSource

__all__ = ["MiGuest"]

# and allocview's own words when its gdb is gone
_GONE = GUEST_GONE_WORDS + ("gdb exited", "gdb is gone")


class MiGuest:
    def __init__(self, source: GdbMiSource, program, timeout: float = 2.0,
                 console: str | None = None, moved: int = 0):
        """`moved`: how far the guest has the program from the ELF's own
        addresses (a relocatable test): gdb's symbols are moved there, or a
        call would jump to the ELF's address and take the guest down."""
        self.src = source
        self.timeout = timeout
        self.console = ConsoleTail(console)
        self._deaths: dict[int, str] = {}
        self._breakpoints: list[str] = []
        self._tmp: str | None = None
        setup = ["-gdb-set unwindonsignal on"] + self._symbols_at_guest(program.path, moved)
        for cmd, rec in zip(setup, self.src.batch(setup, 30)):
            if rec["message"] == "error":
                raise SourceError(f"{source.label}: gdb refused {cmd}: {message(rec)}")
        for name in DEATH_PATHS:
            addr = program.symbols.get(name)
            if addr is None:
                continue
            rec = self.src.batch([f"-break-insert *{addr:#x}"], 10)[0]
            if rec["message"] == "done":
                self._deaths[addr] = name
                self._breakpoints.append(str(rec["payload"]["bkpt"]["number"]))

    def _symbols_at_guest(self, elf: str, moved: int) -> list[str]:
        """The commands that put gdb's symbols where the guest has them,
        from a copy gdb can call into when the ELF gives it no entry point."""
        import os
        import tempfile

        from .symbols import needs_callable_copy, write_callable_copy
        if not moved and not needs_callable_copy(elf):
            return []
        path = elf
        cmds = []
        if needs_callable_copy(elf):
            self._tmp = tempfile.mkdtemp(prefix="allocview-drive-")
            path = os.path.join(self._tmp, os.path.basename(elf))
            write_callable_copy(elf, path)
            cmds.append(f"-file-exec-file {c_string(path)}")
        return cmds + [f"-interpreter-exec console "
                       f"{c_string(f'symbol-file -o {moved:#x} {path}')}"]

    def close(self) -> None:
        if self._breakpoints and not self.src.closed:
            try:
                self.src.batch([f"-break-delete {' '.join(self._breakpoints)}"], 10)
            except SourceError:
                pass
        self._breakpoints = []
        if self._tmp:
            import shutil
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def call(self, func: str, args: tuple[int, ...]) -> int | None:
        expr = call_expression(func, args).replace('"', '\\"')
        what = call_words(func, args)
        self.console.mark()
        try:
            rec = self.src.batch([f'-data-evaluate-expression "{expr}"'], self.timeout)[0]
        except SourceError as e:
            if "no answer" in str(e):
                where = self._interrupt()
                raise hung(what, self.timeout, where, self.console.since()) from None
            raise GuestGone(f"{what}: {e}") from None
        if rec["message"] != "done":
            text = message(rec)
            if STOPPED_IN_CALL in text:
                raise self._unwind(what) from None
            if any(g in text for g in _GONE):
                raise GuestGone(f"{what}: {text.splitlines()[0]}")
            raise GuestCallError(f"{what} failed in the guest: {text}")
        value = (rec.get("payload") or {}).get("value")
        if value is None or func in VOID_FUNCS:
            return None
        return parse_int(value)

    def _interrupt(self) -> str | None:
        """Interrupt a hanging call (gdb unwinds it); the function it was in,
        from the stop gdb reports (waited for by a command queued behind it)."""
        before = len(self.src.stops)
        self.src.interrupt()
        try:
            self.src.batch(["-gdb-show version"], 30)
        except SourceError as e:
            raise GuestGone(f"the guest does not come back from an interrupt: {e}") from None
        return outside_death_paths((stop.get("frame") or {}).get("func")
                                   for stop in self.src.stops[before:])

    def _unwind(self, what: str) -> CallDied:
        """Discard the frames of a call stopped in the abort/exit path, up
        to gdb's dummy frame (the registers come back as they were)."""
        console = self.console.since()
        rec = self.src.batch(["-stack-list-frames"], 30)[0]
        frames = (rec.get("payload") or {}).get("stack") or []
        frames = [f.get("frame", f) for f in frames]
        pc = int(frames[0].get("addr", "0"), 16) if frames else 0
        where = self._deaths.get(pc, f"a stop at {pc:#x}")
        caller = outside_death_paths(f.get("func") for f in frames)
        dummy = next((int(f["level"]) for f in frames
                      if f.get("func") == "<function called from gdb>"), None)
        if not dummy:
            raise GuestGone(f"{what} stopped in {where} and gdb shows no frame of the call "
                            f"to unwind")
        recs = self.src.batch([f"-stack-select-frame {dummy - 1}",
                               '-interpreter-exec console "return"'], 30)
        bad = [r for r in recs if r["message"] != "done"]
        if bad:
            raise GuestGone(f"{what} stopped in {where}; unwinding it failed: {message(bad[0])}")
        return aborted(what, where, caller, console)

    def read(self, addr: int, size: int) -> bytes:
        return self.src.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        for off in range(0, len(data), 0x8000):
            piece = data[off:off + 0x8000]
            rec = self.src.batch([f"-data-write-memory-bytes {addr + off:#x} {piece.hex()}"],
                                     30)[0]
            if rec["message"] != "done":
                raise GuestGone(f"{self.src.label}: cannot write {len(piece)} bytes at "
                                f"{addr + off:#x}: {message(rec)}")
