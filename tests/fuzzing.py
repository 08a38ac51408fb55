"""What every fuzzed image must satisfy, for the model's images and the
fixture guests' dumps alike."""

from __future__ import annotations

import random

from allocview.model.check import check, errors
from allocview.model.fuzz import KINDS, Image, Patched, fuzz_one, healthy_cost, mutate, readable_pages
from allocview.model.snapshot import decode

HANG_GUARD_S = 30.0     # not a speed figure (scripts/bench.py has those): a hang catcher


def breaches(mem, lay, areas_addr: int, mask_addr: int) -> list[str]:
    """An independent, page-by-page reading of ALLOCATOR.md's invariants
    (slow and plain, for differential testing): the breaches of a state
    the checker called clean, so none must be found."""
    import struct as st
    e = "<" if lay.endian == "little" else ">"
    word = st.Struct(e + ("Q" if lay.ptr_size == 8 else "I"))
    wide = st.Struct(e + ("Q" if lay.struct.base_size == 8 else "I"))
    s, shift, ps = lay.struct, lay.page_shift, lay.page_size
    out: list[str] = []
    mask = int.from_bytes(mem.read(mask_addr, 4), lay.endian)
    if mask >> lay.max_areas:
        out.append("mask bits above MAX_AREAS")
    spans = []
    for n in range(lay.max_areas):
        d = areas_addr + n * s.size
        raw = mem.read(d, s.size)
        base, top = wide.unpack_from(raw, s.base_off)[0], wide.unpack_from(raw, s.top_off)[0]
        pst = word.unpack_from(raw, s.page_states_off)[0]
        heads = [(d + s.freelists_off + k * 2 * lay.ptr_size,) +
                 tuple(word.unpack_from(raw, s.freelists_off + (2 * k + j) * lay.ptr_size)[0]
                       for j in (0, 1)) for k in range(lay.nlists)]
        if not mask >> n & 1:
            if base or top or pst or any(p or q for _, p, q in heads):
                out.append(f"slot {n} holds data but is not in the mask")
            continue
        if not base < top:
            out.append(f"slot {n}: base >= top")
            continue
        if pst + (top - base) > base << shift:
            out.append(f"slot {n}: metadata past base")
            continue
        meta = mem.read(pst, top - base)
        spans.append((pst >> shift, top))
        free: dict[int, int] = {}
        i = 0
        while i < len(meta):
            b = meta[i]
            status, order = lay.encoding.table[b]
            if status.name == "INVALID":
                out.append(f"slot {n}: bad byte {b:#x}")
                break
            if status.name == "SPECIAL":
                if order:
                    out.append(f"slot {n}: special order")
                i += 1
                continue
            size = 1 << order
            pfn = base + i
            if pfn % size or i + size > len(meta) or meta[i:i + size] != bytes([b]) * size:
                out.append(f"slot {n}: broken block at pfn {pfn:#x}")
                break
            if status.is_free:
                free[pfn] = order
            i += size
        listed: dict[int, int] = {}
        for k, (head, prev, nxt) in enumerate(heads):
            cur, before, steps = nxt, head, 0
            while cur != head:
                steps += 1
                pfn = cur >> shift
                if steps > len(meta) or cur % ps or free.get(pfn) != k or pfn in listed:
                    out.append(f"slot {n}: list {k} holds {cur:#x} wrongly")
                    break
                try:
                    p, q = word.unpack(mem.read(cur, 2 * lay.ptr_size)[:word.size]), \
                        word.unpack(mem.read(cur + lay.ptr_size, lay.ptr_size))
                except Exception:  # noqa: BLE001
                    out.append(f"slot {n}: unreadable node")
                    break
                if p[0] != before:
                    out.append(f"slot {n}: broken prev at {cur:#x}")
                listed[pfn] = k
                before, cur = cur, q[0]
            else:
                if prev != before:
                    out.append(f"slot {n}: head prev of list {k}")
            if s.max_order_off is not None and raw[s.max_order_off] >= lay.nlists:
                out.append(f"slot {n}: max_order too big")
        if set(listed) != set(free):
            out.append(f"slot {n}: free blocks and lists differ")
        for pfn, k in free.items():
            size = 1 << k
            if pfn % (2 * size) == 0 and free.get(pfn + size) == k and pfn + 2 * size <= top \
                    and k + 1 < lay.nlists:
                out.append(f"slot {n}: unmerged buddies at {pfn:#x}")
    spans.sort()
    for (lo, hi), (lo2, _hi2) in zip(spans, spans[1:]):
        if lo2 < hi:
            out.append("areas overlap")
    return out


def fuzz(images: list[Image], count: int, seed: int) -> list:
    """`count` corrupted images, spread over `images` and the kinds; every
    check asserted; the results (for figures)."""
    rnd = random.Random(seed)
    costs = {img.name: healthy_cost(img) for img in images}
    out = []
    for n in range(count):
        img = images[n % len(images)]
        kind = KINDS[(n // len(images)) % len(KINDS)]
        patches, what = mutate(img, rnd, kind)
        res = fuzz_one(img, patches, what)
        where = f"{img.name} #{n} {kind}: {what} at {sorted(patches)[0]:#x}"
        _, reads0, bytes0 = costs[img.name]
        pages = readable_pages(img)
        lay = img.layout
        # work linear in the guest's RAM: metadata and one node per page
        # per area at most, on top of the healthy decode's own
        assert res.bytes <= bytes0 + lay.max_areas * pages * (1 + 2 * lay.ptr_size) + 65536, where
        assert res.reads <= reads0 + lay.max_areas * (pages + 2) + 1024, where
        assert res.seconds < HANG_GUARD_S, where
        clean = res.errors == 0 and res.unchecked is None
        if clean and res.changed:
            found = breaches(Patched(img.memory, patches), lay, img.areas_addr, img.mask_addr)
            assert not found, f"a corrupted image read as healthy: {where}: {found}"
        if res.format is not None and res.format != img.format and res.unchecked is None:
            true = check(decode(Patched(img.memory, patches), lay, img.areas_addr,
                                img.mask_addr, format=img.format))
            assert res.errors or not errors(true), \
                f"decoded as {res.format}, healthier than in its true format: {where}"
        out.append(res)
    return out
