"""The HTML report (allocview.htmlreport.report_html) of the fixture guest
at its fragmented checkpoint, healthy and the no-merge defect build, opened
in a real headless Chromium."""

from __future__ import annotations

import re

import pytest

from allocview.htmlreport import report_html
from allocview.picture import CLASSES, FREE, describe, picture
from allocview.model.report import report
from allocview.model.stats import stats

HEALTHY, NOMERGE = "x86_64-2021", "x86_64-2021-nomerge"


@pytest.fixture(scope="session")
def pages(states_at_2, tmp_path_factory):
    """{variant: (html path, the JSON report of the same state)}."""
    out = tmp_path_factory.mktemp("html")
    got = {}
    for v, st in states_at_2.items():
        html = report_html(st.snapshot, st.findings, stats(st.snapshot), st.whys(), st.placement)
        path = out / f"{v}.html"
        path.write_text(html)
        got[v] = (path, report(st.snapshot, st.findings, st.placement))
    return got


def cell_class(cell) -> str:
    return f"free t{cell.tone}" if cell.main == FREE else CLASSES[cell.main]


def on_pages(doc: dict, f: dict) -> bool:
    """Whether a finding of the JSON report lies on its area's pages."""
    area = next((a for a in doc["areas"] if a["slot"] == f["slot"]), None)
    if area is None or f["address"] is None:
        return False
    pfn = f["address"] >> 12
    return area["base_pfn"] <= pfn < area["top_pfn"]


@pytest.mark.parametrize("variant", [HEALTHY, NOMERGE])
def test_the_page_renders_without_errors_or_network_and_draws_every_area(pages, load, variant):
    path, doc = pages[variant]
    text = path.read_text()
    assert "<link" not in text and not re.search(r"""(src|href)=["']?https?:""", text)
    p = load(path)
    assert p.errors == [] and p.requests == []
    for a in doc["areas"]:
        if "pages" not in a:
            continue
        sel = f"#area-{a['slot']} .map svg rect.c"
        assert p.page.locator(sel).count() > 100, sel
        assert p.page.locator(f"#area-{a['slot']} .hist tbody tr").count() == \
            len(a["free_blocks"])
    assert p.page.locator("#areas tbody tr").count() == len(doc["areas"])
    assert p.page.locator("#why tbody tr").count() >= 2
    assert "yes" in p.page.locator("#why-0").inner_text()


def test_findings_are_on_the_map_where_the_json_report_puts_them(pages, load):
    path, doc = pages[NOMERGE]
    p = load(path)
    dots = p.page.eval_on_selector_all(
        "circle.fd", "els => els.map(e => [e.closest('section').dataset.slot, e.dataset.pfn,"
        " e.dataset.n, e.dataset.f, e.getAttribute('cx'), e.getAttribute('cy')])")
    assert dots
    where: dict[int, list] = {}
    for slot, pfn, n, ids, cx, cy in dots:
        for i in ids.split(","):
            where.setdefault(int(i), []).append((int(slot), int(pfn), int(n), float(cx),
                                                 float(cy)))
    placed = [i for i, f in enumerate(doc["findings"]) if on_pages(doc, f)]
    assert len(placed) > 100 and set(where) == set(placed)
    for i in placed:
        f = doc["findings"][i]
        pfn = f["address"] >> 12
        hits = [w for w in where[i] if w[0] == f["slot"] and w[1] <= pfn < w[1] + w[2]]
        assert len(hits) == 1, (f, where[i])
        # the dot sits on the cell of that pfn
        slot, cell, _, cx, cy = hits[0]
        box = p.page.eval_on_selector(
            f"#area-{slot} rect.c[data-pfn='{cell}']",
            "e => [+e.getAttribute('x'), +e.getAttribute('y'), +e.getAttribute('width')]")
        assert box[0] < cx < box[0] + box[2] and box[1] < cy < box[1] + box[2]
    # each finding is listed beside its map, grouped by code
    assert p.page.locator("#area-2 details[data-code='unmerged-buddies'] a.flink").count() >= 50


