"""The invariants of ALLOCATOR.md, checked on a decoded snapshot.

`check(snapshot)` returns one `Finding` per broken thing. Where one breach
makes others meaningless (a descriptor that points at the wrong metadata, a
list cut short) the consequences are folded into the one finding, so the
report leads to the cause.
"""

from __future__ import annotations

from .findings import Finding, Severity
from .layout import Status
from .list import ListWalk
from .pages import BlockDefect
from .snapshot import AreaSnapshot, Snapshot

__all__ = ["check", "errors"]

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.ERROR]


def check(snap: Snapshot) -> list[Finding]:
    out = list(snap.problems)
    excluded: set[int] = set()
    out += _check_areas(snap, excluded)
    live = [a for a in snap.areas if a.decoded and a.slot not in excluded]
    for a in live:
        out += [_defect_finding(snap, a, d) for d in a.blocks.defects]
    out += _check_lists(snap, live)
    for a in live:
        out += _check_max_order(snap, a)
        out += _check_buddies(snap, a)
    out.sort(key=lambda f: (-f.severity, f.slot if f.slot is not None else -1, f.address or 0))
    return out


# ------------------------------------------------------------------ areas
def _check_areas(snap: Snapshot, excluded: set[int]) -> list[Finding]:
    lay, out = snap.layout, []
    mask = snap.areas_mask or 0
    if mask >> lay.max_areas:
        out.append(Finding("mask-mismatch", E, None, snap.mask_addr,
                           f"areas_mask {mask:#x} has bits above slot {lay.max_areas - 1} "
                           f"(MAX_AREAS is {lay.max_areas})", (("areas_mask", mask),)))
    unchecked = " (its pages and lists were not checked)"
    for a in snap.areas:
        if not a.initialised:
            out.append(Finding("mask-mismatch", E, a.slot, snap.mask_addr,
                               f"slot {a.slot} holds an area (base {a.base:#x}, top {a.top:#x}) "
                               f"but bit {a.slot} of areas_mask {mask:#x} is clear",
                               (("areas_mask", mask), ("base", a.base), ("top", a.top))))
            excluded.add(a.slot)
            continue
        if a.base == 0 and a.top == 0 and a.page_states == 0:
            out.append(Finding("mask-mismatch", E, a.slot, snap.mask_addr,
                               f"bit {a.slot} of areas_mask {mask:#x} is set but slot {a.slot} "
                               f"is empty (base, top and page_states are 0)",
                               (("areas_mask", mask),)))
            excluded.add(a.slot)
            continue
        if a.base >= a.top:
            out.append(Finding("area-bounds", E, a.slot, a.desc_addr,
                               f"area {a.slot} has base {a.base:#x} >= top {a.top:#x}" + unchecked,
                               (("base", a.base), ("top", a.top))))
            excluded.add(a.slot)
            continue
        if not a.decoded:
            excluded.add(a.slot)
            continue
        first_page = snap.virt(a.base)
        if a.page_states + a.pages > first_page or a.page_states + a.pages < a.page_states:
            out.append(Finding("metadata-misplaced", E, a.slot, a.desc_addr,
                               f"area {a.slot}: {a.pages} metadata bytes at page_states "
                               f"{a.page_states:#x} run past the first usable page "
                               f"{first_page:#x} (base {a.base:#x})" + unchecked,
                               (("page_states", a.page_states), ("base", a.base))))
            excluded.add(a.slot)
            continue
        slot = lay.slot(a.slot)
        start = snap.pfn(a.page_states)
        if slot is not None and not slot.contains(start, a.top):
            end = "no limit" if slot.pfn_end is None else f"{slot.pfn_end:#x}"
            out.append(Finding("area-slot-range", W, a.slot, a.desc_addr,
                               f"area {a.slot} ({slot.name}) spans pfns [{start:#x}, {a.top:#x}) "
                               f"outside its slot's range [{slot.pfn_start:#x}, {end})"))
    spans = sorted(((snap.pfn(a.page_states), a.top, a) for a in snap.areas
                    if a.decoded and a.slot not in excluded), key=lambda t: (t[0], t[1], t[2].slot))
    for i, (lo, hi, a) in enumerate(spans):
        for lo2, hi2, b in spans[i + 1:]:
            if lo2 < hi and lo < hi2 and b.slot not in excluded:
                later = max(a, b, key=lambda x: x.slot)
                other = a if later is b else b
                out.append(Finding("area-overlap", E, later.slot, later.desc_addr,
                                   f"area {later.slot} pfns [{snap.pfn(later.page_states):#x}, "
                                   f"{later.top:#x}) overlap area {other.slot} pfns "
                                   f"[{snap.pfn(other.page_states):#x}, {other.top:#x})" + unchecked))
                excluded.add(later.slot)
    return out


