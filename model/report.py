"""The JSON report: one document for `alloc report --json` and
`allocview report --json` alike (schema in README.md)."""

from __future__ import annotations

from .findings import Finding
from .layout import Status
from .snapshot import Snapshot
from .stats import area_stats

__all__ = ["report", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


def report(snap: Snapshot, findings: list[Finding], placement=None) -> dict:
    """The document; `placement` (model.placement.Placement) says where the
    program was found, when it was looked for."""
    areas = []
    for a in snap.areas:
        doc = {"slot": a.slot, "name": a.name, "base_pfn": a.base, "top_pfn": a.top,
               "page_states": a.page_states, "max_order": a.max_order,
               "initialised": a.initialised}
        if a.decoded:
            p = a.blocks.pages
            pages = {"fresh": p[Status.FRESH], "free": p[Status.FREE],
                     "allocated": p[Status.ALLOCATED], "special": p[Status.SPECIAL]}
            if p[Status.INVALID]:
                pages["invalid"] = p[Status.INVALID]
            doc["pages"] = pages
            shift, off = snap.layout.page_shift, snap.phys_offset
            doc["free_blocks"] = {str(k): [(pfn << shift) + off for pfn in v]
                                  for k, v in sorted(a.blocks.free_by_order().items())}
            doc["freelists"] = {str(k): list(w.nodes) for k, w in enumerate(a.freelists) if w.nodes}
            st = area_stats(a)
            doc["largest_order"] = st.largest_order
            doc["fragmentation"] = round(st.fragmentation, 4)
        areas.append(doc)
    return {
        "schema": SCHEMA_VERSION,
        "format": snap.layout.format,
        "format_reason": snap.format_reason,
        "arch": snap.layout.arch.name,
        "page_size": snap.layout.page_size,
        "areas_addr": snap.areas_addr,
        "areas_mask": snap.areas_mask,
        "areas": areas,
        "findings": [f.to_json() for f in findings],
        **({"program": placement.to_json()} if placement is not None else {}),
    }
