"""The map model (allocview.picture): the grid, the classes, the tones, the
minorities, the findings, the hover text; on states built by the reference
model, no QEMU."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from allocview.picture import (ALLOCATED, FREE, SPECIAL, breaches_in, describe, geometry,
                               picture, tone)
from allocview.model.check import check
from allocview.model.constants import FLAG_DONTZERO
from allocview.model.inject import inject, scenario
from allocview.model.layout import Status, layout_for

from .helpers import GiB_PAGES, one_area, snap_of

def test_cells_are_aligned_powers_of_two_and_rows_start_at_round_addresses():
    al = one_area(GiB_PAGES)                 # 1 GiB
    snap = snap_of(al)
    a = snap.area(1)
    pic = picture(snap, a, cols=100, max_cells=1000)
    assert pic.cols == 64                    # rounded down to a power of two
    n = pic.cell_pages
    assert n & (n - 1) == 0 and pic.rows * pic.cols <= 1000
    assert geometry(a.base, a.decoded_top, 64, 1000) == (n, pic.origin, pic.rows)
    assert pic.origin % (n * pic.cols) == 0 and pic.origin <= a.base
    assert all(c.pfn % n == 0 for c in pic.cells)
    assert sum(c.pages for c in pic.cells) == a.pages
    assert pic.scale() == f"one cell = {n * 4 // 1024} MiB ({n} pages), one row = " \
        f"{n * 4 * 64 // 1024} MiB"


def test_one_allocated_page_in_a_large_free_area_is_a_minority_that_shows():
    al = one_area(GiB_PAGES)
    page = al.alloc_pages_flags(0, FLAG_DONTZERO)
    snap = snap_of(al)
    pic = picture(snap, snap.area(1), cols=64, max_cells=256)   # 1024 pages a cell
    assert pic.cell_pages == 1024
    hit = pic.cells[pic.cell_index(snap.pfn(page))]
    assert (hit.main, hit.minority, hit.minority_pages) == (FREE, ALLOCATED, 1)
    assert [c for c in pic.cells if c.minority is not None] == [hit]
    assert "allocated 1" in describe(pic, hit)


def test_a_special_page_shows_in_an_allocated_cell():
    al = one_area(4096)
    ptr = al.alloc_pages_flags(6, FLAG_DONTZERO)          # 64 pages allocated
    al.free_pages(ptr)
    al.reserve_pages(ptr + 5 * 4096, 1)
    keep = al.alloc_pages_flags(5, FLAG_DONTZERO)
    snap = snap_of(al)
    pic = picture(snap, snap.area(1), cols=16, max_cells=64)   # 64 pages a cell
    cell = pic.cells[pic.cell_index(snap.pfn(ptr))]
    assert cell.class_pages[SPECIAL] == 1 and cell.minority == SPECIAL
    assert keep


def test_tone_is_the_largest_free_block_so_unmerged_single_pages_differ_from_one_block():
    merged = one_area(GiB_PAGES)
    unmerged = one_area(GiB_PAGES)
    a = unmerged.area(1)
    free0 = unmerged.layout.encoding.byte(Status.FREE, 0)
    lo = (a.base + 65536) // 65536 * 65536 - a.base        # 256 MiB of unmerged single pages
    a.meta[lo:lo + 65536] = bytes([free0]) * 65536
    views = []
    for al in (merged, unmerged):
        snap = snap_of(al)
        pic = picture(snap, snap.area(1), cols=64, max_cells=1024)
        views.append([pic.cells[pic.cell_index(a.base + lo + k)] for k in (0, 30000, 65535)])
    assert {c.tone for c in views[0]} == {tone(16)} == {5}          # one order-16 block
    assert {c.tone for c in views[1]} == {0}
    assert all(c.free_order == 0 and c.main == FREE for c in views[1])


def test_zoom_to_a_few_pages_gives_one_cell_a_page_naming_its_block():
    al = one_area(4096)
    ptr = al.alloc_pages_flags(2, FLAG_DONTZERO)          # 4 pages
    snap = snap_of(al)
    pic = picture(snap, snap.area(1), from_addr=ptr - 3 * 4096, to_addr=ptr + 8 * 4096)
    assert pic.cell_pages == 1 and (pic.first, pic.end) == (snap.pfn(ptr) - 3, snap.pfn(ptr) + 8)
    inside = [c for c in pic.cells if c.pages]
    assert len(inside) == 11 and all(c.pages == 1 for c in inside)
    page = pic.cells[pic.cell_index(snap.pfn(ptr) + 1)]
    assert page.main == ALLOCATED and page.alloc_block == snap.pfn(ptr)
    assert f"largest allocated block {ptr:#x} order 2 (16 KiB)" in describe(pic, page)
    before = pic.cells[pic.cell_index(snap.pfn(ptr) - 1)]
    assert before.main == FREE and describe(pic, before).splitlines()[0] == \
        f"[{ptr - 4096:#x}, {ptr:#x}) 1 page, 4 KiB"
    assert picture(snap, snap.area(1), from_addr=ptr, to_addr=ptr) is None
    assert picture(snap, snap.area(1), from_addr=1 << 50) is None


def test_findings_land_in_the_cells_of_their_pages_and_folded_runs_spread():
    al = scenario(layout_for("x86_64", "2021"))
    done = inject(al, "unmerged-buddies")
    assert done is not None
    snap = snap_of(al)
    found = check(snap)
    f = next(x for x in found if x.code == "unmerged-buddies")
    a = snap.area(f.slot)
    pic = picture(snap, a, found, cols=64, max_cells=512)
    i = pic.findings.index(f)
    marked = [c for c in pic.cells if any(j == i for j, _ in c.findings)]
    assert marked == [pic.cells[pic.cell_index(snap.pfn(f.address))]]
    assert f"error unmerged-buddies: {f.message}" in describe(pic, marked[0])
    # findings elsewhere (a list head, the descriptor) are not on the pages
    assert all(x.slot == a.slot for x in pic.findings)
    # a run of 100 breaches 4 pages apart over cells of 64 pages: 16 a cell
    assert [breaches_in(1000, 1396, 100, lo, lo + 64) for lo in range(960, 1400, 64)] == \
        [6, 16, 16, 16, 16, 16, 14]
    assert breaches_in(5, 5, 1, 0, 5) == 0 and breaches_in(5, 5, 1, 5, 6) == 1


def test_a_16_gib_area_with_23k_free_blocks_maps_in_well_under_a_second():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from bench import fragmented_16g
    al = fragmented_16g()
    snap = snap_of(al)
    a = next(x for x in snap.areas if x.decoded)
    assert a.pages > 4_000_000 and a.blocks.free_count > 20_000
    found = check(snap)
    best = min(_timed(lambda: picture(snap, a, found, cols=128, max_cells=8192))
               for _ in range(3))
    assert best < 0.3, f"{best:.3f} s"


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


@pytest.mark.parametrize("fmt", ["2020", "2021"])
def test_both_encodings_classify_alike(fmt):
    al = one_area(1024, fmt)
    al.alloc_pages_flags(3, FLAG_DONTZERO)
    snap = snap_of(al)
    pic = picture(snap, snap.area(1), cols=32, max_cells=32)
    assert sum(c.counts[2] for c in pic.cells) == 8
    assert sum(c.class_pages[FREE] for c in pic.cells) == snap.area(1).pages - 8