# ----------------------------------------------------------------- blocks
def _defect_finding(snap: Snapshot, a: AreaSnapshot, d: BlockDefect) -> Finding:
    enc = snap.layout.encoding
    order = d.byte & 0x3F
    addr = snap.virt(d.pfn)
    ev: tuple = (("pfn", d.pfn), ("byte", d.byte))
    if d.kind == "bad-byte":
        why = f"order {order} >= NLISTS {enc.nlists}" if order >= enc.nlists \
            else f"status bits {d.byte & 0xC0:#04x} are not a {enc.format} status"
        msg = (f"{d.npages} page(s) from pfn {d.pfn:#x} carry byte {d.byte:#04x}: {why}")
    elif d.kind == "block-inconsistent":
        opfn, obyte = d.other
        msg = (f"block at pfn {d.pfn:#x} (byte {d.byte:#04x}, order {order}) has page "
               f"{opfn:#x} with byte {obyte:#04x}; all {1 << order} pages must carry {d.byte:#04x}")
        ev += (("other_pfn", opfn), ("other_byte", obyte))
    elif d.kind == "block-misaligned":
        msg = (f"block of order {order} (byte {d.byte:#04x}) starts at pfn {d.pfn:#x}, "
               f"not a multiple of {1 << order}")
    elif d.kind == "block-outside-area":
        msg = (f"block of order {order} (byte {d.byte:#04x}) at pfn {d.pfn:#x} ends at "
               f"{d.pfn + (1 << order):#x}, past the area's top {a.top:#x}")
    else:  # special-order
        special = enc.byte(Status.SPECIAL, 0)
        msg = (f"{d.npages} special page(s) from pfn {d.pfn:#x} carry byte {d.byte:#04x} "
               f"(order {order}); a special page is {special:#04x} exactly")
    return Finding(d.kind, E, a.slot, addr, msg, ev)