def test_the_healthy_map_has_no_finding_marks(pages, load):
    p = load(pages[HEALTHY][0])
    assert p.page.locator("circle.fd").count() == 0
    assert p.page.locator("#area-2 .findings").inner_text().strip().endswith("none")


def test_hover_names_a_known_blocks_address_and_order(pages, load):
    path, doc = pages[HEALTHY]
    area = next(a for a in doc["areas"] if a["slot"] == 2)
    order = max(int(k) for k in area["free_blocks"])
    block = area["free_blocks"][str(order)][0]
    p = load(path)
    n = int(p.page.get_attribute("#area-2 .map", "data-n"))
    assert order >= n.bit_length() - 1            # the block fills its cell
    pfn = block >> 12
    p.page.hover(f"#area-2 rect.c[data-pfn='{pfn - pfn % n}']")
    tip = p.page.locator("#tip")
    assert tip.is_visible()
    assert f"largest free block {block:#x} order {order}" in tip.inner_text()


def test_clicking_zooms_down_to_single_pages_and_a_page_names_its_block(pages, load):
    path, doc = pages[HEALTHY]
    area = next(a for a in doc["areas"] if a["slot"] == 2)
    block = area["free_blocks"]["3"][0]                    # 8 pages
    p = load(path)
    page = p.page
    for _ in range(8):
        n = int(page.get_attribute("#area-2 .map", "data-n"))
        if n == 1:
            break
        cell = (block >> 12) - (block >> 12) % n
        page.click(f"#area-2 rect.c[data-pfn='{cell}']")
        page.wait_for_function(f"document.querySelector('#area-2 .map').dataset.n < {n}")
    assert page.get_attribute("#area-2 .map", "data-n") == "1"
    assert "one cell = 4 KiB (1 page)" in page.inner_text("#area-2 .scale")
    page.hover(f"#area-2 rect.c[data-pfn='{(block >> 12) + 5}']")
    text = page.inner_text("#tip")
    assert text.startswith(f"[{block + 5 * 4096:#x}, {block + 6 * 4096:#x}) 1 page, 4 KiB")
    assert f"largest free block {block:#x} order 3 (32 KiB)" in text
    page.click("#area-2 button.out")
    page.wait_for_function("document.querySelector('#area-2 .map').dataset.n > 1")
    page.click("#area-2 .crumbs a[data-depth='0']")
    assert page.get_attribute("#area-2 .map", "data-depth") == "0"
    assert p.errors == []


def test_a_finding_link_zooms_to_its_page_and_outlines_it(pages, load):
    path, doc = pages[NOMERGE]
    i, f = next((i, f) for i, f in enumerate(doc["findings"]) if on_pages(doc, f))
    p = load(path)
    p.page.click(f"a.flink[data-f='{i}']")
    p.page.wait_for_selector(f"#area-{f['slot']} .map[data-n='1'] .hlbox")
    box = p.page.eval_on_selector(f"#area-{f['slot']} .hlbox", "e => [+e.getAttribute('x'), "
                                  "+e.getAttribute('y'), +e.getAttribute('width')]")
    cell = p.page.eval_on_selector(f"#area-{f['slot']} rect.c[data-pfn='{f['address'] >> 12}']",
                                   "e => [+e.getAttribute('x'), +e.getAttribute('y')]")
    assert box[0] <= cell[0] <= box[0] + box[2] and box[1] <= cell[1] <= box[1] + box[2]
    assert p.errors == []


def test_the_defect_build_draws_a_visibly_different_map(pages, load):
    """No-merge leaves free memory in small blocks: many more cells of the
    two smallest tones, in both areas."""
    small = {}
    for v in (HEALTHY, NOMERGE):
        p = load(pages[v][0])
        small[v] = p.page.locator("rect.c.t0, rect.c.t1").count()
    assert small[NOMERGE] >= 10 * max(small[HEALTHY], 1) and small[NOMERGE] > 300, small


