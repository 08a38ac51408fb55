"""The allocator state of a stopped guest, read with plain gdb commands
(`print`, `dump binary memory`, a gdb Python walk of the lists), and the
same view of the reference model, for tests that compare the two. Nothing
here uses allocview's own decoders.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .gdb import Gdb, GdbError

__all__ = ["AreaView", "AllocatorView", "read_guest", "read_model", "diff"]

AREAS = "'alloc_page.c'::areas"
MASK = "'alloc_page.c'::areas_mask"


@dataclass(frozen=True)
class AreaView:
    slot: int
    base: int
    top: int
    page_states: int
    max_order: int | None
    metadata: bytes = field(repr=False)
    # per order: ((node, prev, next), ...) from head.next
    freelists: tuple[tuple[tuple[int, int, int], ...], ...] = field(repr=False)


@dataclass(frozen=True)
class AllocatorView:
    areas_addr: int
    mask_addr: int
    areas_mask: int
    raw_areas: bytes = field(repr=False)
    areas: dict[int, AreaView] = field(repr=False)


_WALK = r"""
import gdb, json
areas = gdb.parse_and_eval("'alloc_page.c'::areas")
out = {}
for i in %(slots)r:
    lists = []
    for k in range(%(nlists)d):
        head = areas[i]['freelists'][k]
        h = int(head.address)
        nodes = []
        x = head['next']
        while int(x) != h:
            nodes.append((int(x), int(x['prev']), int(x['next'])))
            if len(nodes) > 2000000:
                raise gdb.GdbError("list %%d/%%d does not come back to its head" %% (i, k))
            x = x['next']
        lists.append(nodes)
    out[i] = lists
print("WALK " + json.dumps(out))
"""


def _field(text: str, name: str) -> int | None:
    m = re.search(rf"\b{name} = (0x[0-9a-f]+|\d+)", text)
    return int(m.group(1), 0) if m else None


def read_guest(gdb: Gdb) -> AllocatorView:
    """Everything the allocator keeps, from the stopped guest behind gdb."""
    mask = gdb.print_int(MASK)
    areas_addr = gdb.print_int(f"&{AREAS}")
    mask_addr = gdb.print_int(f"&{MASK}")
    size = gdb.print_int(f"sizeof({AREAS})")
    nareas = gdb.print_int(f"sizeof({AREAS}) / sizeof({AREAS}[0])")
    nlists = gdb.print_int(f"sizeof({AREAS}[0].freelists) / sizeof({AREAS}[0].freelists[0])")
    raw = gdb.read_memory(areas_addr, size)
    slots = [i for i in range(nareas) if mask >> i & 1]
    walk = gdb.python(_WALK % {"slots": slots, "nlists": nlists}, timeout=300)
    m = re.search(r"^WALK (.*)$", walk, re.M)
    if not m:
        raise GdbError(f"list walk printed no result: {walk[-2000:]}")
    lists = {int(k): v for k, v in json.loads(m.group(1)).items()}
    out = {}
    for i in slots:
        text = gdb.cli(f"print/x {AREAS}[{i}]")
        base, top = _field(text, "base"), _field(text, "top")
        page_states = _field(text, "page_states")
        if base is None or top is None or page_states is None:
            raise GdbError(f"cannot read areas[{i}] from {text[:400]!r}")
        meta = gdb.read_memory(page_states, top - base) if top > base else b""
        out[i] = AreaView(i, base, top, page_states, _field(text, "max_order"), meta,
                          tuple(tuple(tuple(n) for n in lst) for lst in lists[i]))
    return AllocatorView(areas_addr, mask_addr, mask, raw, out)


def read_model(allocator) -> AllocatorView:
    """The same view of a model.reference.Allocator."""
    mem = allocator.memory
    lay = allocator.layout
    ptr = lay.ptr_size
    size = lay.areas_size
    out = {}
    for st in allocator.state():
        lists = []
        for nodes in st.freelists:
            got = []
            for x in nodes:
                raw = mem.read(x, 2 * ptr)
                got.append((x, int.from_bytes(raw[:ptr], lay.endian),
                            int.from_bytes(raw[ptr:], lay.endian)))
            lists.append(tuple(got))
        out[st.slot] = AreaView(st.slot, st.base, st.top, st.page_states, st.max_order,
                                bytes(st.metadata), tuple(lists))
    return AllocatorView(allocator.areas_addr, allocator.mask_addr, allocator.areas_mask,
                         mem.read(allocator.areas_addr, size), out)


def _first_diff(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first at +{i:#x}: {x:#04x} != {y:#04x}"
    return f"lengths {len(a)} != {len(b)}"


def diff(guest: AllocatorView, model: AllocatorView) -> list[str]:
    """Human-readable differences; empty when the two agree exactly."""
    out = []
    if (guest.areas_addr, guest.mask_addr) != (model.areas_addr, model.mask_addr):
        out.append(f"symbols: guest areas/mask at {guest.areas_addr:#x}/{guest.mask_addr:#x}, "
                   f"model at {model.areas_addr:#x}/{model.mask_addr:#x}")
    if guest.areas_mask != model.areas_mask:
        out.append(f"areas_mask {guest.areas_mask:#x} != {model.areas_mask:#x}")
    for slot in sorted(set(guest.areas) | set(model.areas)):
        g, m = guest.areas.get(slot), model.areas.get(slot)
        if g is None or m is None:
            out.append(f"area {slot}: only in {'model' if g is None else 'guest'}")
            continue
        for name in ("base", "top", "page_states", "max_order"):
            if getattr(g, name) != getattr(m, name):
                out.append(f"area {slot}: {name} {getattr(g, name)!r} != {getattr(m, name)!r}")
        if g.metadata != m.metadata:
            out.append(f"area {slot}: metadata differs, {_first_diff(g.metadata, m.metadata)}")
        for k, (gl, ml) in enumerate(zip(g.freelists, m.freelists)):
            if gl != ml:
                gn, mn = [n[0] for n in gl], [n[0] for n in ml]
                what = "node order" if gn != mn else "node pointers"
                out.append(f"area {slot} list {k}: {what} differ: guest {len(gl)} nodes "
                           f"{[hex(x) for x in gn[:6]]}..., model {len(ml)} nodes "
                           f"{[hex(x) for x in mn[:6]]}...")
    if guest.raw_areas != model.raw_areas and not out:
        out.append(f"areas[] bytes differ, {_first_diff(guest.raw_areas, model.raw_areas)}")
    return out