# ------------------------------------------------------------------ lists
def _check_lists(snap: Snapshot, live: list[AreaSnapshot]) -> list[Finding]:
    out: list[Finding] = []
    claimed: dict[int, tuple[int, int]] = {}          # node -> (slot, order)
    shared: set[int] = set()
    merged: set[tuple[int, int]] = set()              # walks that ran into another list
    walks = [(a, k, w) for a in live for k, w in enumerate(a.freelists)]
    for a, k, w in walks:
        first_shared = None
        for node in w.nodes:
            if node in claimed:
                shared.add(node)
                if first_shared is None:
                    first_shared = node
            else:
                claimed[node] = (a.slot, k)
        if first_shared is not None:
            s2, k2 = claimed[first_shared]
            merged.add((a.slot, k))
            merged.add((s2, k2))
            n = sum(1 for x in w.nodes if x in shared)
            out.append(Finding("free-multiply-listed", E, a.slot, first_shared,
                               f"{first_shared:#x} is on list {k} of area {a.slot} and on list "
                               f"{k2} of area {s2}" + (f" (with {n - 1} nodes after it)" if n > 1 else ""),
                               (("node", first_shared), ("lists", ((a.slot, k), (s2, k2))))))

    listed: dict[int, set[int]] = {a.slot: set() for a in live}
    truncated: dict[tuple[int, int], ListWalk] = {}
    for a, k, w in walks:
        out += _check_links(a, k, w, shared)
        if not w.complete:
            truncated[(a.slot, k)] = w
        for node in w.nodes:
            if node in shared and claimed[node] != (a.slot, k):
                continue
            f = _check_node(snap, a, k, node, listed, live)
            if f is not None:
                out.append(f)
    for (slot, k), w in truncated.items():
        a = next(x for x in live if x.slot == slot)
        missed = sum(1 for p, b in a.blocks.free.items()
                     if b & 0x3F == k and p not in listed[slot])
        f = _walk_end_finding(a, k, w, missed, (slot, k) in merged)
        if f is not None:
            out.append(f)
    for a in live:
        for pfn, b in sorted(a.blocks.free.items()):
            k = b & 0x3F
            if pfn not in listed[a.slot] and (a.slot, k) not in truncated:
                out.append(Finding("free-not-listed", E, a.slot, snap.virt(pfn),
                                   f"free block at pfn {pfn:#x} (byte {b:#04x}, order {k}) "
                                   f"is on no list; expected on list {k} of area {a.slot}",
                                   (("pfn", pfn), ("byte", b))))
    return out


def _check_links(a: AreaSnapshot, k: int, w: ListWalk, shared: set[int]) -> list[Finding]:
    out = []
    before = w.head
    for node, prev in zip(w.nodes, w.prevs):
        if prev != before and node not in shared:
            out.append(Finding("list-broken-link", E, a.slot, node,
                               f"list {k} of area {a.slot}: node {node:#x} has prev {prev:#x}, "
                               f"but the node before it is {before:#x}",
                               (("node", node), ("prev", prev), ("expected", before))))
        before = node
    if w.complete and w.head_prev != w.last:
        out.append(Finding("list-broken-link", E, a.slot, w.head,
                           f"list {k} of area {a.slot}: head {w.head:#x} has prev {w.head_prev:#x}, "
                           f"but the last node is {w.last:#x}",
                           (("head", w.head), ("prev", w.head_prev), ("expected", w.last))))
    return out


def _walk_end_finding(a: AreaSnapshot, k: int, w: ListWalk, missed: int,
                      merged: bool) -> Finding | None:
    where = f"list {k} of area {a.slot}"
    tail = f"; {missed} free block(s) of order {k} were not reached" if missed else ""
    ev = (("node", w.last), ("next", w.end_pointer), ("walked", len(w.nodes)))
    if w.end == "repeat":
        return Finding("list-cycle", E, a.slot, w.last,
                       f"{where}: after {len(w.nodes)} nodes, {w.last:#x} leads back to "
                       f"{w.end_pointer:#x}, a node already walked: a cycle that misses the head" + tail, ev)
    if w.end in ("foreign", "null"):
        return Finding("list-foreign-pointer", E, a.slot, w.last,
                       f"{where}: {w.last:#x} has next {w.end_pointer:#x}, which is not a page "
                       f"of any area" + tail, ev)
    if w.end == "unreadable":
        return Finding("list-unreadable", E, a.slot, w.end_pointer,
                       f"{where}: node {w.end_pointer:#x} (next of {w.last:#x}) cannot be read" + tail, ev)
    if w.end == "other-head":
        if merged:
            return None
        return Finding("list-crossed", E, a.slot, w.last,
                       f"{where}: {w.last:#x} has next {w.end_pointer:#x}, the head of another list"
                       + tail, ev)
    if w.end == "limit":
        return Finding("list-too-long", E, a.slot, w.head,
                       f"{where}: more than {len(w.nodes)} nodes, more than the area has pages", ev)
    return None


