"""The invariants of ALLOCATOR.md, checked on a decoded snapshot.

`check(snapshot)` returns one `Finding` per broken thing. Where one breach
makes others meaningless (a descriptor that points at the wrong metadata, a
list cut short) the consequences are folded into the one finding, so the
report leads to the cause; a run of like breaches at consecutive blocks
(thousands of unmerged single pages) is one finding with a count.

Healthy areas take the fast path: list membership, block bytes and buddy
pairs are compared as whole byte masks and sets, so millions of free pages
cost C loops, not Python ones. Any doubt sends an area's lists through the
node-by-node path, which explains each breach.
"""

from __future__ import annotations

import re
from collections import deque
from itertools import repeat
from operator import ne

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
    # descriptors the decoder already judged (too large, outside RAM, unreadable)
    judged = {f.slot for f in snap.problems if f.slot is not None and f.code != "area-beyond-ram"}
    for a in snap.areas:
        if a.slot in judged and not a.decoded:
            excluded.add(a.slot)
            continue
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
        first_page = snap.virt(a.base)
        if a.page_states + a.pages > first_page or a.page_states + a.pages < a.page_states:
            out.append(Finding("metadata-misplaced", E, a.slot, a.desc_addr,
                               f"area {a.slot}: {a.pages} metadata bytes at page_states "
                               f"{a.page_states:#x} run past the first usable page "
                               f"{first_page:#x} (base {a.base:#x})" + unchecked,
                               (("page_states", a.page_states), ("base", a.base))))
            excluded.add(a.slot)
            continue
        if not a.decoded:
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
        assert d.other is not None, "the scan names the page that differs"
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
    for a in live:
        got = _lists_fast(snap, a)
        if got is None:
            # one area in doubt: all go node by node (a node of one area
            # can sit on another's list)
            return _lists_slow(snap, live, live)
        out += got
    return out


def _lists_fast(snap: Snapshot, a: AreaSnapshot) -> list[Finding] | None:
    """The lists of one area checked as masks and sets: None when anything
    is off that the node-by-node path must explain (a node outside the
    area, on two lists, of the wrong byte or alignment, a broken link, a
    truncated walk). Free blocks on no list are the one breach reported
    here."""
    meta, base, shift = a.metadata, a.base, snap.layout.page_shift
    n = len(meta)
    v0 = snap.virt(base)
    lo, hi = v0, snap.virt(base + n)
    listed = bytearray(n)
    total = 0
    free_high = a.blocks.free_high
    for k, w in enumerate(a.freelists):
        if not w.nodes:
            if not w.complete:
                return None
            continue
        nodes = w.nodes
        if not w.complete or min(nodes) < lo or max(nodes) >= hi:
            return None
        if any(map(ne, w.prevs, (w.head,) + nodes[:-1])) or w.head_prev != nodes[-1]:
            return None                                   # a broken link
        idx = list(map((-v0).__add__, nodes))
        if shift:
            idx = [i >> shift for i in idx]
        if k == 0:
            mask0 = a.blocks.free_mask0()
            if set(map(mask0.__getitem__, idx)) != {1}:
                return None
        else:
            pfns = list(map(base.__add__, idx))
            if not free_high.keys() >= set(pfns) or \
                    {free_high[p] & 0x3F for p in pfns} != {k}:
                return None
        deque(map(listed.__setitem__, idx, repeat(k + 1)), maxlen=0)
        total += len(idx)
    if n - listed.count(0) != total:
        return None                                       # a node on two lists
    return _not_listed(snap, a, listed, set())


def _not_listed(snap: Snapshot, a: AreaSnapshot, listed: bytearray,
                truncated: set[int]) -> list[Finding]:
    """free-not-listed findings of one area: free blocks whose page is not
    marked in `listed` (a byte per page), order 0 by masks; orders in
    `truncated` are left to their list's walk-end finding."""
    out = []
    base, n = a.base, len(a.metadata)
    if 0 not in truncated:
        missing = int.from_bytes(a.blocks.free_mask0(), "little") & \
            ~int.from_bytes(listed.translate(_NONZERO), "little")
        if missing:
            out += _fold_not_listed(snap, a, _mask_runs(missing.to_bytes(n, "little"), base), 0)
    by_order: dict[int, list[int]] = {}
    for p, b in a.blocks.free_high.items():
        k = b & 0x3F
        if not listed[p - base] and k not in truncated:
            by_order.setdefault(k, []).append(p)
    for k, pfns in sorted(by_order.items()):
        out += _fold_not_listed(snap, a, _runs(pfns, 1 << k), k)
    return out


