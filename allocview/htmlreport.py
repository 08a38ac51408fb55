"""The HTML report: one self-contained page (inline CSS, script and data;
nothing fetched) that a CI can archive and a person can explore.

    html = report_html(snapshot, findings, stats, whys, placement=None)

Per area: the map (allocview.picture's overview cells, drawn as SVG by the
page's script, which lays them out for the window's width), findings
marked on it and listed beside it by code, each a link to its place; an
address axis and row labels; hover text; zoom down to single pages; the
free blocks per order. Then the areas table and, per order, whether an
allocation would succeed now and why.

Zoom works from the area's metadata bytes, embedded zlib-compressed
(the browser's DecompressionStream inflates them): a fragmented 16 GiB
area is tens of KiB. The script aggregates pages into cells by the rules
of allocview.picture (tests/render compare the two cell by cell); an area
whose compressed bytes would pass META_BUDGET is drawn without zoom.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from html import escape
from importlib import resources

from allocview.model.findings import CODES, Finding, Severity
from allocview.model.snapshot import Snapshot
from allocview.model.stats import AreaStats, Why

from .mapdraw import CLASS_FILL, TONE_FILL
from .picture import TONES, Picture, class_tables, human_size, picture, tone, tone_label

__all__ = ["report_html", "state_page", "META_BUDGET", "OVERVIEW_CELLS", "LISTED"]

OVERVIEW_CELLS = 8192          # cells of an area's first picture (128 x 64)
META_BUDGET = 2 << 20          # compressed metadata bytes embedded (base64: 4/3 of it)
LISTED = 50                    # findings per code written into the page; the rest on demand
EMBEDDED = 20_000              # findings in the page at most (the most severe first)


def report_html(snapshot: Snapshot, findings: list[Finding], stats: list[AreaStats],
                whys, placement=None) -> str:
    """The page, as a string.

    snapshot: model.snapshot.Snapshot; findings: model.check.check(snapshot);
    stats: model.stats.stats(snapshot); whys: {order: model.stats.Why} (or a
    list indexed by order), from why(snapshot, order, None, 0) for each
    order to show, typically range(snapshot.layout.nlists); placement:
    model.placement.Placement, where the program was found, or None.
    """
    snap = snapshot
    whys = dict(enumerate(whys)) if isinstance(whys, (list, tuple)) else dict(whys)
    # A broken guest can have a finding per page: the page keeps the first
    # EMBEDDED (check() sorts the most severe first) and counts the rest.
    shown = findings[:EMBEDDED]
    index = {id(f): i for i, f in enumerate(shown)}
    pics = {a.slot: picture(snap, a, shown, cols=128, max_cells=OVERVIEW_CELLS)
            for a in snap.areas if a.decoded}
    data = _data(snap, shown, pics, index)
    by_slot = {s.slot: s for s in stats}
    body = [_header(snap, findings, placement, len(findings) - len(shown)),
            _areas_section(snap, stats)]
    for a in snap.areas:
        if a.decoded and pics.get(a.slot) is not None:
            body.append(_area_section(snap, a, shown, index, by_slot.get(a.slot)))
    body.append(_why_section(snap, whys))
    body.append(_global_findings(shown, index))
    title = f"allocview report: {snap.layout.arch.name}, format {snap.layout.format}"
    return ("<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
            "<meta name=viewport content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>\n{_palette_css()}{_asset('report.css')}"
            "</style>\n</head>\n<body>\n" + "\n".join(body) +
            "\n<div id=tip role=tooltip hidden></div>\n"
            f"<script type=\"application/json\" id=allocview-data>{_json(data)}</script>\n"
            f"<script>\n{_asset('report.js')}</script>\n</body>\n</html>\n")


def state_page(snapshot: Snapshot, findings: list[Finding], placement=None) -> str:
    """report_html with the statistics and every order's `why` computed here:
    the page `report --html` and allocview-qemu write."""
    from allocview.model.stats import stats, why
    whys = {k: why(snapshot, k, None, 0) for k in range(snapshot.layout.nlists)}
    return report_html(snapshot, findings, stats(snapshot), whys, placement)


def _asset(name: str) -> str:
    return resources.files("allocview").joinpath("assets", name).read_text()


def _json(obj) -> str:
    """JSON safe inside <script>: no "<" can close the element."""
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c")


def _palette_css() -> str:
    """The map's light palette as CSS variables (the dark one is in
    report.css): one source for the SVG map and the page."""
    tones = "".join(f"--t{k}:{c};" for k, c in enumerate(TONE_FILL))
    classes = "".join(f"--{n}:{CLASS_FILL[k]};" for k, n in ((1, "allocated"), (2, "special"),
                                                              (3, "invalid")))
    return f":root{{{tones}{classes}}}\n"


# -------------------------------------------------------------------- data
def _data(snap: Snapshot, findings: list[Finding], pics: dict, index: dict) -> dict:
    status_t, free_t, alloc_t = class_tables(snap.layout.encoding)
    areas, budget = [], META_BUDGET
    for a in snap.areas:
        pic = pics.get(a.slot)
        if pic is None:
            continue
        packed = zlib.compress(a.metadata, 6)
        meta = None
        if len(packed) <= budget:
            budget -= len(packed)
            meta = base64.b64encode(packed).decode()
        areas.append({"slot": a.slot, "name": a.name, "base": a.base, "top": a.top,
                      "end": a.decoded_top, "meta": meta,
                      "overview": _picture_json(pic, index)})
    shift = snap.layout.page_shift
    return {
        "page_shift": shift, "phys_offset": hex(snap.phys_offset),
        "tables": [list(status_t), list(free_t), list(alloc_t)],
        "tones": [[lo, -1 if hi is None else hi] for lo, hi in TONES],
        "findings": [_finding_json(snap, f) for f in findings],
        "areas": areas,
    }


def _finding_json(snap: Snapshot, f: Finding) -> list:
    """[code, severity, slot, address, first pfn, last pfn, count, message]."""
    pfn = None if f.address is None else snap.pfn(f.address)
    last = pfn if f.last is None or f.count <= 1 else snap.pfn(f.last)
    return [f.code, str(f.severity), f.slot, None if f.address is None else hex(f.address), pfn,
            last, f.count, f.message]


def _picture_json(pic: Picture, index: dict) -> dict:
    """The picture with its cells run-length coded: [[repeat, cell], ...];
    a cell is [pages, counts, free order, offset, alloc order, offset,
    findings] (-1: none). The offset of a block is where it starts in the
    cell, 0 when it starts before: cells inside one large block are alike."""
    runs: list[list] = []
    last = None
    for c in pic.cells:
        cell = [c.pages, list(c.counts),
                -1 if c.free_order is None else c.free_order,
                0 if c.free_block is None else max(0, c.free_block - c.pfn),
                -1 if c.alloc_order is None else c.alloc_order,
                0 if c.alloc_block is None else max(0, c.alloc_block - c.pfn),
                [[index[id(pic.findings[i])], k] for i, k in c.findings]]
        if cell == last:
            runs[-1][0] += 1
        else:
            runs.append([1, cell])
            last = cell
    return {"first": pic.first, "end": pic.end, "n": pic.cell_pages, "origin": pic.origin,
            "cols": pic.cols, "rows": pic.rows, "cells": runs}


# -------------------------------------------------------------------- page
def _header(snap: Snapshot, findings: list[Finding], placement, left_out: int) -> str:
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    if findings:
        verdict = ", ".join(f"<span class=\"sev {s}\">{counts[s]} {s}"
                            f"{'s' if counts[s] != 1 else ''}</span>"
                            for s in sorted(Severity, reverse=True) if counts[s])
    else:
        verdict = "<span class=\"sev ok\">no findings</span>"
    if left_out:
        verdict += (f" <span class=warn>(the last {left_out} are not in this page: see the "
                    "JSON report)</span>")
    mask = "unreadable" if snap.areas_mask is None else f"{snap.areas_mask:#x}"
    facts = [f"{snap.layout.arch.name}", f"format {snap.layout.format}"
             + (f" ({escape(snap.format_reason)})" if snap.format_reason else ""),
             f"page size {human_size(snap.layout.page_size)}", f"areas_mask {mask}"]
    if placement is not None:
        facts.append(f"program: {escape(placement.how)}")
    nav = ["<a href=\"#areas\">areas</a>"] + [
        f"<a href=\"#area-{a.slot}\">area {a.slot} {escape(a.name)}</a>"
        for a in snap.areas if a.decoded] + ["<a href=\"#why\">allocation by order</a>"]
    return (f"<header><h1>allocview report</h1><p class=verdict>{verdict}</p>"
            f"<p class=facts>{' · '.join(facts)}</p><nav>{' '.join(nav)}</nav></header>")


def _areas_section(snap: Snapshot, stats: list[AreaStats]) -> str:
    by_slot = {s.slot: s for s in stats}
    ps = snap.layout.page_size
    head = ("slot", "name", "pfns", "size", "page_states", "max_order", "fresh", "free",
            "allocated", "special", "largest", "fragmentation")
    rows = []
    for a in snap.areas:
        s = by_slot.get(a.slot)
        mo = "-" if a.max_order is None else str(a.max_order)
        cells = [str(a.slot), f"<a href=\"#area-{a.slot}\">{escape(a.name)}</a>"
                 if s else escape(a.name), f"[{a.base:#x}, {a.top:#x})"]
        if s is None:
            why = "not decoded" if a.initialised else "not in areas_mask"
            cells += ["", f"{a.page_states:#x}", mo, f"<td colspan=6 class=warn>{why}"]
            rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}"
                                         for c in cells))
            continue
        largest = "-" if s.largest_order is None else \
            f"{human_size(s.largest_pages * ps)} (order {s.largest_order})"
        cells += [human_size(a.pages * ps), f"{a.page_states:#x}", mo, str(s.fresh),
                  str(s.free), str(s.allocated), str(s.special), largest,
                  f"{s.fragmentation:.2f}"]
        rows.append("<tr>" + "".join(f"<td>{c}" for c in cells))
    return ("<section id=areas><h2>Areas</h2><div class=scroll><table class=num>"
            f"<thead><tr>{''.join(f'<th>{h}' for h in head)}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


def _area_section(snap: Snapshot, a, findings: list[Finding], index: dict,
                  st: AreaStats | None) -> str:
    ps = snap.layout.page_size
    title = (f"Area {a.slot} {escape(a.name)} <small>[{snap.virt(a.base):#x}, "
             f"{snap.virt(a.decoded_top):#x}) {human_size(a.pages * ps)}</small>")
    mine = [f for f in findings if f.slot == a.slot]
    return (f"<section class=area id=area-{a.slot} data-slot={a.slot}><h2>{title}</h2>"
            "<div class=area-body><div class=map-pane>"
            "<div class=toolbar><span class=crumbs></span>"
            "<button type=button class=out disabled>zoom out</button>"
            "<form class=range><label>from <input name=from size=14 placeholder=0x...></label> "
            "<label>to <input name=to size=14 placeholder=0x...></label> "
            "<button>zoom</button></form></div>"
            "<p class=scale></p><div class=map role=img "
            f"aria-label=\"map of area {a.slot}\"></div>{_legend(ps)}</div>"
            f"{_findings_aside(snap, a, mine, index)}</div>"
            f"{_histogram(st, ps) if st else ''}</section>")


def _legend(page_size: int) -> str:
    tones = "".join(f"<li><i class=\"sw t{k}\"></i>{tone_label(k, page_size)}"
                    for k in range(len(TONES)))
    return ("<div class=legend><span>free, by its largest block:</span><ul>" + tones +
            "</ul><ul><li><i class=\"sw allocated\"></i>allocated"
            "<li><i class=\"sw special\"></i>special (reserved)"
            "<li><i class=\"sw invalid\"></i>invalid byte"
            "<li><i class=\"sw t5 stripe\"></i>bottom stripe: a minority (any page)"
            "<li><i class=\"sw dot\"></i>finding</ul>"
            "<p class=hint>Hover a cell for its pages; click to zoom in (Esc: out).</p></div>")


def _finding_item(f: Finding, i: int) -> str:
    where = "" if f.address is None else f"{f.address:#x}"
    if f.count > 1 and f.last is not None:
        where += f"..{f.last:#x} ({f.count})"
    link = f"<a href=\"#\" class=flink data-f={i}>{where or 'here'}</a>"
    return f"<li>{link} {escape(f.message)}"


def _findings_aside(snap: Snapshot, a, mine: list[Finding], index: dict) -> str:
    if not mine:
        return "<aside class=findings><h3>Findings</h3><p class=\"sev ok\">none</p></aside>"
    groups: dict[str, list[Finding]] = {}
    for f in mine:
        groups.setdefault(f.code, []).append(f)
    out = [f"<aside class=findings><h3>Findings ({len(mine)})</h3>"]
    for code, fs in groups.items():
        sev = max(f.severity for f in fs)
        breaches = sum(f.count for f in fs)
        more = len(fs) - LISTED
        ids = ",".join(str(index[id(f)]) for f in fs[LISTED:])
        out.append(f"<details open data-code=\"{escape(code)}\"><summary><span class=\"sev "
                   f"{sev}\">{sev}</span> <b>{escape(code)}</b> {len(fs)}"
                   + (f" ({breaches} breaches)" if breaches > len(fs) else "") +
                   f"<span class=explain>{escape(CODES.get(code, ''))}</span></summary><ol>"
                   + "".join(_finding_item(f, index[id(f)]) for f in fs[:LISTED]) + "</ol>"
                   + (f"<button type=button class=more data-ids=\"{ids}\">show {more} more"
                      "</button>" if more > 0 else "") + "</details>")
    out.append("</aside>")
    return "".join(out)


def _histogram(st: AreaStats, page_size: int) -> str:
    if not st.free_blocks:
        return "<h3>Free blocks by order</h3><p>no free block</p>"
    rows = []
    most = max(st.free_blocks.values())
    for k in sorted(st.free_blocks):
        n = st.free_blocks[k]
        pages = n << k
        share = pages / st.free_pages if st.free_pages else 0
        rows.append(f"<tr><td>{k}<td>{human_size(page_size << k)}<td>{n}"
                    f"<td><i class=\"bar t{tone(k)}\" style=\"width:{100 * n / most:.1f}%\">"
                    f"</i><td>{pages}<td><i class=\"bar t{tone(k)}\" style=\"width:"
                    f"{100 * share:.1f}%\"></i> {share:.0%}")
    return (f"<h3>Free blocks by order</h3><p>{st.free_pages} free of {st.pages} pages, largest "
            f"{human_size(st.largest_pages * page_size)}, fragmentation "
            f"{st.fragmentation:.2f}</p><div class=scroll><table class=\"num hist\"><thead><tr>"
            "<th>order<th>block size<th>free blocks<th class=barcol><th>free pages"
            f"<th class=barcol>share</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _why_section(snap: Snapshot, whys: dict[int, Why]) -> str:
    ps = snap.layout.page_size
    rows = []
    for group in _why_groups(whys):
        k0, k1, w = group[0], group[-1], whys[group[0]]
        orders = str(k0) if k0 == k1 else f"{k0}-{k1}"
        size = human_size(ps << k0) if k0 == k1 else f"{human_size(ps << k0)} and up" \
            if k1 == max(whys) else f"{human_size(ps << k0)}-{human_size(ps << k1)}"
        if w.ok:
            answer = "<span class=\"sev ok\">yes</span>"
            source = (f"area {w.slot}: block {w.block:#x} (order {w.block_order}) -> "
                      f"{w.result:#x}")
        else:
            answer = "<span class=\"sev error\">no</span>"
            source = "alloc would return NULL"
        reasons = "<br>".join(escape(r) for r in w.reasons)
        if k0 != k1:
            reasons = f"(as for order {k0}) " + reasons
        rows.append(f"<tr id=why-{k0}><td>{orders}<td>{size}<td>{answer}<td>{source}"
                    f"<td class=reasons>{reasons}")
    return ("<section id=why><h2>Would an allocation succeed now?</h2>"
            "<p>alloc of each order, no alignment beyond it, no flags: what the design "
            "would do from this state.</p><div class=scroll><table><thead><tr><th>order"
            "<th>size<th>answer<th>from<th>why</thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


_NUMBER = re.compile(r"\d+")


def _why_groups(whys: dict[int, Why]) -> list[list[int]]:
    """Consecutive orders that fail for the same reason (numbers aside) in
    one row; every success in its own."""
    groups: list[list[int]] = []
    key_of = {}
    for k in sorted(whys):
        w = whys[k]
        key = None if w.ok else tuple(_NUMBER.sub("#", r) for r in w.reasons)
        if groups and key is not None and key_of.get(groups[-1][-1]) == key \
                and groups[-1][-1] == k - 1:
            groups[-1].append(k)
        else:
            groups.append([k])
        key_of[k] = key
    return groups


def _global_findings(findings: list[Finding], index: dict) -> str:
    rest = [f for f in findings if f.slot is None]
    if not rest:
        return ""
    items = "".join(f"<li><span class=\"sev {f.severity}\">{f.severity}</span> "
                    f"<b>{escape(f.code)}</b> {'' if f.address is None else f'{f.address:#x} '}"
                    f"{escape(f.message)}" for f in rest)
    return f"<section id=global><h2>Findings of no area</h2><ul>{items}</ul></section>"
