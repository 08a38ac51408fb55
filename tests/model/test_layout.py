"""Layouts: the hand-written struct tables agree with C layout rules, and
DWARF-style offsets rebuild the same layouts."""

import pytest

from allocview.model.errors import LayoutError
from allocview.model.layout import (ARCHES, FORMATS, Layout, Status, area_struct_for,
                          c_struct_offsets, layout_for)

ALL = [(a, f) for a in ARCHES for f in FORMATS]


@pytest.mark.parametrize("arch,tree", ALL)
def test_builtin_struct_table_matches_c_rules(arch, tree):
    assert layout_for(arch, tree).struct == area_struct_for(ARCHES[arch], tree)


@pytest.mark.parametrize("arch,tree", ALL)
def test_from_offsets_rebuilds_builtin_layout(arch, tree):
    lay = layout_for(arch, tree)
    s = lay.struct
    again = Layout.from_offsets(arch, tree, size=s.size, base_off=s.base_off,
                                base_size=s.base_size, top_off=s.top_off,
                                page_states_off=s.page_states_off,
                                max_order_off=s.max_order_off, freelists_off=s.freelists_off,
                                nlists=s.nlists, max_areas=lay.max_areas)
    assert again == lay
    assert again.slots == lay.slots


def test_i386_packs_64bit_pfns_on_4_byte_alignment():
    # gcc -m32 aligns u64 struct members to 4: max_order sits right after page_states
    s = layout_for("i386", "2021").struct
    assert (s.base_off, s.top_off, s.page_states_off, s.max_order_off, s.freelists_off, s.size) \
        == (0, 8, 16, 20, 24, 184)


def test_nlists_is_bits_per_long_minus_page_shift():
    assert layout_for("x86_64", "2021").nlists == 52
    assert layout_for("i386", "2020").nlists == 20
    assert layout_for("ppc64", "2021").nlists == 48


def test_c_struct_offsets_pads_to_largest_alignment():
    offs, size = c_struct_offsets([("a", 1, 1), ("b", 8, 8), ("c", 1, 1)])
    assert offs == {"a": 0, "b": 8, "c": 16} and size == 24


def test_x86_slots_per_tree():
    assert [(s.number, s.name) for s in layout_for("x86_64", "2021").slots] == \
        [(0, "NORMAL"), (1, "HIGH"), (2, "LOW"), (3, "LOWEST")]
    assert layout_for("x86_64", "2021").slot(3).pfn_end == 0x1000      # 16 MiB
    assert layout_for("x86_64", "2020").max_areas == 6
    assert layout_for("s390x", "2021").slot(0).pfn_start == 0x80000    # 2 GiB


@pytest.mark.parametrize("byte,fmt,expected", [
    (0x00, "2021", (Status.FRESH, 0)), (0x45, "2021", (Status.FREE, 5)),
    (0x83, "2021", (Status.ALLOCATED, 3)), (0xC0, "2021", (Status.SPECIAL, 0)),
    (0x05, "2020", (Status.FREE, 5)), (0x43, "2020", (Status.ALLOCATED, 3)),
    (0x80, "2020", (Status.SPECIAL, 0)), (0xC0, "2020", (Status.INVALID, 0)),
    (0x34, "2021", (Status.INVALID, 52)), (0x14, "2020", (Status.FREE, 20)),
])
def test_byte_classification(byte, fmt, expected):
    nl = 52 if byte != 0x14 else 21
    from allocview.model.layout import encoding_for
    assert encoding_for(fmt, nl).table[byte] == expected


def test_encoding_roundtrip():
    for fmt in FORMATS:
        enc = layout_for("x86_64", fmt).encoding
        for st in (Status.FREE, Status.ALLOCATED):
            for order in (0, 7, 51):
                assert enc.table[enc.byte(st, order)] == (st, order)


def test_unknown_arch_and_format_are_one_line_errors():
    with pytest.raises(LayoutError, match="unknown arch 'mips'"):
        layout_for("mips", "2021")
    with pytest.raises(LayoutError, match="unknown format '2019'"):
        layout_for("x86_64", "2019")
    with pytest.raises(LayoutError, match="freelists has 20 entries"):
        s = layout_for("x86_64", "2021").struct
        Layout.from_offsets("x86_64", "2021", size=s.size, base_off=0, base_size=8, top_off=8,
                            page_states_off=16, max_order_off=24, freelists_off=32, nlists=20,
                            max_areas=4)
