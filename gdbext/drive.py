"""`alloc drive`'s guest: inferior calls and memory through gdb.

A call can kill the guest. One that does not return in time is interrupted
by a watchdog (gdb unwinds it: `unwindonsignal`); one that reaches the
test's abort/exit path stops at a breakpoint there, and its frame is
discarded by `return` from the frame gdb's dummy frame called (registers
as they were before the call). Either is a CallDied naming the call, with
what the guest printed when its console file is known. User breakpoints
are disabled while driving so no other stop lands inside a call.
"""

from __future__ import annotations

import os
import signal
import threading

import gdb  # type: ignore[import-not-found]

from allocview.model.drive import CallDied, GuestCallError, GuestGone
from allocview.model.drive_io import (GUEST_GONE_WORDS, STOPPED_IN_CALL, ConsoleTail, aborted,
                                      call_expression, call_words, hung, outside_death_paths)
from allocview.model.entry_points import DEATH_PATHS

from . import target
from .target import GdbMemory

__all__ = ["GdbGuest"]

class GdbGuest:
    def __init__(self, timeout: float = 2.0, console: str | None = None):
        self.timeout = timeout
        self.inferior = gdb.selected_inferior()
        self._memory = GdbMemory(self.inferior)
        self.console = ConsoleTail(console)
        self.calls = 0
        self._disabled: list = []
        self._deaths: dict[int, str] = {}
        self._planted: list = []

    def __enter__(self):
        self._signal: str | None = None
        gdb.events.stop.connect(self._stopped)
        self._saved = gdb.parameter("unwindonsignal")
        gdb.execute("set unwindonsignal on", to_string=True)
        for bp in gdb.breakpoints() or ():
            if bp.enabled:
                bp.enabled = False
                self._disabled.append(bp)
        prog, _where = target.placed()
        for name in DEATH_PATHS:
            addr = prog.symbols.get(name)
            if addr is not None:
                self._deaths[addr] = name
                bp = gdb.Breakpoint(f"*{addr:#x}", internal=True)
                bp.silent = True
                self._planted.append(bp)
        return self

    def _stopped(self, event) -> None:
        """Which signal stopped a call (gdb's error message does not say),
        and where: gdb unwinds a signalled call right after this."""
        self._signal = getattr(event, "stop_signal", None)
        self._where = _innermost()

    def __exit__(self, *exc):
        try:
            gdb.events.stop.disconnect(self._stopped)
        except (ValueError, RuntimeError):
            pass
        for bp in self._planted:
            if bp.is_valid():
                bp.delete()
        for bp in self._disabled:
            if bp.is_valid():
                bp.enabled = True
        gdb.execute(f"set unwindonsignal {'on' if self._saved else 'off'}", to_string=True)

    def call(self, func: str, args: tuple[int, ...]) -> int | None:
        expr = call_expression(func, args)
        self.calls += 1
        fired = threading.Event()
        what = call_words(func, args)

        def interrupt():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(self.timeout, interrupt)
        self._signal = None
        self._where = None
        self.console.mark()
        try:
            timer.start()
            v = gdb.parse_and_eval(expr)
            return None if v.type.code == gdb.TYPE_CODE_VOID else int(v)
        except KeyboardInterrupt:
            if not fired.is_set():
                raise                                  # the user's Ctrl-C: drive stops
            raise self._hung(what) from None
        except gdb.error as e:
            text = str(e)
            if fired.is_set():
                raise self._hung(what) from None
            if "signaled while in a function called from GDB" in text and \
                    (self._signal == "SIGINT" or _sigint(e)):
                raise KeyboardInterrupt from None          # the user's Ctrl-C, not the guest
            if STOPPED_IN_CALL in text:
                raise self._stopped_in_death_path(what) from None
            if "Entry point address is not known" in text:
                raise GuestCallError(_no_entry_point()) from None
            if any(g in text for g in GUEST_GONE_WORDS):
                raise GuestGone(f"{what}: {text.splitlines()[0]}") from None
            raise GuestCallError(f"{what} failed in the guest: {text.splitlines()[0]}") from None
        finally:
            timer.cancel()

    def _hung(self, what: str) -> CallDied:
        return hung(what, self.timeout, self._where, self.console.since())

    def _stopped_in_death_path(self, what: str) -> CallDied:
        """The call reached abort()/exit() (or another stop): discard its
        frames up to gdb's dummy frame, which restores the registers."""
        pc = int(gdb.selected_frame().pc())
        where = self._deaths.get(pc, f"a stop at {pc:#x}")
        caller = _innermost()
        console = self.console.since()
        frame, callee = gdb.newest_frame(), None
        while frame is not None and frame.type() != gdb.DUMMY_FRAME:
            callee, frame = frame, frame.older()
        if frame is None or callee is None:
            raise GuestGone(f"{what} stopped in {where} and gdb shows no frame of the call "
                            f"to unwind")
        confirm = gdb.parameter("confirm")
        try:
            gdb.execute("set confirm off", to_string=True)
            callee.select()
            gdb.execute("return", to_string=True)
        except gdb.error as e:
            raise GuestGone(f"{what} stopped in {where}; unwinding it failed: {e}") from None
        finally:
            gdb.execute(f"set confirm {'on' if confirm else 'off'}", to_string=True)
        return aborted(what, where, caller, console)

    def read(self, addr: int, size: int) -> bytes:
        return self._memory.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        try:
            self.inferior.write_memory(addr, data)
        except gdb.error as e:
            raise GuestGone(f"cannot write guest memory at {addr:#x}: {e}") from None


def _no_entry_point() -> str:
    """What to do when gdb cannot call into the program at all."""
    prog, where = target.placed()
    return (f"gdb cannot call functions in {prog.name}: it knows no entry point (an ELF of "
            f"type DYN with entry 0, as kvm-unit-tests links arm64, riscv64 and ppc64 tests), "
            f"where a call returns to. Write a copy it can call into: `allocview --elf "
            f"{prog.path} callable-elf COPY`, then in gdb `file COPY` and `symbol-file -o "
            f"{where.offset:#x} COPY`")


def _innermost() -> str | None:
    """Where the stopped call died (inlined functions count)."""
    names = []
    try:
        frame = gdb.newest_frame()
        while frame is not None and frame.type() != gdb.DUMMY_FRAME:
            names.append(frame.name())
            frame = frame.older()
    except gdb.error:
        pass
    return outside_death_paths(names)


def _sigint(e: gdb.error) -> bool:
    """gdb names the signal that stopped a call: SIGINT is the user's Ctrl-C
    (our own watchdog's is told apart by its flag)."""
    return "SIGINT" in str(e) or "Interrupt" in str(e)