def _missed(a: AreaSnapshot, listed: bytearray, k: int) -> int:
    """Free blocks of order k not marked in `listed`."""
    if k == 0:
        return (int.from_bytes(a.blocks.free_mask0(), "little")
                & ~int.from_bytes(listed.translate(_NONZERO), "little")).bit_count()
    return sum(1 for p, b in a.blocks.free_high.items()
               if b & 0x3F == k and not listed[p - a.base])


_RUN_OF_ONES = re.compile(b"\x01+")


def _mask_runs(mask: bytes, base: int) -> list[tuple[int, int]]:
    """(first pfn, count) of every run of 1 bytes in a page mask."""
    return [(base + m.start(), m.end() - m.start()) for m in _RUN_OF_ONES.finditer(mask)]


_NONZERO = bytes(1 if b else 0 for b in range(256))


def _fold_not_listed(snap: Snapshot, a: AreaSnapshot, runs: list[tuple[int, int]],
                     k: int) -> list[Finding]:
    """free-not-listed findings, a run of consecutive blocks as one."""
    out = []
    for first, count in runs:
        b = a.metadata[first - a.base]
        if count == 1:
            out.append(Finding("free-not-listed", E, a.slot, snap.virt(first),
                               f"free block at pfn {first:#x} (byte {b:#04x}, order {k}) "
                               f"is on no list; expected on list {k} of area {a.slot}",
                               (("pfn", first), ("byte", b))))
        else:
            last = first + (count - 1) * (1 << k)
            out.append(Finding("free-not-listed", E, a.slot, snap.virt(first),
                               f"{count} free blocks of order {k} from pfn {first:#x} to {last:#x} "
                               f"(byte {b:#04x} first) are on no list; expected on list {k} of "
                               f"area {a.slot}",
                               (("pfn", first), ("byte", b), ("count", count),
                                ("last_pfn", last)), count=count, last=snap.virt(last)))
    return out


def _runs(pfns: list[int], step: int) -> list[tuple[int, int]]:
    """(first, count) of each run of pfns spaced `step` apart (pfns
    ascending)."""
    out: list[tuple[int, int]] = []
    for p in pfns:
        if out and p == out[-1][0] + out[-1][1] * step:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((p, 1))
    return out


def _lists_slow(snap: Snapshot, live: list[AreaSnapshot], slow: list[AreaSnapshot]) -> list[Finding]:
    """Node by node, for the areas the fast path could not vouch for; the
    other live areas take part only as owners of foreign nodes."""
    out: list[Finding] = []
    claimed: dict[int, tuple[int, int]] = {}          # node -> (slot, order)
    shared: set[int] = set()
    merged: set[tuple[int, int]] = set()              # walks that ran into another list
    walks = [(a, k, w) for a in slow for k, w in enumerate(a.freelists)]
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

    listed = {a.slot: bytearray(len(a.metadata)) for a in live}   # a byte per page
    truncated: dict[tuple[int, int], ListWalk] = {}
    node_findings: list[Finding] = []
    for a, k, w in walks:
        out += _check_links(a, k, w, shared)
        if not w.complete:
            truncated[(a.slot, k)] = w
        for node in w.nodes:
            if node in shared and claimed[node] != (a.slot, k):
                continue
            f = _check_node(snap, a, k, node, listed, live)
            if f is not None:
                node_findings.append(f)
    out += _fold_nodes(snap, node_findings)
    for (slot, k), w in truncated.items():
        a = next(x for x in live if x.slot == slot)
        f = _walk_end_finding(a, k, w, _missed(a, listed[slot], k), (slot, k) in merged)
        if f is not None:
            out.append(f)
    for a in slow:
        out += _not_listed(snap, a, listed[a.slot],
                           {k for (slot, k) in truncated if slot == a.slot})
    return out


