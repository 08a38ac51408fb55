"""Drive: run generated operations in the guest and in the reference
allocator side by side, compare after every one, and shrink the first
disagreement to a minimal reproducer.

The guest is anything with `call(func, args) -> int | None`,
`read(addr, size) -> bytes` and `write(addr, data)` (gdb inferior calls,
gdb/MI). Drive writes guest memory by construction: callers must ask first.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .constants import FLAG_DONTZERO, FLAG_FRESH
from .errors import AllocviewError, ModelError
from .layout import Layout
from .reference import Allocator
from .state import AreaState
from .replay import Difference, compare_states
from .snapshot import Snapshot
from .trace import Call, SIGNATURES, TraceWriter

__all__ = ["Op", "GuestCallError", "Guest", "generate", "Driver", "DriveResult", "MIXES",
           "shrink", "c_reproducer"]

MIXES = {
    "default": {"alloc": 30, "memalign": 10, "free": 35, "reserve": 8, "unreserve": 7, "fresh": 10},
    "allocs": {"alloc": 60, "memalign": 15, "free": 20, "fresh": 5},
    "merge": {"alloc": 45, "free": 55},
    "reserve": {"alloc": 20, "free": 20, "reserve": 35, "unreserve": 25},
}


class GuestCallError(AllocviewError):
    """The guest died, hung or faulted inside a call allocview made."""


class DriveInterrupted(AllocviewError):
    """The user stopped a drive (Ctrl-C); the message says what became of
    the allocator's state."""


