"""Drive: run generated operations (model/mixes.py) in the guest and in the
reference allocator side by side, compare after every one, and go on past
each departure from the design, so one run finds every distinct defect.

After a departure the two are brought back into agreement: the model takes
the guest's state (the design's next steps from where the guest is), or,
after a call that died in the guest (hung, aborted), both start again from
the start state (the guest's allocator memory and lock rewritten, the
call's frame already unwound by the guest object). Departures are grouped
by `signature`, and each distinct one is shrunk to its own minimal
sequence (`shrink`).

The guest is anything with `call(func, args) -> int | None` (raising
CallDied, GuestGone), `read(addr, size) -> bytes` and `write(addr, data)`
(gdb inferior calls, gdb/MI). Drive writes guest memory by construction:
callers must ask first.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .constants import FLAG_DONTZERO, FLAG_FRESH
from .entry_points import BY_NAME
from .errors import AllocviewError, ModelError
from .layout import Layout
from .mixes import Op, to_call
from .reference import Allocator
from .state import AreaState
from .replay import Difference, compare_states
from .snapshot import Snapshot
from .trace import Call, SIGNATURES, TraceWriter

__all__ = ["Op", "GuestCallError", "CallDied", "GuestGone", "Guest", "Driver", "DriveResult",
           "Departure", "Defect", "group", "shrink", "c_reproducer", "DEAD_KINDS"]

class GuestCallError(AllocviewError):
    """A call allocview made into the guest failed."""


class CallDied(GuestCallError):
    """The guest died inside a call and was brought back to where the call
    started (its frame unwound): `kind` hang or abort (the test's
    abort/exit path, where faults end too), `where` the function it was in
    (a hang's innermost, what called abort/exit), `console` what it
    printed."""

    def __init__(self, kind: str, detail: str, console: str | None = None,
                 where: str | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.console, self.where = kind, detail, console, where


class GuestGone(GuestCallError):
    """The guest cannot be brought back (QEMU exited, the stub is gone)."""


class DriveInterrupted(AllocviewError):
    """The user stopped a drive (Ctrl-C); the message says what became of
    the allocator's state."""


class Guest(Protocol):
    def call(self, func: str, args: tuple[int, ...]) -> int | None: ...
    def read(self, addr: int, size: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...


DEAD_KINDS = ("hang", "abort")
# the most telling kind of a departure names it: a call that died, then a
# wrong result, then what the state shows
_RANK = ("gone",) + DEAD_KINDS + ("result", "model-error", "area", "metadata", "list-set", "max_order",
                      "list-order")


@dataclass
class Departure:
    """One call after which the guest was not where the design is."""
    op: int                              # index of the operation in the ops run
    call: Call
    differences: list[Difference]
    signature: str
    console: str | None = None
    model_result: int | None = None

    @property
    def kind(self) -> str:
        return self.signature.split(":", 1)[0]

    def to_json(self) -> dict:
        return {"after_op": self.op, "call": self.call.to_json(), "kind": self.kind,
                "signature": self.signature,
                "differences": [d.to_json() for d in self.differences],
                **({"console": self.console} if self.console is not None else {})}


def _status(byte: int, fmt: str) -> str:
    s = byte >> 6
    if fmt == "2021":
        return ("free", "free", "allocated", "reserved")[s]
    return ("free", "allocated", "reserved", "bad")[s]


def transition(model: tuple[AreaState, ...], guest: tuple[AreaState, ...], fmt: str) -> str:
    """What the metadata differences are, as `MODEL->GUEST` page status
    (free, allocated, reserved): the first that changes status, else the
    blocks' orders only (free->free)."""
    pairs: set[str] = set()
    gs = {a.slot: a for a in guest}
    for m in model:
        g = gs.get(m.slot)
        if g is None or len(g.metadata) != len(m.metadata) or g.metadata == m.metadata:
            continue
        mm, gm = m.metadata, g.metadata
        for lo in range(0, len(mm), 4096):
            if mm[lo:lo + 4096] == gm[lo:lo + 4096]:
                continue
            for i in range(lo, min(lo + 4096, len(mm))):
                if mm[i] != gm[i]:
                    pairs.add(f"{_status(mm[i], fmt)}->{_status(gm[i], fmt)}")
    changed = sorted(p for p in pairs if p.split("->")[0] != p.split("->")[1])
    return changed[0] if changed else (sorted(pairs)[0] if pairs else "same")


def signature(call: Call, kinds: list[str], meta_transition: str = "") -> str:
    """What counts as the same defect. A call that died or returned the
    wrong block belongs to its entry point; a wrong state comes from the
    steps every entry point shares (split, merge, list handling), so it is
    named by what differs, whichever call showed it. Flags are not part of
    it: a defect in a shared step shows under every flag (each defect lists
    the entry points and flags that hit it)."""
    top = min(kinds, key=lambda k: _RANK.index(k) if k in _RANK else len(_RANK))
    if top in DEAD_KINDS or top in ("result", "model-error"):
        return f"{top}:{call.func}"
    if top == "metadata":
        return f"metadata:{meta_transition}"
    return top


def flags_words(call: Call) -> str:
    """The call's entry point and its path-changing flags, for a defect's
    list of what hit it."""
    params = [p for p, _ in BY_NAME[call.func].params]
    words = []
    if "flags" in params:
        f = call.args[params.index("flags")]
        words = [w for bit, w in ((FLAG_FRESH, "FRESH"), (FLAG_DONTZERO, "DONTZERO")) if f & bit]
        if f & 0xFFFF:
            words.append(f"areas {f & 0xFFFF:#x}")
    return call.func + (f" [{' '.join(words)}]" if words else "")


@dataclass
class DriveResult:
    ops: int                               # operations run
    calls: list[Call] = field(default_factory=list)
    departures: list[Departure] = field(default_factory=list)
    seconds: float = 0.0
    skipped: int = 0                       # calls not sent: they repeat one that killed the guest
    recoveries: list[float] = field(default_factory=list)   # seconds each restore took
    adopted: int = 0                       # times the model took the guest's state
    gone: str | None = None                # why the guest could not be brought back
    deadly: dict = field(default_factory=dict)   # key of a call that died -> its signature

    @property
    def divergence(self) -> tuple[int, Call | None, list[Difference]] | None:
        """The first departure, as (op index, call, differences)."""
        if not self.departures:
            return None
        d = self.departures[0]
        return d.op, d.call, d.differences


@dataclass
class Defect:
    """Departures with one signature: the first, how many calls hit it, by
    entry point and flags."""
    signature: str
    first: Departure
    hits: int = 0
    by_call: Counter = field(default_factory=Counter)
    last_op: int = 0


def group(departures: list[Departure]) -> list[Defect]:
    """Distinct defects in the order they were first seen."""
    out: dict[str, Defect] = {}
    for d in departures:
        g = out.setdefault(d.signature, Defect(d.signature, d))
        g.hits += 1
        g.by_call[flags_words(d.call)] += 1
        g.last_op = d.op
    return list(out.values())


def _deadly_key(func: str, args: tuple[int, ...]) -> tuple:
    """A call's arguments but its addresses, area masks and DONTZERO (which
    pick where, not how): a call with a deadly call's key is not sent
    again (it would only cost another wait and recovery)."""
    params = BY_NAME[func].params
    return (func,) + tuple(a & FLAG_FRESH if name == "flags" else 0 if name == "areas" else a
                           for (name, _), a in zip(params, args) if name not in ("addr", "mem"))


def _model_call(al: Allocator, func: str, args: tuple) -> int | None:
    r = getattr(al, func)(*args)
    return None if not SIGNATURES[func][1] else r


class Driver:
    """Runs ops in a guest and in a model started from the same state.
    `image`: the start state's bytes in the guest (every range the start
    decode read, the allocator's lock), what a dead call's recovery and
    every shrinking trial write back."""

    def __init__(self, guest: Guest, start: Snapshot, *,
                 image: list[tuple[int, bytes]] | tuple = (),
                 mode: str = "exact", accepted: frozenset[str] = frozenset(),
                 full_every: int = 100):
        self.guest = guest
        self.start = start
        self.image = list(image)
        self.layout = start.layout
        self.mode, self.accepted, self.full_every = mode, accepted, full_every

    def model(self, snap: Snapshot | None = None) -> Allocator:
        """The reference allocator at the start state, or at `snap` (the
        guest's state, adopted after a departure)."""
        s = self.start
        state = list((snap or s).state())
        mask = (snap or s).areas_mask or 0
        al = Allocator.from_state(self.layout, state, mask, areas_addr=s.areas_addr,
                                  mask_addr=s.mask_addr, phys_offset=s.phys_offset)
        al.sync()
        al.track_touched()
        return al

    def restore(self) -> None:
        """The guest's allocator back to the start state; GuestGone when the
        guest cannot take it."""
        try:
            restore(self.guest, self.start, self.image)
        except GuestGone:
            raise
        except AllocviewError as e:
            raise GuestGone(f"cannot restore the allocator's start state: {e}") from None

    def run(self, ops: list[Op], progress: Callable[[int], None] | None = None, *,
            go_on: bool = False, want: str | None = None,
            avoid: frozenset = frozenset()) -> DriveResult:
        """Run ops. Stop at the first departure unless `go_on`; with `want`
        (a signature), stop as soon as a departure of that signature is
        seen (a shrinking trial); `avoid`: keys of calls not to send (those
        that killed the guest in an earlier run)."""
        al = self.model()
        res = DriveResult(0)
        results: dict[int, int | None] = {}
        args_of: dict[int, tuple] = {}
        deadly = set(avoid)
        t = time.perf_counter()
        try:
            for k, op in enumerate(ops):
                call = to_call(op, self.layout, results, args_of)
                res.ops = k + 1
                if call is None:
                    continue
                func, args = call
                if _deadly_key(func, args) in deadly:
                    res.skipped += 1
                    continue
                try:
                    want_result = _model_call(al, func, args)
                except ModelError as e:
                    if not res.departures:
                        # from the start state the model refusing is our bug: we
                        # never send the guest a caller's bug
                        raise AllocviewError(f"op {op.n}: the model refuses {func}{args}: {e}") \
                            from None
                    # an adopted state the design has no step for: start again
                    res.recoveries.append(self._recover(results, args_of))
                    al = self.model()
                    continue
                touched = al.pending_nodes()
                rec = Call(len(res.calls), func, tuple(args), None)
                try:
                    got = self.guest.call(func, args)
                except GuestGone as e:
                    # the call took the guest with it (QEMU exited, a triple
                    # fault): the last departure, never shrunk
                    res.calls.append(rec)
                    res.departures.append(Departure(k, rec, [Difference("gone", None, None,
                                                                        str(e))],
                                                    f"gone:{func}", None, want_result))
                    raise
                except CallDied as e:
                    res.calls.append(rec)
                    # where it died names the defect: two entry points that
                    # hang in the same loop are one defect
                    dep = Departure(k, rec, [Difference(e.kind, None, None, e.detail)],
                                    f"{e.kind}:{e.where or func}", e.console, want_result)
                    res.departures.append(dep)
                    deadly.add(_deadly_key(func, args))
                    res.deadly[_deadly_key(func, args)] = dep.signature
                    if not go_on or want == dep.signature:
                        break
                    res.recoveries.append(self._recover(results, args_of))
                    al = self.model()
                    continue
                rec = Call(rec.i, func, tuple(args), got)
                res.calls.append(rec)
                results[op.n] = got
                args_of[op.n] = args
                diffs: list[Difference] = []
                wrong_result = want_result is not None and got != want_result and \
                    "result" not in self.accepted
                if wrong_result:
                    diffs.append(Difference("result", None, got, f"model returned {want_result:#x}, "
                                            f"guest {got if got is None else hex(got)}"))
                full = bool(self.full_every) and (k + 1) % self.full_every == 0
                snap = None
                if wrong_result or full or self.touched_differs(al, touched):
                    state_diffs, snap, moved = self._full(al)
                    diffs += state_diffs
                if diffs:
                    kinds = [d.kind for d in diffs]
                    sig = signature(rec, kinds, moved if "metadata" in kinds else "")
                    res.departures.append(Departure(k, rec, diffs, sig, None, want_result))
                    if not go_on or want == sig:
                        break
                    al = self._adopt(snap, res, results, args_of)
                if progress:
                    progress(k + 1)
            else:
                if res.calls:                      # what the every-100 compare may not have seen
                    diffs, _snap, moved = self._full(al)
                    if diffs:
                        kinds = [d.kind for d in diffs]
                        res.departures.append(Departure(len(ops) - 1, res.calls[-1], diffs,
                                                        signature(res.calls[-1], kinds, moved)))

        except GuestGone as e:
            res.gone = str(e)      # what was found before it stands
        res.seconds = time.perf_counter() - t
        return res

    def _adopt(self, snap: Snapshot | None, res: DriveResult, results: dict,
               args_of: dict) -> Allocator:
        """The model continues from the guest's state when the design has
        steps for it (its invariants hold); else both restart from the
        start state (a model running on a broken state would report the
        breakage again and again, not new defects)."""
        from .check import check, errors
        if snap is not None and not errors(check(snap)):
            try:
                al = self.model(snap)
                res.adopted += 1
                return al
            except (ModelError, AllocviewError):
                pass
        res.recoveries.append(self._recover(results, args_of))
        return self.model()

    def _recover(self, results: dict, args_of: dict) -> float:
        """Both back to the start state; what earlier operations returned
        no longer exists (operations referring to it are skipped)."""
        t = time.perf_counter()
        self.restore()
        results.clear()
        args_of.clear()
        return time.perf_counter() - t

    # -------------------------------------------------------------- compare
    def touched_differs(self, al: Allocator, touched: set[int]) -> bool:
        """Whether the guest differs from the model in what the last
        operation touched: the descriptors and list heads (one read), the
        list nodes it wrote, and the metadata bytes it wrote."""
        lay = self.layout
        mem = al.memory
        s = self.start
        size = lay.areas_size
        if self.guest.read(s.areas_addr, size) != mem.read(s.areas_addr, size) or \
                self.guest.read(s.mask_addr, 4) != mem.read(s.mask_addr, 4):
            return True
        for node in sorted(touched):
            if s.areas_addr <= node < s.areas_addr + size:
                continue                    # a head: already compared
            if mem.read(node, 2 * lay.ptr_size) != self.guest.read(node, 2 * lay.ptr_size):
                return True
        for a in al.areas:
            if a is None:
                continue
            for lo, hi in al.pop_touched_meta(a.slot):
                if self.guest.read(a.page_states + lo, hi - lo) != bytes(a.meta[lo:hi]):
                    return True
        return False

    def _full(self, al: Allocator) -> tuple[list[Difference], Snapshot, str]:
        """Decode the guest whole and compare with the model: words for
        every difference, not just the first byte that differed; the
        guest's snapshot and what its metadata differences are."""
        from .snapshot import decode
        s = self.start
        snap = decode(self.guest, self.layout, s.areas_addr, s.mask_addr,
                      format=self.layout.format, phys_offset=s.phys_offset)
        al.pop_touched_meta(None)
        mine, theirs = al.state(), snap.state()
        diffs = compare_states(mine, theirs, mode=self.mode, page_shift=self.layout.page_shift,
                               phys_offset=s.phys_offset, accepted=self.accepted)
        moved = transition(mine, theirs, self.layout.format) if diffs else ""
        return diffs, snap, moved


def restore(guest: Guest, start: Snapshot, image: list[tuple[int, bytes]],
            chunk: int = 256) -> None:
    """Put the allocator's start state back into the guest: every range the
    start decode read (globals, metadata, list nodes) and its lock. Only
    the chunks that differ are written (reads are cheap, writes through a
    stub are not: a shrink restores hundreds of times)."""
    for addr, data in image:
        try:
            now = guest.read(addr, len(data))
        except AllocviewError:
            now = None
        if now == data:
            continue
        if now is None or len(now) != len(data) or len(data) <= chunk:
            guest.write(addr, data)
            continue
        run = None                                   # [first, end) of differing chunks
        for off in range(0, len(data) + chunk, chunk):
            differs = off < len(data) and now[off:off + chunk] != data[off:off + chunk]
            if differs and run is None:
                run = off
            elif not differs and run is not None:
                guest.write(addr + run, data[run:off])
                run = None


def shrink(driver: Driver, ops: list[Op], sig: str, budget_s: float = 60.0,
           deadly: dict | None = None) -> list[Op]:
    """A smallest subsequence of ops (which show the departure `sig`) that
    still shows it, each trial from the restored start state: first the
    last operation with what it refers to (many defects need no more
    history), then ddmin (halves, quarters, ... single operations). Calls
    that killed the guest for another defect (`deadly`: key -> signature)
    are not sent: each would cost a wait and a recovery. Stops at the time
    budget."""
    deadline = time.monotonic() + budget_s
    avoid = frozenset(k for k, s in (deadly or {}).items() if s != sig)

    def shows(candidate: list[Op]) -> bool:
        driver.restore()
        return any(d.signature == sig for d in
                   driver.run(candidate, go_on=True, want=sig, avoid=avoid).departures)

    last = _with_refs(ops, ops[-1])
    if len(last) < len(ops) and shows(last):
        driver.restore()
        return last
    n = 2
    cur = list(ops)
    while len(cur) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(cur) // n)
        reduced = False
        for i in range(0, len(cur), chunk):
            candidate = cur[:i] + cur[i + chunk:]
            if candidate and shows(candidate):
                cur, n, reduced = candidate, max(n - 1, 2), True
                break
            if time.monotonic() > deadline:
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(cur), n * 2)
    driver.restore()
    return cur


def _with_refs(ops: list[Op], op: Op) -> list[Op]:
    """op and the operations it refers to, transitively, in order."""
    by_n = {o.n: o for o in ops}
    keep, todo = set(), [op]
    while todo:
        o = todo.pop()
        if o.n not in keep:
            keep.add(o.n)
            if o.ref is not None and o.ref in by_n:
                todo.append(by_n[o.ref])
    return [o for o in ops if o.n in keep]


def c_reproducer(calls: list[Call], layout: Layout) -> str:
    """The calls as C for a kvm-unit-tests test (results kept in p[])."""
    lines = ["/* allocview drive: a minimal sequence on which the guest departs from",
             " * the allocator's design (ALLOCATOR.md). Run it from the same start state. */",
             "static void allocview_repro(void)", "{", f"\tvoid *p[{max(len(calls), 1)}];"]
    addr_of: dict[int, int] = {}
    for c in calls:
        args = []
        for a in c.args:
            args.append(f"p[{addr_of[a]}]" if c.func in ("free_pages",) and a in addr_of
                        else (hex(a) if a > 9 else str(a)))
        call = f"{c.func}({', '.join(args)})"
        if SIGNATURES[c.func][1] and c.func not in ("reserve_pages",):
            lines.append(f"\tp[{c.i}] = (void *){call};\t/* guest: {c.result:#x} */"
                         if c.result is not None else f"\tp[{c.i}] = (void *){call};")
            if c.result:
                addr_of[c.result] = c.i
        else:
            lines.append(f"\t{call};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_trace(path: str, calls: list[Call], header: dict,
                end_state: tuple[AreaState, ...] | None = None,
                died: tuple[int, str] | None = None) -> None:
    """`died`: (call index, words) of a call that died in the guest."""
    w = TraceWriter(path, header)
    for c in calls:
        w.call(c.func, c.args, c.result, died=died[1] if died and died[0] == c.i else None)
    if end_state is not None and calls:
        w.state(end_state)
    w.close()
