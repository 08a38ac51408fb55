"""Statistics and `why`: the prediction is what the allocator then does."""

import random

import pytest

from allocview.model.constants import FLAG_DONTZERO, FLAG_FRESH
from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator
from allocview.model.snapshot import decode
from allocview.model.stats import stats, why


def test_stats_count_pages_and_blocks():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x110)              # free: 0x101/0 0x102/1 0x104/2 0x108/3
    al.alloc_pages_flags(0, FLAG_DONTZERO)
    [st] = stats(decode(al.memory, al.layout, al.areas_addr, al.mask_addr))
    assert (st.pages, st.fresh, st.free, st.allocated) == (15, 14, 0, 1)
    assert st.free_blocks == {1: 1, 2: 1, 3: 1}
    assert st.largest_order == 3 and st.fragmentation == pytest.approx(1 - 8 / 14)


@pytest.mark.parametrize("fmt", ["2020", "2021"])
def test_why_predicts_the_allocators_answer(fmt):
    lay = layout_for("x86_64", fmt)
    rnd = random.Random(5)
    for seed in range(6):
        al = scenario(lay, seed=seed, ops=300)
        snap = decode(al.memory, lay, al.areas_addr, al.mask_addr)
        for _ in range(30):
            order = rnd.randrange(0, 7)
            align = rnd.choice([None, order, order + rnd.randrange(3)])
            flags = FLAG_DONTZERO
            if fmt == "2021" and rnd.random() < 0.3 and (align is None or align <= order):
                flags |= FLAG_FRESH
            if rnd.random() < 0.3:
                flags |= 1 << rnd.choice([s.number for s in lay.slots])
            w = why(snap, order, align, flags)
            twin = Allocator.from_state(lay, list(snap.state()), snap.areas_mask)
            al_ = order if align is None else align
            got = twin.memalign_pages_flags(4096 << al_, 4096 << order, flags)
            assert w.ok == bool(got), w.reasons
            if got:
                assert w.result == got
            assert w.reasons


def test_why_explains_a_list_above_max_order():
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(3, 0x100, 0x110)
    big = al.alloc_pages_flags(3, FLAG_DONTZERO)
    al.free_pages(big)
    al.alloc_pages_flags(2, FLAG_DONTZERO)
    b = al.alloc_pages_flags(2, FLAG_DONTZERO)     # split 0x108/3: max_order drops to 2
    al.alloc_pages_flags(2, FLAG_DONTZERO)
    al.free_pages(b)                               # 0x108/2 free again (buddy taken)
    al.alloc_pages_flags(0, FLAG_DONTZERO)
    w = why(decode(al.memory, al.layout, al.areas_addr, al.mask_addr), 3)
    assert not w.ok
