"""`alloc check-each`: check the allocator after every call of its entry
points and stop the guest at the first call that adds an error finding to
those the state had before it (arming takes the first baseline; an old
breach does not stop every call after it).

Incremental and exact: the reference allocator, started from a full check,
predicts what each call writes; only that is read back (descriptors and
list heads in one read, the metadata bytes and list nodes the call wrote).
While the guest agrees with the prediction, the state is the model's, which
is healthy by construction. On any difference, every `full_every` calls,
and after anything wrote guest memory from gdb, the whole state is decoded
and checked; a healthy guest that merely chose differently (another list
order) re-seeds the model from its own state.
"""

from __future__ import annotations


import gdb  # type: ignore[import-not-found]

from allocview.model.check import check, errors
from allocview.model.drive import Driver
from allocview.model.errors import ModelError
from allocview.model.snapshot import decode
from allocview.model.trace import Call

from . import target
from .trace import CallWatcher

__all__ = ["CheckEach"]


def _key(f) -> tuple:
    """What makes a finding the same one after a call: its kind and place
    (and a run's length: a run that grows is a new breach)."""
    return f.code, f.slot, f.address, f.count


def _keys(found) -> set:
    return {_key(f) for f in found}


def _frame_line() -> str:
    """Where the guest stopped, as gdb shows a frame at a breakpoint."""
    try:
        frame = gdb.selected_frame()
        sal = frame.find_sal()
        where = f" at {sal.symtab.filename}:{sal.line}" if sal.symtab is not None else ""
        return f"{frame.pc():#x} in {frame.name() or '??'} (){where}"
    except (gdb.error, RuntimeError):
        return "(no frame)"


class CheckEach(CallWatcher):
    def __init__(self, funcs: list[str], full_every: int = 100, fmt: str | None = None):
        self.full_every = full_every
        self.fmt = fmt
        self.calls = 0
        self.full_checks = 0
        self.dirty = False
        self.broken: tuple[Call, list] | None = None
        self.where = ""
        self.memory = target.memory()
        super().__init__(funcs)
        snap = self._decode()
        self.known = _keys(errors(check(snap)))      # the baseline: breaches already there
        self.at_arming = len(self.known)
        self._seed(snap)
        gdb.events.memory_changed.connect(self._changed)

    def _changed(self, _event) -> None:
        self.dirty = True                 # someone wrote guest memory from gdb

    def _decode(self):
        p = self.prog
        return decode(self.memory, p.layout, p.areas_addr, p.mask_addr, format=self.fmt)

    def _seed(self, snap) -> None:
        self.driver = Driver(self.memory, snap)
        self.model = self.driver.model()

    def on_call(self, func, args, result) -> bool:
        self.calls += 1
        call = Call(self.calls - 1, func, tuple(args), result)
        # with breaches in the state the model is no guide: check every call
        full = self.dirty or bool(self.known) or \
            (self.full_every and self.calls % self.full_every == 0)
        self.dirty = False
        if not full:
            try:
                want = getattr(self.model, func)(*args)
                agrees = (result is None or want == result) and \
                    not self.driver.touched_differs(self.model, self.model.pending_nodes())
            except ModelError:
                agrees = False            # the design calls this a caller bug: look closer
            if agrees:
                return False
        self.full_checks += 1
        snap = self._decode()
        errs = errors(check(snap))
        now = _keys(errs)
        new = [f for f in errs if _key(f) not in self.known]
        self.known = now
        if new:
            self.broken = (call, new)
            self.where = _frame_line()
            gdb.write(self.describe())
            return True
        try:
            self._seed(snap)
        except ModelError:
            pass                          # a broken state the model cannot hold: full checks
        return False

    def describe(self) -> str:
        old = (f"; {self.at_arming} error finding(s) were there when armed and do not stop it"
               if self.at_arming else "")
        if self.broken is None:
            return (f"allocview: check-each: {self.calls} calls checked, "
                    f"{self.full_checks} full checks, no new error findings{old}\n")
        call, errs = self.broken
        res = "" if call.result is None else f" -> {call.result:#x}"
        lines = [f"allocview: check-each: call #{call.i} {call.c()}{res} added "
                 f"{len(errs)} error finding(s){old}:"]
        for f in errs[:8]:
            where = f" at {f.address:#x}" if f.address is not None else ""
            lines.append(f"  {f.code}{where}: {f.message}")
        if len(errs) > 8:
            lines.append(f"  ... {len(errs) - 8} more (`alloc check`)")
        lines.append(self.where)
        return "\n".join(lines) + "\n"

    def off(self) -> None:
        self.remove()
        try:
            gdb.events.memory_changed.disconnect(self._changed)
        except (ValueError, RuntimeError):
            pass
