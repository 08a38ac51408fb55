"""Which byte encoding an allocator state is in (ALLOCATOR.md, "On-memory
formats"), from evidence that one corrupted byte or one broken list cannot
outweigh.

The two encodings agree on 0x00|order (free, or 2021 FRESH) and read every
2020 byte as valid 2021. They part on:

- bytes only 2021 has: 0xc0 (SPECIAL) and 0x80|order above 0 (ALLOCATED),
  invalid in 2020: counted as the valid 2021 blocks they form;
- 0x40|order: FREE in 2021 (so the block's first words are list links:
  list heads or first pages of free blocks) and ALLOCATED in 2020 (its
  first words are whatever the owner wrote; the allocator zeroes a block
  it hands out and clears the links of a node it removes). A sample of such
  blocks is read and each votes by its first words, and the vote is
  scaled to all of them.

Evidence is counted in blocks, never weighted by block size, and list
walks take no part, so a cut list cannot flip the decision. Without
evidence the program's struct layout decides (max_order: 2021); weak
evidence does not overrule it, and mixed or contradicting evidence becomes
a `format-uncertain` finding naming both sides.
"""

from __future__ import annotations

import re

from .findings import Finding, Severity
from .layout import Layout, Status

__all__ = ["choose_format", "SAMPLE"]

SAMPLE = 64                     # 0x40 blocks whose first words are read
_FREE_2021 = re.compile(b"[\x40-\x7f]")


def choose_format(layout: Layout, metas: dict, by_slot: dict, scanned: dict, nodes, heads,
                  phys_offset: int) -> tuple[str, str, Finding | None]:
    """(format, reason, finding or None). `scanned` has each slot's BlockMap
    in both encodings; `nodes` reads list nodes (see snapshot._Nodes)."""
    prior = layout.format
    struct_says = (f"the program suggests {prior} (struct mem_area "
                   f"{'with' if layout.struct.max_order_off is not None else 'without'} max_order)")
    only21 = _blocks_only_2021(scanned["2021"])
    n40 = sum(bm.blocks[Status.FREE] for bm in scanned["2021"].values())
    linked, unlinked = _sample_0x40(layout, metas, by_slot, scanned["2021"], nodes, heads,
                                    phys_offset)
    sampled = linked + unlinked
    s21 = only21 + (n40 * linked / sampled if sampled else 0)
    s20 = n40 * unlinked / sampled if sampled else 0
    said = _evidence_text(only21, n40, linked, sampled)
    if s21 == 0 and s20 == 0:
        return prior, f"no telling bytes yet; {struct_says}", None
    best = "2021" if s21 > s20 else "2020" if s20 > s21 else prior
    win, lose = max(s21, s20), min(s21, s20)
    if best != prior and win < 2:
        # one block against the program: likelier a corrupted byte
        return prior, f"{struct_says}; {said}", _doubt(prior, said, struct_says, layout)
    doubt = None
    if lose and win < 4 * lose:
        doubt = _doubt(best, said, struct_says, layout)
    elif best != prior:
        doubt = Finding("format-uncertain", Severity.INFO, None, None,
                        f"the metadata bytes say {best} ({said}) but {struct_says}: decoded as "
                        f"{best} (a tree between the layout and the encoding commits?); "
                        f"--format forces it")
    return best, said, doubt


def _doubt(chosen: str, said: str, struct_says: str, layout: Layout) -> Finding:
    return Finding("format-uncertain", Severity.WARNING, None, None,
                   f"the byte encoding is unclear ({said}; {struct_says}): decoded as {chosen}; "
                   f"--format 2020|2021 forces one")


def _evidence_text(only21: int, n40: int, linked: int, sampled: int) -> str:
    parts = []
    if only21:
        parts.append(f"{only21} block(s) in bytes only 2021 has (0xc0, 0x80|order)")
    if n40:
        parts.append(f"{n40} block(s) carry 0x40|order and {linked} of {sampled} read hold list "
                     f"links (2021 FREE does, 2020 allocated does not)")
    return "; ".join(parts) or "no telling bytes"


def _blocks_only_2021(bms: dict) -> int:
    """Valid 2021 blocks whose bytes 2020 calls invalid: SPECIAL pages
    (0xc0) and ALLOCATED blocks of order 1 and above (0x80|order)."""
    n = 0
    for bm in bms.values():
        broken: dict[int, int] = {}
        for d in bm.defects:
            if d.kind in ("block-misaligned", "block-outside-area", "block-inconsistent"):
                broken[d.byte] = broken.get(d.byte, 0) + d.npages
        for b, pages in bm.byte_pages.items():
            if b == 0xC0:
                n += pages
            elif 0x81 <= b <= 0xBF:
                n += max(0, pages - broken.get(b, 0)) >> (b & 0x3F)
    return n


def _sample_0x40(layout: Layout, metas: dict, by_slot: dict, bms: dict, nodes, heads,
                 phys_offset: int) -> tuple[int, int]:
    """(linked, unlinked) among up to SAMPLE blocks of 0x40|order, spread
    evenly over the areas."""
    shift = layout.page_shift
    total = sum(len(m) for m in metas.values()) or 1
    starts: list[int] = []
    for slot, meta in metas.items():
        base, bm, n = by_slot[slot].base, bms[slot], len(meta)
        want = max(1, SAMPLE * n // total)
        seen: set[int] = set()
        for j in range(want):
            m = _FREE_2021.search(meta, j * n // want)
            if m is None:
                break
            i = m.start()
            b = meta[i]
            order = b & 0x3F
            start = (base + i) & ~((1 << order) - 1)
            if start in seen or start < base:
                continue
            if order and bm.free_high.get(start) != b:
                continue                    # not a valid block of that byte
            seen.add(start)
            starts.append((start << shift) + phys_offset)
    if not starts:
        return 0, 0
    nodes.prefetch(starts)
    linked = unlinked = 0
    for addr in starts:
        got = nodes.node_at(addr)
        if not isinstance(got, tuple) or len(got) != 2:
            continue
        if all(_link(p, layout, metas, by_slot, heads, phys_offset) for p in got):
            linked += 1
        else:
            unlinked += 1
    return linked, unlinked


def _link(p: int, layout: Layout, metas: dict, by_slot: dict, heads, phys_offset: int) -> bool:
    """Whether pointer p can be a free-list link: a list head, or the first
    page of a block whose byte is free in 2021."""
    if p in heads:
        return True
    if (p - phys_offset) & (layout.page_size - 1):
        return False
    pfn = (p - phys_offset) >> layout.page_shift
    for slot, meta in metas.items():
        i = pfn - by_slot[slot].base
        if 0 <= i < len(meta):
            b = meta[i]
            return b & 0x80 == 0 and (b & 0x3F) < layout.nlists
    return False
