"""States for the picture tests, built by the reference model."""

from __future__ import annotations

from allocview.model.constants import AREA_ANY_NUMBER
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator
from allocview.model.snapshot import decode

GiB_PAGES = 1 << 18


def snap_of(al):
    """Decoded in the model's format (planted bytes must not sway detection)."""
    return decode(al.memory, al.layout, al.areas_addr, al.mask_addr, format=al.layout.format)


def one_area(pages: int, fmt: str = "2021") -> Allocator:
    """x86_64, slot HIGH: [4 GiB, 4 GiB + pages), all free."""
    al = Allocator(layout_for("x86_64", fmt))
    al.init_area(AREA_ANY_NUMBER, 4 * GiB_PAGES, 4 * GiB_PAGES + pages)
    return al
