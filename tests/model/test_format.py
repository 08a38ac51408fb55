"""Format detection that one bad byte cannot flip: the two corruptions that
flipped it on real guests (a self-loop in free list 0 of a 2021 state; a
0x6b byte on a listed node of a 2020 one), on every arch, decode in their
true format with their breaches reported."""

import pytest

from allocview.model.check import check, errors
from allocview.model.inject import inject, scenario
from allocview.model.layout import layout_for
from allocview.model.snapshot import decode

ARCHES = ["x86_64", "i386", "s390x", "aarch64", "ppc64", "riscv64"]


def decoded(al, fmt_hint=None):
    lay = al.layout if fmt_hint is None else al.layout.with_format(fmt_hint)
    return decode(al.memory, lay, al.areas_addr, al.mask_addr)


def freed_every_other_page(arch: str):
    """A 2021 state like upstream sieve's end: most free memory in single
    FREE pages on list 0 (every other page of a run freed: no buddies),
    and one pair of free buddies left unmerged."""
    from allocview.model.constants import AREA_ANY_NUMBER, FLAG_DONTZERO
    from allocview.model.reference import Allocator
    al = Allocator(layout_for(arch, "2021"))
    al.init_area(AREA_ANY_NUMBER, 0x1000, 0x1400)
    pages = [al.alloc_pages_flags(0, FLAG_DONTZERO) for _ in range(600)]
    for p in pages[::2]:
        al.free_pages(p)
    assert inject(al, "unmerged-buddies") is not None
    return al


@pytest.mark.parametrize("arch", ARCHES)
def test_a_self_loop_in_list_0_of_a_2021_state_keeps_it_2021(arch):
    al = freed_every_other_page(arch)
    a = next(x for x in al.areas if x)
    nodes = al.freelist(a.slot, 0)
    assert len(nodes) > 250
    node = nodes[0]
    # the first node's next points at itself: the walk stops after one node
    al.memory.write(node + al.layout.ptr_size,
                    node.to_bytes(al.layout.ptr_size, al.layout.endian))
    for hint in ("2021", "2020"):           # whatever the program suggests
        snap = decoded(al, hint)
        assert snap.layout.format == "2021", snap.format_reason
        codes = {f.code for f in errors(check(snap))}
        assert {"unmerged-buddies", "list-cycle"} <= codes, codes


@pytest.mark.parametrize("arch", ARCHES)
def test_one_bad_byte_on_a_listed_node_of_a_2020_state_keeps_it_2020(arch):
    al = scenario(layout_for(arch, "2020"))
    truth = check(decoded(al))
    a = next(x for x in al.areas if x and any(al.freelist(x.slot, k) for k in range(3)))
    k = next(k for k in range(al.layout.nlists) if al.freelist(a.slot, k))
    pfn = al.pfn(al.freelist(a.slot, k)[0])
    al.memory.write(a.page_states + pfn - a.base, b"\x6b")
    for hint in ("2020", "2021"):
        snap = decoded(al, hint)
        if hint == "2020":
            assert snap.layout.format == "2020", snap.format_reason
        found = errors(check(snap))
        # a handful of breaches, not tens of thousands
        assert 1 <= len(found) <= len(errors(truth)) + 3, [f.code for f in found]
        assert snap.layout.format == "2020" or any(f.code == "format-uncertain"
                                                   for f in snap.problems)


def test_evidence_is_counted_in_blocks_not_pages():
    """A single huge listed block carrying 0x40 cannot outvote thousands of
    allocated 0x40 blocks (it used to weigh 2^order pages)."""
    al = scenario(layout_for("x86_64", "2020"), ops=2000)
    a = next(x for x in al.areas if x)
    k = max(k for k in range(al.layout.nlists) if al.freelist(a.slot, k))
    block = al.freelist(a.slot, k)[0]
    pfn = al.pfn(block)
    al.memory.write(a.page_states + pfn - a.base, bytes([0x40 | k]) * (1 << k))
    snap = decoded(al)
    assert snap.layout.format == "2020", snap.format_reason
