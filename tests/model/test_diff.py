"""model.diff: what happened between two states, every change with its
detail filled in."""

from allocview.model.diff import diff
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator
from allocview.model.snapshot import decode


def snap(al):
    return decode(al.memory, al.layout, al.areas_addr, al.mask_addr)


def test_every_change_says_what_happened():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x1000)
    start = snap(al)
    blocks = [al.alloc_pages_flags(0) for _ in range(4)]
    big = al.alloc_pages_flags(3)
    al.reserve_pages(0x800 << 12, 2)
    mid = snap(al)
    grown = diff(start, mid)
    kinds = {c.kind for c in grown}
    assert {"allocated", "reserved", "split"} <= kinds, kinds
    for b in blocks + [big]:
        al.free_pages(b)
    end = snap(al)
    back = diff(mid, end)
    assert {"freed"} <= {c.kind for c in back} or {"merged"} <= {c.kind for c in back}
    for c in grown + back:
        assert c.detail, c
