"""Questions about one page of a snapshot: which area, which block, which
list and where on it, and its buddy."""

from __future__ import annotations

from .pages import block_at
from .snapshot import Snapshot

__all__ = ["describe_page"]


def describe_page(snap: Snapshot, addr: int) -> dict:
    """A JSON-ready description of the page holding guest address addr."""
    pfn = snap.pfn(addr)
    info: dict = {"address": addr, "pfn": pfn, "area": None}
    a = snap.area_of(addr)
    if a is None:
        return info
    enc = snap.layout.encoding
    byte = a.metadata[pfn - a.base]
    info.update(slot=a.slot, area=a.name, byte=byte, block=None)
    hit = block_at(a.metadata, a.base, pfn, enc)
    if hit is None:
        return info
    start, b = hit
    status, order = enc.table[b]
    node = snap.virt(start)
    info.update(block=node, order=order, pages=1 << order, status=status.name.lower(),
                byte=b, list=None)
    for k, w in enumerate(a.freelists):
        if node in w.nodes:
            info.update(list=k, position=w.nodes.index(node), list_len=len(w.nodes))
            break
    size = 1 << order
    buddy = start + size if not start & (2 * size - 1) else start - size
    if a.base <= buddy and buddy + size <= a.top:
        bhit = block_at(a.metadata, a.base, buddy, enc)
        info["buddy"] = snap.virt(buddy)
        if bhit is None:
            info["buddy_state"] = "inconsistent metadata"
        else:
            bst, bord = enc.table[bhit[1]]
            whole = bhit[0] == buddy and bord == order
            info["buddy_state"] = (f"{bst.name.lower()}, order {bord}" +
                                   ("" if whole else f", part of block {snap.virt(bhit[0]):#x}"))
    else:
        info["buddy"] = None
        info["buddy_state"] = "outside the area"
    return info
