"""Property tests: every operation sequence of the specification leaves an
image that decodes to the model's own state and that the checker finds
healthy; garbage never makes decode or check raise or loop."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocview.model.check import check
from allocview.model.constants import FLAG_DONTZERO, FLAG_FRESH
from allocview.model.errors import MemoryReadError
from allocview.model.findings import Severity
from allocview.model.inject import scenario, scenario_ranges
from allocview.model.constants import AREA_ANY_NUMBER
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator
from allocview.model.snapshot import decode
from allocview.model.memory import SparseMemory

COMBOS = [(a, f) for a in ("x86_64", "i386", "s390x", "aarch64") for f in ("2020", "2021")]

op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 4), st.booleans()),
    st.tuples(st.just("memalign"), st.integers(0, 3), st.integers(1, 9)),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("reserve"), st.integers(0, 10_000), st.integers(1, 3)),
    st.tuples(st.just("unreserve"), st.integers(0, 10_000), st.just(0)),
)


def run(al, ops, after_each):
    live, reserved = [], []
    ps = al.layout.page_size
    areas = [a for a in al.areas if a]
    for kind, x, y in ops:
        if kind == "alloc":
            flags = FLAG_DONTZERO | (FLAG_FRESH if y and al.layout.format == "2021" else 0)
            p = al.alloc_pages_flags(x, flags)
            if p:
                live.append(p)
        elif kind == "memalign":
            p = al.memalign_pages_flags(ps << x, y * ps - 1, FLAG_DONTZERO)
            if p:
                live.append(p)
        elif kind == "free" and live:
            al.free_pages(live.pop(x % len(live)))
        elif kind == "reserve":
            a = areas[x % len(areas)]
            pfn = a.base + (x * 7919) % (a.top - a.base)
            if al.reserve_pages(pfn * ps, y) == 0:
                reserved.append((pfn * ps, y))
        elif kind == "unreserve" and reserved:
            al.unreserve_pages(*reserved.pop(x % len(reserved)))
        after_each()


def assert_healthy(al):
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr)
    assert snap.state() == al.state()
    found = check(snap)
    assert [f for f in found if f.severity is Severity.ERROR] == []
    # The only warning the design produces on its own: a list above a
    # max_order that split lowered. It must match the model's state exactly.
    for f in found:
        if f.severity is Severity.WARNING:
            assert f.code == "max-order-low"
            a = al.area(f.slot)
            assert any(al.freelist(a.slot, k) for k in range(a.max_order + 1, al.layout.nlists))


@pytest.mark.parametrize("arch,fmt", COMBOS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=60))
def test_every_step_decodes_to_model_state_and_checks_clean(arch, fmt, ops):
    lay = layout_for(arch, fmt)
    al = Allocator(lay)
    al.init_area(AREA_ANY_NUMBER, *scenario_ranges(lay))
    assert_healthy(al)
    run(al, ops, lambda: assert_healthy(al))


class CountingMemory:
    def __init__(self, inner):
        self.inner, self.reads = inner, 0

    def read(self, addr, size):
        self.reads += 1
        return self.inner.read(addr, size)


def decode_and_check_bounded(mem, lay, areas_addr, mask_addr):
    counted = CountingMemory(mem)
    snap = decode(counted, lay, areas_addr, mask_addr)
    found = check(snap)
    # No loop: globals, one metadata read per area, at most one read per
    # page of every area (each node once).
    pages = sum(a.pages for a in snap.areas if a.decoded)
    assert counted.reads <= 2 + lay.max_areas + pages
    return snap, found


def garbage_image(lay, rnd):
    """Descriptors that look half-right: small and huge pfns, pointers into
    the RAM, at list heads, at nothing; random metadata and node bytes."""
    mem = SparseMemory()
    areas_addr, ram, ram_size = 0x100000, 0x200000, 0x40000
    mem.map(areas_addr, lay.areas_size + 8)
    mem.map(ram, ram_size)
    mem.write(ram, rnd.randbytes(rnd.randrange(0, ram_size)))
    s = lay.struct
    e = lay.endian
    heads = [areas_addr + n * s.size + s.freelists_off + k * s.list_head_size
             for n in range(lay.max_areas) for k in range(lay.nlists)]

    def pfn():
        return rnd.choice([0, 1, ram >> lay.page_shift, (ram >> lay.page_shift) + rnd.randrange(64),
                           (ram + ram_size) >> lay.page_shift, rnd.getrandbits(8 * s.base_size)])

    def ptr():
        return rnd.choice([0, rnd.choice(heads), ram + (rnd.randrange(ram_size) & ~0xFFF),
                           ram + rnd.randrange(ram_size), rnd.getrandbits(8 * lay.ptr_size)])

    for n in range(lay.max_areas):
        d = areas_addr + n * s.size
        if rnd.random() < 0.3:
            mem.write(d, rnd.randbytes(s.size))
            continue
        base = pfn()
        top = rnd.choice([base + rnd.randrange(1, 64), pfn()]) % (1 << (8 * s.base_size))
        mem.write(d + s.base_off, base.to_bytes(s.base_size, e))
        mem.write(d + s.top_off, top.to_bytes(s.base_size, e))
        mem.write(d + s.page_states_off, ptr().to_bytes(lay.ptr_size, e))
        if s.max_order_off is not None:
            mem.write(d + s.max_order_off, bytes([rnd.randrange(64)]))
        for k in range(lay.nlists):
            h = d + s.freelists_off + k * s.list_head_size
            pair = (h, h) if rnd.random() < 0.5 else (ptr(), ptr())
            mem.write(h, b"".join(x.to_bytes(lay.ptr_size, e) for x in pair))
    for _ in range(rnd.randrange(200)):   # plant node-like pointers in RAM pages
        at = ram + (rnd.randrange(ram_size) & ~0xFFF)
        mem.write(at, ptr().to_bytes(lay.ptr_size, e) + ptr().to_bytes(lay.ptr_size, e))
    mem.write(areas_addr + lay.areas_size, rnd.getrandbits(32).to_bytes(4, e))
    return mem, areas_addr, areas_addr + lay.areas_size


@pytest.mark.parametrize("arch,fmt", COMBOS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**64 - 1))
def test_random_garbage_never_raises_or_loops(arch, fmt, seed):
    lay = layout_for(arch, fmt)
    mem, areas_addr, mask_addr = garbage_image(lay, random.Random(seed))
    snap, found = decode_and_check_bounded(mem, lay, areas_addr, mask_addr)
    for f in found:
        assert f.code and f.message


@pytest.mark.parametrize("arch,fmt", COMBOS)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 40))
def test_mutated_images_never_raise_or_loop(arch, fmt, seed, flips):
    lay = layout_for(arch, fmt)
    al = scenario(lay, seed=seed % 7, ops=200)
    mem = al.memory
    rnd = random.Random(seed)
    areas = [a for a in al.areas if a]
    targets = [(al.areas_addr, lay.areas_size + 4)]
    for a in areas:
        targets.append((a.page_states, a.top - a.base))
        nodes = [n for k in range(lay.nlists) for n in al.freelist(a.slot, k)]
        targets += [(n, 2 * lay.ptr_size) for n in nodes[:50]]
    for _ in range(flips):
        addr, size = rnd.choice(targets)
        pos = addr + rnd.randrange(size)
        mem.write(pos, bytes([rnd.randrange(256)]))
    decode_and_check_bounded(mem, lay, al.areas_addr, al.mask_addr)


def test_unreadable_globals_are_a_finding():
    lay = layout_for("x86_64", "2021")
    snap = decode(SparseMemory(), lay, 0x1000, 0x2000)
    found = check(snap)
    assert [f.code for f in found] == ["areas-unreadable"]
    assert found[0].address == 0x1000


def test_unreadable_metadata_and_nodes_are_findings():
    lay = layout_for("x86_64", "2021")
    al = scenario(lay)
    a = next(x for x in al.areas if x)
    node = al.freelist(a.slot, next(k for k in range(lay.nlists) if al.freelist(a.slot, k)))[0]

    class Holes:
        def __init__(self, inner, holes):
            self.inner, self.holes = inner, holes

        def read(self, addr, size):
            for h in self.holes:
                if addr <= h < addr + size:
                    raise MemoryReadError(addr, size, "hole")
            return self.inner.read(addr, size)

    found = check(decode(Holes(al.memory, [a.page_states]), lay, al.areas_addr, al.mask_addr))
    assert ("metadata-unreadable", a.page_states) in [(f.code, f.address) for f in found]
    found = check(decode(Holes(al.memory, [node]), lay, al.areas_addr, al.mask_addr))
    errs = [(f.code, f.address) for f in found if f.severity is Severity.ERROR]
    assert errs == [("list-unreadable", node)]
