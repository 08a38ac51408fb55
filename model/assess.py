"""Whether a snapshot holds an allocator to check at all.

"No findings" must mean healthy, so a state with nothing to check is its
own outcome, never an empty list of findings: the globals could not be
read; the allocator is not initialised (areas_mask 0 and no slot holding an
area: a guest stopped before page_alloc_init_area); or what `areas` points
at is no allocator (a program that does not match the guest). A real
allocator, even a corrupted one, keeps its 52 (or 20) free-list heads
pointing at themselves or at page-aligned nodes: random memory does not,
and that is the test.
"""

from __future__ import annotations

from dataclasses import dataclass

from .snapshot import Snapshot, _empty_area

__all__ = ["Unchecked", "assess", "allocator_like", "with_cause"]


@dataclass(frozen=True)
class Unchecked:
    """Why nothing could be checked. kind: "unreadable", "uninitialised"
    or "not-allocator"; reason: one line for the user."""
    kind: str
    reason: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "reason": self.reason}


def allocator_like(snap: Snapshot, area) -> bool:
    """Three quarters of the area's list heads are well formed: each
    pointer is the head itself or a page-aligned node address."""
    heads = area.heads
    if not heads:
        return False
    page_mask = snap.layout.page_size - 1
    good = 0
    for head, prev, nxt in heads:
        good += all(p == head or (p and not (p - snap.phys_offset) & page_mask)
                    for p in (prev, nxt))
    return good * 4 >= 3 * len(heads)


def with_cause(unchecked: Unchecked, program_found: bool | None) -> Unchecked:
    """The likely cause added to the reason: whether the program's code was
    found in the guest (None: it could not be compared)."""
    if program_found is not True and unchecked.kind in ("uninitialised", "not-allocator"):
        return Unchecked(unchecked.kind, unchecked.reason + " (the program's code could not be "
                         "compared with the guest: does the ELF match it?)")
    if unchecked.kind == "uninitialised":
        return Unchecked(unchecked.kind, unchecked.reason + " (stopped before "
                         "page_alloc_init_area?)")
    if unchecked.kind == "not-allocator":
        return Unchecked(unchecked.kind, unchecked.reason + " (the guest overwrote the "
                         "allocator's globals?)")
    return unchecked


def assess(snap: Snapshot) -> Unchecked | None:
    """None when the snapshot holds an allocator (healthy or not) for the
    checker; else why there is nothing to check."""
    if snap.areas_mask is None:
        why = next((f.message for f in snap.problems if f.code == "areas-unreadable"),
                   "the allocator's globals cannot be read")
        return Unchecked("unreadable", why)
    mask, lay = snap.areas_mask, snap.layout
    like = [a for a in snap.areas if allocator_like(snap, a)]
    if mask == 0 and not like:
        held = [a for a in snap.areas if not _empty_area(a)]
        if not held:
            return Unchecked("uninitialised", "the allocator is not initialised: areas_mask is 0 "
                             "and every area slot is empty")
        return Unchecked("uninitialised", f"the allocator is not initialised: areas_mask is 0 and "
                         f"slot(s) {', '.join(str(a.slot) for a in held)} hold no allocator "
                         f"data")
    if mask and not any(a.initialised for a in like):
        bits = [n for n in range(32) if mask >> n & 1]
        extra = [n for n in bits if n >= lay.max_areas]
        what = f"areas_mask {mask:#x} marks slot(s) {', '.join(map(str, bits))}"
        if extra:
            what += f" (MAX_AREAS is {lay.max_areas})"
        return Unchecked("not-allocator", f"{what}, but none holds an area whose free lists "
                         f"are lists: this memory is not the allocator's state")
    return None
