"""Checker behaviours beyond the injectors: warnings, infos, format
detection and the one-finding-per-broken-thing rule."""

from allocview.model.check import check
from allocview.model.constants import AREA_ANY_NUMBER, FLAG_DONTZERO
from allocview.model.findings import CODES, Severity
from allocview.model.inject import INJECTORS
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator
from allocview.model.report import report
from allocview.model.snapshot import decode


def snap_of(al, **kw):
    return decode(al.memory, al.layout, al.areas_addr, al.mask_addr, **kw)


def test_area_outside_its_slot_range_is_a_warning():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(1, 0x800, 0x900)          # HIGH slot given memory below 16 MiB
    found = check(snap_of(al))
    assert [(f.code, f.severity, f.slot) for f in found] == \
        [("area-slot-range", Severity.WARNING, 1)]


def test_max_order_above_highest_list_is_info_only():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x110)          # 0x108/3 is the only order-3 block
    al.alloc_pages_flags(3, FLAG_DONTZERO)
    found = check(snap_of(al))
    assert [(f.code, f.severity) for f in found] == [("max-order-unreached", Severity.INFO)]


def test_bad_bytes_in_a_run_are_one_finding():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x140)
    ps = [al.alloc_pages_flags(0, FLAG_DONTZERO) for _ in range(8)]
    a = al.area(3)
    mem = al.memory
    first = al.pfn(ps[2])
    mem.write(a.page_states + first - a.base, bytes([0xFF, 0xFE, 0xFD]))
    found = [f for f in check(snap_of(al)) if f.severity is Severity.ERROR]
    assert [(f.code, f.address) for f in found] == [("bad-byte", ps[2])]
    assert "3 page(s)" in found[0].message


def test_format_detection_and_forcing():
    for fmt in ("2020", "2021"):
        al = Allocator(layout_for("x86_64", fmt))
        al.init_area(3, 0x100, 0x140)
        a, _b, c, _d, _e = [al.alloc_pages_flags(o, FLAG_DONTZERO) for o in (1, 1, 0, 0, 0)]
        al.free_pages(a)
        al.free_pages(c)
        # hand the decoder the other format's layout as a hint: blocks of
        # evidence win, and the report says the bytes and the hint disagree
        other = "2021" if fmt == "2020" else "2020"
        s = decode(al.memory, layout_for("x86_64", fmt).with_format(other), al.areas_addr,
                   al.mask_addr)
        assert s.layout.format == fmt, s.format_reason
        assert [f.code for f in s.problems] == ["format-uncertain"]
        forced = snap_of(al, format=other)
        assert forced.layout.format == other and forced.format_reason == "forced"


def test_one_block_of_evidence_does_not_overrule_the_program():
    """One block could be one bad byte: the program's hint stands, and a
    warning says the bytes disagree."""
    for fmt in ("2020", "2021"):
        al = Allocator(layout_for("x86_64", fmt))
        al.init_area(3, 0x100, 0x140)
        p = al.alloc_pages_flags(0, FLAG_DONTZERO)
        if fmt == "2021":
            al.free_pages(p)            # one FREE block (merged with its FRESH buddy)
        other = "2021" if fmt == "2020" else "2020"
        s = decode(al.memory, layout_for("x86_64", fmt).with_format(other), al.areas_addr,
                   al.mask_addr)
        assert s.layout.format == other, s.format_reason
        assert [(f.code, f.severity) for f in s.problems] == \
            [("format-uncertain", Severity.WARNING)]


def test_fresh_boot_format_comes_from_the_struct_hint():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x140)
    s = snap_of(al)
    assert s.layout.format == "2021" and "max_order" in s.format_reason


def test_every_code_is_explained_and_every_injector_has_a_code():
    assert set(INJECTORS) <= set(CODES)
    assert all(CODES.values())


def test_report_document_lists_blocks_and_lists():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(AREA_ANY_NUMBER, 0xF00, 0x1010)
    p = al.alloc_pages_flags(0, FLAG_DONTZERO)
    s = snap_of(al)
    doc = report(s, check(s))
    assert doc["format"] == "2021" and doc["arch"] == "x86_64" and doc["page_size"] == 4096
    assert doc["areas_mask"] == 0b1100
    low = next(a for a in doc["areas"] if a["slot"] == 2)
    assert low["pages"]["allocated"] == 1 and p not in low["free_blocks"].get("0", [])
    assert low["freelists"] == {str(k): al.freelist(2, k) for k in range(52) if al.freelist(2, k)}
    for a in doc["areas"]:
        for k, starts in a["free_blocks"].items():
            assert starts == sorted(starts)