class Guest(Protocol):
    def call(self, func: str, args: tuple[int, ...]) -> int | None: ...
    def read(self, addr: int, size: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class Op:
    """One generated operation; `ref` names the op whose result it frees
    or unreserves, so shrinking keeps the pairs meaningful."""
    n: int
    kind: str                 # alloc, memalign, fresh, free, reserve, unreserve
    order: int = 0            # alloc, fresh: order; memalign: size order
    align: int = 0            # memalign: alignment order
    flags: int = 0
    pfn: int = 0              # reserve
    count: int = 1            # reserve
    ref: int | None = None    # free, unreserve


def generate(seed: int, n: int, layout: Layout, snap: Snapshot, *, mix: str = "default",
             area_bits: int = 0) -> list[Op]:
    """n operations: allocations of orders 0-4 (some aligned, some FRESH
    in 2021), frees of earlier allocations, reserves of pages inside the
    areas (some already taken, so they fail) and unreserves of them."""
    weights = dict(MIXES[mix])
    if layout.format != "2021":
        weights.pop("fresh", None)
    kinds, w = zip(*weights.items())
    rnd = random.Random(seed)
    areas = [a for a in snap.areas if a.decoded and a.pages > 8]
    live: list[int] = []
    reserved: list[int] = []
    ops: list[Op] = []
    flags = FLAG_DONTZERO | area_bits
    for i in range(n):
        kind = rnd.choices(kinds, w)[0]
        if kind == "free" and live:
            ops.append(Op(i, "free", ref=live.pop(rnd.randrange(len(live)))))
        elif kind == "unreserve" and reserved:
            ops.append(Op(i, "unreserve", ref=reserved.pop(rnd.randrange(len(reserved)))))
        elif kind == "reserve" and areas:
            a = rnd.choice(areas)
            ops.append(Op(i, "reserve", pfn=a.base + rnd.randrange(a.pages - 4),
                          count=rnd.choice((1, 1, 2, 3))))
            reserved.append(i)
        elif kind == "memalign":
            ops.append(Op(i, "memalign", order=rnd.randrange(4), align=rnd.randrange(4),
                          flags=flags))
            live.append(i)
        elif kind == "fresh":
            ops.append(Op(i, "fresh", order=rnd.randrange(3), flags=flags | FLAG_FRESH))
            live.append(i)
        else:
            ops.append(Op(i, "alloc", order=rnd.choice((0, 0, 0, 1, 1, 2, 3, 4)), flags=flags))
            live.append(i)
    return ops


def to_call(op: Op, layout: Layout, results: dict[int, int | None],
            args_of: dict[int, tuple] | None = None) -> tuple[str, tuple] | None:
    """The entry point call for op in this tree, or None when it refers to
    an operation that gave nothing (a failed alloc or reserve). `results`
    and `args_of`: each earlier op's result and call arguments, by op.n."""
    ps = layout.page_size
    v2021 = layout.format == "2021"
    if op.kind in ("alloc", "fresh"):
        return ("alloc_pages_flags", (op.order, op.flags)) if v2021 else \
            ("alloc_pages_area", (op.flags & 0xFFFF or 0xFFFFFFFF, op.order))
    if op.kind == "memalign":
        align, size = ps << op.align, (ps << op.order) - 1
        return ("memalign_pages_flags", (align, size, op.flags)) if v2021 else \
            ("memalign_pages_area", (op.flags & 0xFFFF or 0xFFFFFFFF, align, size))
    if op.kind == "free":
        p = results.get(op.ref) if op.ref is not None else None
        return ("free_pages", (p,)) if p else None
    if op.kind == "reserve":
        return ("reserve_pages" if v2021 else "alloc_pages_special", (op.pfn * ps, op.count))
    if op.kind == "unreserve":
        if op.ref is None or op.ref not in results or \
                not got_reserved(results[op.ref], v2021):
            return None
        return ("unreserve_pages" if v2021 else "free_pages_special", (args_of or {})[op.ref])
    raise AllocviewError(f"unknown op kind {op.kind!r}")


def got_reserved(result, v2021: bool) -> bool:
    return result == 0 if v2021 else bool(result)


def _model_call(al: Allocator, func: str, args: tuple) -> int | None:
    r = getattr(al, func)(*args)
    return None if not SIGNATURES[func][1] else r


@dataclass
class DriveResult:
    ops: int                               # operations run
    calls: list[Call] = field(default_factory=list)
    divergence: tuple[int, Call | None, list[Difference]] | None = None
    seconds: float = 0.0
    reads: int = 0


class Driver:
    """Runs ops in a guest and in a model started from the same state."""

    def __init__(self, guest: Guest, start: Snapshot, *, mode: str = "exact",
                 accepted: frozenset[str] = frozenset(), full_every: int = 100):
        self.guest = guest
        self.start = start
        self.layout = start.layout
        self.mode, self.accepted, self.full_every = mode, accepted, full_every

    def model(self) -> Allocator:
        s = self.start
        al = Allocator.from_state(self.layout, list(s.state()), s.areas_mask or 0,
                                  areas_addr=s.areas_addr, mask_addr=s.mask_addr,
                                  phys_offset=s.phys_offset)
        al.sync()
        al.track_touched()
        return al

    def run(self, ops: list[Op], progress: Callable[[int], None] | None = None) -> DriveResult:
        al = self.model()
        res = DriveResult(0)
        results: dict[int, int | None] = {}
        args_of: dict[int, tuple] = {}
        t = time.perf_counter()
        for k, op in enumerate(ops):
            call = to_call(op, self.layout, results, args_of)
            if call is None:
                continue
            func, args = call
            try:
                want = _model_call(al, func, args)
            except ModelError as e:
                # the guest must agree it is a caller bug: we never send it one
                raise AllocviewError(f"op {op.n}: the model refuses {func}{args}: {e}") from None
            touched = al.pending_nodes()
            got = self.guest.call(func, args)
            rec = Call(len(res.calls), func, tuple(args), got)
            res.calls.append(rec)
            results[op.n] = got
            args_of[op.n] = args
            res.ops = k + 1
            diffs = []
            if want is not None and got != want and "result" not in self.accepted:
                diffs.append(Difference("result", None, got, f"model returned {want:#x}, guest "
                                        f"{got if got is None else hex(got)}"))
            if not diffs:
                full = bool(self.full_every) and (k + 1) % self.full_every == 0
                diffs = self.compare(al, touched, full)
            if diffs:
                res.divergence = (k, rec, diffs)
                break
            if progress:
                progress(k + 1)
        else:
            if not res.divergence:
                diffs = self.compare(al, set(), True)
                if diffs:
                    res.divergence = (len(ops) - 1, res.calls[-1] if res.calls else None, diffs)
        res.seconds = time.perf_counter() - t
        return res

    # -------------------------------------------------------------- compare
    def compare(self, al: Allocator, touched: set[int], full: bool) -> list[Difference]:
        if full or self.touched_differs(al, touched):
            return self._full(al)
        return []

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

    def _full(self, al: Allocator) -> list[Difference]:
        """Decode the guest whole and compare with the model: words for
        every difference, not just the first byte that differed."""
        from .snapshot import decode
        s = self.start
        snap = decode(self.guest, self.layout, s.areas_addr, s.mask_addr,
                      format=self.layout.format, phys_offset=s.phys_offset)
        al.pop_touched_meta(None)
        return compare_states(al.state(), snap.state(), mode=self.mode,
                              page_shift=self.layout.page_shift, phys_offset=s.phys_offset,
                              accepted=self.accepted)


def restore(guest: Guest, start: Snapshot, image: list[tuple[int, bytes]]) -> None:
    """Put the allocator's start state back into the guest: every range the
    start decode read (globals, metadata, list nodes)."""
    for addr, data in image:
        guest.write(addr, data)


def shrink(driver: Driver, ops: list[Op], image: list[tuple[int, bytes]],
           budget_s: float = 120.0) -> list[Op]:
    """ddmin over ops (which end in a divergence): a smallest subsequence
    that still diverges, trying halves, then quarters, ... then single ops,
    each trial from the restored start state. Stops at the time budget."""
    deadline = time.monotonic() + budget_s

    def diverges(candidate: list[Op]) -> bool:
        restore(driver.guest, driver.start, image)
        return driver.run(candidate).divergence is not None

    n = 2
    cur = list(ops)
    while len(cur) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(cur) // n)
        reduced = False
        for i in range(0, len(cur), chunk):
            candidate = cur[:i] + cur[i + chunk:]
            if candidate and diverges(candidate):
                cur, n, reduced = candidate, max(n - 1, 2), True
                break
            if time.monotonic() > deadline:
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(cur), n * 2)
    restore(driver.guest, driver.start, image)
    return cur


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
                end_state: tuple[AreaState, ...] | None = None) -> None:
    w = TraceWriter(path, header)
    for c in calls:
        w.call(c.func, c.args, c.result)
    if end_state is not None and calls:
        w.state(end_state)
    w.close()