def _fold_nodes(snap: Snapshot, found: list[Finding]) -> list[Finding]:
    """list-node-not-free findings of pages in a row (a reserved range left
    on a list) as one finding each run; the others as they are."""
    keep = [f for f in found if f.code != "list-node-not-free" or f.address is None]
    groups: dict[tuple, list[Finding]] = {}
    for f in found:
        if f.code == "list-node-not-free" and f.address is not None:
            ev = dict(f.evidence)
            groups.setdefault((f.slot, ev.get("byte"), ev.get("list")), []).append(f)
    ps = snap.layout.page_size
    for (slot, byte, k), fs in groups.items():
        fs.sort(key=lambda f: f.address or 0)      # all have one (grouped above)
        i = 0
        while i < len(fs):
            j = i + 1
            while j < len(fs) and fs[j].address == (fs[j - 1].address or 0) + ps:
                j += 1
            if j - i == 1:
                keep.append(fs[i])
            else:
                first, last = fs[i].address, fs[j - 1].address
                status = snap.layout.encoding.table[byte][0].name.lower()
                keep.append(Finding("list-node-not-free", E, slot, first,
                                    f"list {k} of area {slot} holds the {j - i} pages "
                                    f"{first:#x} to {last:#x}, which are {status} (byte "
                                    f"{byte:#04x}); only free blocks of order {k} belong there",
                                    (("node", first), ("byte", byte), ("list", k),
                                     ("count", j - i), ("last", last)),
                                    count=j - i, last=last))
            i = j
    return keep


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
                listed: dict[int, bytearray], live: list[AreaSnapshot]) -> Finding | None:
    where = f"list {k} of area {a.slot}"
    pfn = snap.pfn(node)
    home = next((x for x in live if x.base <= pfn < x.decoded_top), None)
    if home is None:
        return None              # in an area whose state is not trusted
    if home.slot != a.slot:
        listed[home.slot][pfn - home.base] = 1
        return Finding("list-node-wrong-area", E, a.slot, node,
                       f"{where} holds {node:#x}, a page of area {home.slot}",
                       (("node", node), ("area", home.slot)))
    b = a.blocks.free_at(pfn)
    if b is not None:
        listed[a.slot][pfn - a.base] = 1
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
                   (("node", node), ("byte", byte), ("list", k)))


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
    """Free buddies of the same order left unmerged: pairs of order-0 pages
    by masks, higher orders block by block; runs of pairs as one finding."""
    nl = snap.layout.nlists
    top = a.decoded_top
    meta, base = a.metadata, a.base
    runs: dict[int, list[tuple[int, int]]] = {}       # order -> (first pfn, pairs)
    n = len(meta)
    if nl > 1:
        m = int.from_bytes(a.blocks.free_mask0(), "little")
        both = m & (m >> 8)                  # page i and page i + 1 free, order 0
        if both:
            # only pairs whose first pfn is even, and inside the area
            even = int.from_bytes((b"\x00\x01" if base & 1 else b"\x01\x00") * (n // 2 + 1),
                                  "little") & ((1 << (8 * n)) - 1)
            both &= even & ((1 << (8 * max(0, top - 1 - base))) - 1)
            if both:
                runs[0] = [(base + r.start(), (r.end() - r.start() + 1) // 2)
                           for r in _PAIR_RUN.finditer(both.to_bytes(n, "little"))]
    free = a.blocks.free_high
    for pfn, b in free.items():
        k = b & 0x3F
        size = 1 << k
        if k + 1 >= nl or pfn & (2 * size - 1) or pfn + 2 * size > top:
            continue
        other = free.get(pfn + size)
        if other is not None and other & 0x3F == k:
            got = runs.setdefault(k, [])
            if got and got[-1][0] + 2 * size * got[-1][1] == pfn:
                got[-1] = (got[-1][0], got[-1][1] + 1)
            else:
                got.append((pfn, 1))
    out = []
    for k, items in sorted(runs.items()):
        size = 1 << k
        for pfn, count in items:
            b, other = meta[pfn - base], meta[pfn + size - base]
            if count == 1:
                out.append(Finding("unmerged-buddies", E, a.slot, snap.virt(pfn),
                                   f"free buddies of order {k} at pfns {pfn:#x} (byte {b:#04x}) "
                                   f"and {pfn + size:#x} (byte {other:#04x}) were not merged into "
                                   f"one block of order {k + 1}",
                                   (("pfn", pfn), ("buddy", pfn + size))))
            else:
                last = pfn + 2 * size * (count - 1)
                out.append(Finding("unmerged-buddies", E, a.slot, snap.virt(pfn),
                                   f"{count} pairs of free buddies of order {k} from pfn {pfn:#x} "
                                   f"to {last + 2 * size - 1:#x}, none merged into a block of "
                                   f"order {k + 1}",
                                   (("pfn", pfn), ("buddy", pfn + size), ("count", count),
                                    ("last_pfn", last)), count=count, last=snap.virt(last)))
    return out


# a run of pair starts two pages apart in a mask: 01 00 01 00 01
_PAIR_RUN = re.compile(b"\x01(?:\x00\x01)*")
