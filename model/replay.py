"""Replaying allocator calls into the reference allocator and comparing
its state with the guest's: the first call after which they disagree.

Comparison modes: "exact" (list order too) and "relaxed" (lists as sets).
A set of accepted difference kinds (a team's `--known` file) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ModelError
from .reference import Allocator
from .state import AreaState
from .trace import Call, VOID_FUNCS

__all__ = ["Difference", "Divergence", "apply_call", "compare_states", "compare_footprint",
           "replay", "DIFFERENCE_KINDS"]

DIFFERENCE_KINDS = ("result", "area", "metadata", "max_order", "list-order", "list-set",
                    "model-error", "died")


@dataclass(frozen=True)
class Difference:
    kind: str            # one of DIFFERENCE_KINDS
    slot: int | None
    address: int | None
    detail: str          # words: what the model has, what the guest has

    def to_json(self) -> dict:
        return {"kind": self.kind, "slot": self.slot, "address": self.address,
                "detail": self.detail}


@dataclass(frozen=True)
class Divergence:
    index: int                      # the call after which states differ
    call: Call | None
    model_result: int | None
    differences: tuple[Difference, ...]

    def to_json(self) -> dict:
        return {"index": self.index, "call": self.call.to_json() if self.call else None,
                "model_result": self.model_result,
                "differences": [d.to_json() for d in self.differences]}

    def words(self) -> list[str]:
        head = (f"call {self.index}: {self.call.c()}" if self.call else "the end state")
        return [head] + [f"  {d.kind}: {d.detail}" for d in self.differences]


def apply_call(al: Allocator, call: Call) -> int | None:
    """Run one recorded call in the model; its result (None for void)."""
    fn = getattr(al, call.func)
    r = fn(*call.args)
    return None if call.func in VOID_FUNCS else r


def compare_footprint(al: Allocator, wrote, *, mode: str = "exact",
                      accepted: frozenset[str] = frozenset()) -> list[Difference]:
    """The model's bytes against the guest's where the call wrote (its
    recorded footprint): metadata bytes, list nodes and heads, max_order."""
    out: list[Difference] = []
    for addr, guest in wrote:
        model = al.peek(addr, len(guest))
        if model == guest:
            continue
        i = next(k for k in range(len(guest)) if model[k] != guest[k])
        kind, slot, where = _place(al, addr + i)
        if kind in accepted or (mode == "relaxed" and kind == "list-order"):
            continue
        out.append(Difference(kind, slot, addr + i,
                              f"{where}: the model wrote {model[i:i + 8].hex()}, the guest has "
                              f"{guest[i:i + 8].hex()} (the call's footprint, {len(guest)} "
                              f"bytes at {addr:#x})"))
        if len(out) >= 8:
            break
    return out


def _place(al: Allocator, addr: int) -> tuple[str, int | None, str]:
    """What the byte at addr is in the allocator: (difference kind, slot, words)."""
    s = al.layout.struct
    for a in al.areas:
        if a is None:
            continue
        if a.page_states <= addr < a.page_states + len(a.meta):
            pfn = a.base + addr - a.page_states
            return "metadata", a.slot, f"metadata byte of pfn {pfn:#x} (area {a.slot})"
        desc = al.areas_addr + a.slot * s.size
        if desc <= addr < desc + s.size:
            off = addr - desc
            if s.max_order_off is not None and off == s.max_order_off:
                return "max_order", a.slot, f"max_order of area {a.slot}"
            if s.freelists_off <= off < s.freelists_off + al.layout.nlists * s.list_head_size:
                k = (off - s.freelists_off) // s.list_head_size
                return "list-order", a.slot, f"the head of free list {k} of area {a.slot}"
            return "area", a.slot, f"descriptor of area {a.slot} (offset {off})"
    if al.mask_addr <= addr < al.mask_addr + 4:
        return "area", None, "areas_mask"
    return "list-order", None, f"the list node at {addr - addr % al.layout.ptr_size:#x}"


def _first_bytes(a: bytes, b: bytes, limit: int = 4) -> list[int]:
    out = []
    n = min(len(a), len(b))
    step = 4096
    for lo in range(0, n, step):
        if a[lo:lo + step] != b[lo:lo + step]:
            for i in range(lo, min(lo + step, n)):
                if a[i] != b[i]:
                    out.append(i)
                    if len(out) >= limit:
                        return out
    return out


def compare_states(model: tuple[AreaState, ...], guest: tuple[AreaState, ...], *,
                   mode: str = "exact", page_shift: int = 12, phys_offset: int = 0,
                   accepted: frozenset[str] = frozenset()) -> list[Difference]:
    out: list[Difference] = []
    ms = {a.slot: a for a in model}
    gs = {a.slot: a for a in guest}
    for slot in sorted(set(ms) | set(gs)):
        m, g = ms.get(slot), gs.get(slot)
        if m is None or g is None or (m.base, m.top, m.page_states) != (g.base, g.top, g.page_states):
            desc = lambda x: "none" if x is None else f"[{x.base:#x}, {x.top:#x})"  # noqa: E731
            out.append(Difference("area", slot, None, f"model area {desc(m)}, guest {desc(g)}"))
            continue
        if m.max_order != g.max_order:
            out.append(Difference("max_order", slot, None,
                                  f"model max_order {m.max_order}, guest {g.max_order}"))
        for i in _first_bytes(m.metadata, g.metadata):
            addr = ((m.base + i) << page_shift) + phys_offset
            out.append(Difference("metadata", slot, addr,
                                  f"page {addr:#x}: model byte {m.metadata[i]:#04x}, guest "
                                  f"{g.metadata[i]:#04x}"))
        for k, (ml, gl) in enumerate(zip(m.freelists, g.freelists)):
            if ml == gl:
                continue
            if set(ml) == set(gl):
                if mode == "exact":
                    out.append(Difference("list-order", slot, None,
                                          f"list {k} holds the same {len(ml)} blocks in another "
                                          f"order: model {_short(ml)}, guest {_short(gl)}"))
                continue
            missing, extra = sorted(set(ml) - set(gl)), sorted(set(gl) - set(ml))
            words = ([f"the guest lacks {_short(missing)}"] if missing else []) + \
                ([f"the guest has {_short(extra)} the model does not"] if extra else [])
            out.append(Difference("list-set", slot, (missing or extra)[0],
                                  f"list {k}: " + "; ".join(words)))
    return [d for d in out if d.kind not in accepted]


def _short(xs, n: int = 4) -> str:
    xs = list(xs)
    body = ", ".join(f"{x:#x}" for x in xs[:n])
    return f"[{body}{', ...' if len(xs) > n else ''}]"


@dataclass
class ReplayResult:
    calls: int
    divergence: Divergence | None = None
    compared: int = 0                 # states compared along the way
    footprints: int = 0               # calls whose recorded footprint was compared
    model: Allocator | None = field(default=None, repr=False)


def replay(al: Allocator, calls: list[Call], states: dict[int, tuple[AreaState, ...]] | None = None,
           against: tuple[AreaState, ...] | None = None, *, mode: str = "exact",
           accepted: frozenset[str] = frozenset()) -> ReplayResult:
    """Run `calls` in `al`; stop at the first call whose result differs from
    the recorded one, or after which the model differs from a recorded
    state; compare the end with `against` when given."""
    states = states or {}
    shift, off = al.layout.page_shift, al.phys_offset
    res = ReplayResult(0, model=al)
    for n, call in enumerate(calls):
        if call.died:
            # the guest never returned from it: no state after it to compare
            res.calls = n + 1
            res.divergence = Divergence(n, call, None, (Difference("died", None, None,
                                                                   call.died),))
            return res
        try:
            got = apply_call(al, call)
        except ModelError as e:
            res.divergence = Divergence(n, call, None, (Difference("model-error", None, None, str(e)),))
            return res
        res.calls = n + 1
        if call.result is not None and got is not None and got != call.result \
                and "result" not in accepted:
            wrong = Difference("result", None, call.result,
                               f"model returned {got:#x}, guest {call.result:#x}")
            res.divergence = Divergence(n, call, got, (wrong,))
            return res
        if call.wrote is not None:
            res.footprints += 1
            diffs = compare_footprint(al, call.wrote, mode=mode, accepted=accepted)
            if diffs:
                res.divergence = Divergence(n, call, got, tuple(diffs))
                return res
        if call.i in states:
            res.compared += 1
            diffs = compare_states(al.state(), states[call.i], mode=mode, page_shift=shift,
                                   phys_offset=off, accepted=accepted)
            if diffs:
                res.divergence = Divergence(n, call, got, tuple(diffs))
                return res
    if against is not None:
        res.compared += 1
        diffs = compare_states(al.state(), against, mode=mode, page_shift=shift,
                               phys_offset=off, accepted=accepted)
        if diffs:
            res.divergence = Divergence(len(calls), None, None, tuple(diffs))
    return res