def _check_node(snap: Snapshot, a: AreaSnapshot, k: int, node: int,
                listed: dict[int, set[int]], live: list[AreaSnapshot]) -> Finding | None:
    where = f"list {k} of area {a.slot}"
    pfn = snap.pfn(node)
    home = next((x for x in live if x.base <= pfn < x.top), None)
    if home is None:
        return None              # in an area whose state is not trusted
    if home.slot != a.slot:
        listed[home.slot].add(pfn)
        return Finding("list-node-wrong-area", E, a.slot, node,
                       f"{where} holds {node:#x}, a page of area {home.slot}",
                       (("node", node), ("area", home.slot)))
    b = a.blocks.free.get(pfn)
    if b is not None:
        listed[a.slot].add(pfn)
        if b & 0x3F != k:
            return Finding("list-node-wrong-order", E, a.slot, node,
                           f"{where} holds {node:#x}, a free block of order {b & 0x3F} "
                           f"(byte {b:#04x}); expected order {k}", (("node", node), ("byte", b)))
        return None
    byte = a.metadata[pfn - a.base]
    status, order = snap.layout.encoding.table[byte]
    if status.is_free:
        return Finding("list-node-not-block", E, a.slot, node,
                       f"{where} holds {node:#x}, a free page inside a block (byte {byte:#04x}), "
                       f"not the first page of a free block", (("node", node), ("byte", byte)))
    return Finding("list-node-not-free", E, a.slot, node,
                   f"{where} holds {node:#x}, whose page is {status.name.lower()} (byte "
                   f"{byte:#04x}); only free blocks of order {k} belong there",
                   (("node", node), ("byte", byte)))


# -------------------------------------------------------------- max_order
def _check_max_order(snap: Snapshot, a: AreaSnapshot) -> list[Finding]:
    if a.max_order is None:
        return []
    nonempty = [k for k, w in enumerate(a.freelists) if w.nodes]
    mo = a.max_order
    if mo >= snap.layout.nlists:
        return [Finding("max-order-invalid", E, a.slot, a.desc_addr,
                        f"area {a.slot}: max_order {mo} is not below NLISTS {snap.layout.nlists}")]
    above = [k for k in nonempty if k > mo]
    if above:
        # A warning, not an error: the design reaches this state itself
        # (free() pushes a block above a max_order that split lowered).
        return [Finding("max-order-low", W, a.slot, a.desc_addr,
                        f"area {a.slot}: max_order is {mo} but list(s) "
                        f"{', '.join(map(str, above))} above it hold blocks; alloc will not "
                        f"find them until a merge raises max_order",
                        (("max_order", mo), ("nonempty", tuple(above))))]
    highest = max(nonempty, default=-1)
    if mo > highest:
        return [Finding("max-order-unreached", I, a.slot, a.desc_addr,
                        f"area {a.slot}: max_order {mo}, highest non-empty list "
                        f"{highest if highest >= 0 else 'none'} (normal after allocations)")]
    return []


# ---------------------------------------------------------------- buddies
def _check_buddies(snap: Snapshot, a: AreaSnapshot) -> list[Finding]:
    out, free, nl = [], a.blocks.free, snap.layout.nlists
    for pfn, b in sorted(free.items()):
        k = b & 0x3F
        size = 1 << k
        if k + 1 >= nl or pfn & (2 * size - 1) or pfn + 2 * size > a.top:
            continue
        other = free.get(pfn + size)
        if other is not None and other & 0x3F == k:
            out.append(Finding("unmerged-buddies", E, a.slot, snap.virt(pfn),
                               f"free buddies of order {k} at pfns {pfn:#x} (byte {b:#04x}) and "
                               f"{pfn + size:#x} (byte {other:#04x}) were not merged into one "
                               f"block of order {k + 1}",
                               (("pfn", pfn), ("buddy", pfn + size))))
    return out