def test_the_page_aggregates_zoomed_cells_exactly_as_the_picture_model(states_at_2, pages, load):
    st = states_at_2[NOMERGE]
    snap = st.snapshot
    p = load(pages[NOMERGE][0])
    index = {id(f): i for i, f in enumerate(st.findings)}
    for a in (x for x in snap.areas if x.decoded):
        # the overview the page drew is the model's
        pic = picture(snap, a, st.findings, cols=128, max_cells=8192)
        drawn = dict(p.page.eval_on_selector_all(
            f"#area-{a.slot} rect.c", "els => els.map(e => [+e.dataset.pfn, "
            "e.getAttribute('class').slice(2)])"))
        assert drawn == {c.pfn: cell_class(c) for c in pic.cells if c.pages}
        # a zoomed range, aggregated by the page's script from the bytes
        f = next(x for x in st.findings if x.slot == a.slot and x.address is not None)
        lo = snap.pfn(f.address) - 700
        want = picture(snap, a, st.findings, from_addr=snap.virt(lo), to_addr=snap.virt(lo + 3000),
                       cols=128, max_cells=4096)
        got = p.page.evaluate(f"allocview.picture({a.slot}, {want.first}, {want.end}, 128, 4096)")
        assert (got["n"], got["origin"], got["rows"]) == (want.cell_pages, want.origin, want.rows)
        assert len(got["cells"]) == len(want.cells)
        for g, c, text, cls in zip(got["cells"], want.cells, got["text"], got["classes"]):
            assert (g["pfn"], g["pages"], tuple(g["counts"])) == (c.pfn, c.pages, c.counts)
            assert (g["fo"], g["fb"], g["ao"], g["ab"]) == tuple(
                -1 if x is None else x for x in (c.free_order, c.free_block, c.alloc_order,
                                                 c.alloc_block))
            assert [tuple(x) for x in g["f"]] == [(index[id(want.findings[i])], k)
                                                  for i, k in c.findings]
            if c.pages:
                assert text == describe(want, c) and cls == cell_class(c)


def test_narrow_windows_and_dark_mode(pages, load):
    p = load(pages[NOMERGE][0], viewport={"width": 360, "height": 740}, color_scheme="dark")
    page = p.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 361
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 19, 24)"
    svg_w = page.evaluate("document.querySelector('#area-2 .map svg').getBoundingClientRect()"
                          ".right")
    assert svg_w <= 360
    light = load(pages[NOMERGE][0], viewport={"width": 1400, "height": 900})
    assert light.page.evaluate("getComputedStyle(document.body).backgroundColor") == \
        "rgb(255, 255, 255)"
    # a wide window gets more columns
    cols = [len(x.page.eval_on_selector_all(
        "#area-3 rect.c", "els => [...new Set(els.map(e => e.getAttribute('x')))]"))
        for x in (p, light)]
    assert cols[0] < cols[1]
    assert p.errors == [] and light.errors == []


def test_a_16_gib_fragmented_state_makes_a_small_page_in_well_under_a_second():
    import sys
    import time
    from pathlib import Path

    from allocview.model.check import check
    from allocview.model.snapshot import decode
    from allocview.model.stats import why
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from bench import fragmented_16g

    al = fragmented_16g()
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr)
    found, st = check(snap), stats(snap)
    whys = {k: why(snap, k, None, 0) for k in range(snap.layout.nlists)}
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        html = report_html(snap, found, st, whys)
        best = min(best, time.perf_counter() - t)
    assert best < 1.0, f"{best:.2f} s"
    assert len(html.encode()) < 5 << 20
    assert '"meta":"' in html                                  # zoom has its bytes


def test_a_finding_per_page_keeps_the_page_bounded():
    from allocview.model.findings import Finding, Severity
    from allocview.model.inject import scenario
    from allocview.model.layout import layout_for
    from allocview.model.snapshot import decode
    from allocview.model.stats import why

    al = scenario(layout_for("x86_64", "2021"))
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr)
    a = next(x for x in snap.areas if x.decoded)
    many = [Finding("bad-byte", Severity.ERROR, a.slot, snap.virt(a.base + k % a.pages),
                    f"page {k} " + "x" * 60) for k in range(30_000)]
    html = report_html(snap, many, stats(snap), [why(snap, 0)])
    assert len(html.encode()) < 5 << 20
    assert "30000 errors" in html and "the last 10000 are not in this page" in html
