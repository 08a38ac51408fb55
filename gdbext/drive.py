"""`alloc drive`'s guest: inferior calls and memory through gdb.

An inferior call can hang or kill the guest. A watchdog interrupts a call
that does not return in time (gdb then unwinds it, `unwindonsignal`), and
any gdb error inside a call becomes a GuestCallError naming the call.
Breakpoints are disabled while driving so no stop lands inside a call.
"""

from __future__ import annotations

import os
import signal
import threading

import gdb  # type: ignore[import-not-found]

from allocview.model.drive import GuestCallError
from allocview.model.drive_io import call_expression

from .target import GdbMemory

__all__ = ["GdbGuest"]


class GdbGuest:
    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.inferior = gdb.selected_inferior()
        self._memory = GdbMemory(self.inferior)
        self.calls = 0
        self._disabled: list = []

    def __enter__(self):
        self._signal: str | None = None
        gdb.events.stop.connect(self._stopped)
        self._saved = gdb.parameter("unwindonsignal")
        gdb.execute("set unwindonsignal on", to_string=True)
        for bp in gdb.breakpoints() or ():
            if bp.enabled:
                bp.enabled = False
                self._disabled.append(bp)
        return self

    def _stopped(self, event) -> None:
        """Which signal stopped a call (gdb's error message does not say)."""
        self._signal = getattr(event, "stop_signal", None)

    def __exit__(self, *exc):
        try:
            gdb.events.stop.disconnect(self._stopped)
        except (ValueError, RuntimeError):
            pass
        for bp in self._disabled:
            if bp.is_valid():
                bp.enabled = True
        gdb.execute(f"set unwindonsignal {'on' if self._saved else 'off'}", to_string=True)

    def call(self, func: str, args: tuple[int, ...]) -> int | None:
        expr = call_expression(func, args)
        self.calls += 1
        fired = threading.Event()

        def interrupt():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Timer(self.timeout, interrupt)
        self._signal = None
        try:
            timer.start()
            v = gdb.parse_and_eval(expr)
            return None if v.type.code == gdb.TYPE_CODE_VOID else int(v)
        except KeyboardInterrupt:
            if not fired.is_set():
                raise                                  # the user's Ctrl-C: drive stops
            raise GuestCallError(f"{func}{tuple(args)} did not return in {self.timeout:g} s: "
                                 f"the guest hangs in it (the call was unwound)") from None
        except gdb.error as e:
            if fired.is_set():
                raise GuestCallError(f"{func}{tuple(args)} did not return in {self.timeout:g} s: "
                                     f"the guest hangs in it (the call was unwound)") from None
            if "signaled while in a function called from GDB" in str(e) and \
                    (self._signal == "SIGINT" or _sigint(e)):
                raise KeyboardInterrupt from None          # the user's Ctrl-C, not the guest
            raise GuestCallError(f"{func}{tuple(args)} failed in the guest: "
                                 f"{str(e).splitlines()[0]}") from None
        finally:
            timer.cancel()

    def read(self, addr: int, size: int) -> bytes:
        return self._memory.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.inferior.write_memory(addr, data)


def _sigint(e: gdb.error) -> bool:
    """gdb names the signal that stopped a call: SIGINT is the user's Ctrl-C
    (our own watchdog's is told apart by its flag)."""
    return "SIGINT" in str(e) or "Interrupt" in str(e)

