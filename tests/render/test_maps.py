"""The terminal map (render.map_view) and the SVG map (render.map_svg,
map_html): drawn from allocview.picture, so minorities, tones, findings,
labels and zoom show in both."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from allocview import render
from allocview.model.check import check
from allocview.model.constants import FLAG_DONTZERO
from allocview.model.inject import inject, scenario
from allocview.model.layout import layout_for

from .helpers import GiB_PAGES, one_area, snap_of

SVG = "{http://www.w3.org/2000/svg}"


def map_rows(text: str) -> dict[int, str]:
    """{row address: cells} of a plain-text map."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"(0x[0-9a-f]+) (.*?)(?: [EWi]\d+)?$", line)
        if m:
            rows[int(m.group(1), 16)] = m.group(2)
    return rows


def test_terminal_map_shows_one_allocated_page_of_a_gib_and_labels_rows_by_address():
    al = one_area(GiB_PAGES)
    page = al.alloc_pages_flags(0, FLAG_DONTZERO)
    snap = snap_of(al)
    text = render.to_text(render.map_view(snap, 1, 80, 8))
    head, scale = text.splitlines()[:2]
    assert head == "area 1 HIGH  [0x100040000, 0x140000000)  1024 MiB"
    assert scale == "one cell = 2 MiB (512 pages), one row = 128 MiB"
    rows = map_rows(text)
    assert len(rows) == 8 and all(len(r) == 64 for r in rows.values())
    assert sorted(rows) == [0x100000000 + k * (128 << 20) for k in range(8)]
    marks = [(addr + i * (2 << 20), ch) for addr, r in rows.items() for i, ch in enumerate(r)
             if ch in "#xSs!"]
    assert marks == [(page - page % (2 << 20), "x")]          # one page of 262,144 shows
    assert "legend:" in text and "x some allocated" in text


def test_terminal_map_zooms_to_single_pages_with_from_and_to():
    al = one_area(4096)
    ptr = al.alloc_pages_flags(2, FLAG_DONTZERO)
    snap = snap_of(al)
    text = render.to_text(render.map_view(snap, None, 80, 8, from_addr=ptr - 2 * 4096,
                                          to_addr=ptr + 6 * 4096))
    assert "one cell = 4 KiB (1 page)" in text
    row_addr, cells = next(iter(map_rows(text).items()))
    start = (ptr - 2 * 4096 - row_addr) // 4096
    assert cells[start + 2:start + 6] == "####"              # the 4 allocated pages
    assert " " not in cells[start:start + 8] and cells[:start].strip() == ""
    assert cells[start + 8:].strip() == ""
    assert render.to_text(render.map_view(snap, None, 80, 8, from_addr=1 << 50)).startswith(
        "no decoded page in that area or range")


def test_terminal_map_marks_findings_in_the_gutter_and_lists_them():
    al = scenario(layout_for("x86_64", "2021"))
    inject(al, "unmerged-buddies")
    snap = snap_of(al)
    found = check(snap)
    f = next(x for x in found if x.code == "unmerged-buddies")
    text = render.to_text(render.map_view(snap, f.slot, 100, 8, findings=found))
    flagged = [ln for ln in text.splitlines() if re.search(r" E\d+$", ln)]
    assert len(flagged) == 1
    row = int(flagged[0].split()[0], 16)
    assert row <= f.address < row + 64 * 2 * 4096 * 2      # within the row's span
    assert f"E unmerged-buddies: 1 finding in 1 cell, first at {f.address:#x}" in text
    assert render.to_text(render.map_view(snap, f.slot, 100, 8, findings=[])).count(" E1") == 0
    # the checker runs when no findings are given (gdb's and the CLI's map)
    assert render.to_text(render.map_view(snap, f.slot, 100, 8)) == text


def test_svg_map_has_labels_stripes_hover_text_and_finding_dots():
    al = scenario(layout_for("x86_64", "2021"))
    inject(al, "unmerged-buddies")
    snap = snap_of(al)
    found = check(snap)
    f = next(x for x in found if x.code == "unmerged-buddies")
    svg = render.map_svg(snap, f.slot, findings=found)
    root = ET.fromstring(svg)                                 # well formed
    texts = [t.text for t in root.iter(SVG + "text")]
    assert any(t.startswith(f"area {f.slot} ") and "one cell = 4 KiB (1 page)" in t for t in texts)
    assert "+0" in texts and any(re.fullmatch(r"0x[0-9a-f]+", t or "") for t in texts)
    cells = [g for g in root.iter(SVG + "g")]
    titles = {g.find(SVG + "title").text.splitlines()[0]: g for g in cells}
    page = f"[{f.address:#x}, {f.address + 4096:#x}) 1 page, 4 KiB"
    g = titles[page]
    assert g.find(SVG + "circle") is not None                 # the finding's dot
    assert "error unmerged-buddies" in g.find(SVG + "title").text
    assert sum(1 for g in cells if g.find(SVG + "circle") is not None) == 1
    html = render.map_html(snap, svg)
    assert html.startswith("<!doctype html>") and svg in html


def test_svg_map_minority_stripe_and_zoom():
    al = one_area(GiB_PAGES)
    page = al.alloc_pages_flags(0, FLAG_DONTZERO)
    snap = snap_of(al)
    root = ET.fromstring(render.map_svg(snap, 1, cols=64, rows=4))   # 1024 pages a cell
    striped = [g for g in root.iter(SVG + "g") if len(g.findall(SVG + "rect")) == 2]
    assert len(striped) == 1
    assert "allocated 1" in striped[0].find(SVG + "title").text
    zoomed = ET.fromstring(render.map_svg(snap, 1, from_addr=page, to_addr=page + 3 * 4096))
    tips = [g.find(SVG + "title").text for g in zoomed.iter(SVG + "g")]
    assert len(tips) == 3 and all(" 1 page, 4 KiB" in t.splitlines()[0] for t in tips)
    assert f"largest allocated block {page:#x} order 0" in tips[0]
