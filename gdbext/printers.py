"""Pretty-printers for `struct mem_area` and `struct linked_list`, and the
convenience functions $alloc_status(addr) and $alloc_order(addr)."""

from __future__ import annotations

import gdb  # type: ignore[import-not-found]
import gdb.printing  # type: ignore[import-not-found]

from allocview.model.query import describe_page

__all__ = ["register"]

# A pretty-printer must stay cheap: it counts at most this many nodes a list.
COUNT_LIMIT = 4096


def _count(head) -> str:
    start = int(head.address)
    node = head["next"]
    n = 0
    seen = set()
    while int(node) != start:
        if int(node) == 0 or int(node) in seen:
            return f"{n}+broken"
        if n >= COUNT_LIMIT:
            return f">{COUNT_LIMIT}"
        seen.add(int(node))
        n += 1
        try:
            node = node.dereference()["next"]
        except gdb.MemoryError:
            return f"{n}+unreadable"
    return str(n)


class MemAreaPrinter:
    """`struct mem_area`: its range and the non-empty lists, not 52 heads."""

    def __init__(self, val):
        self.val = val

    def to_string(self):
        v = self.val
        try:
            base, top = int(v["base"]), int(v["top"])
            parts = [f"base={base:#x}", f"top={top:#x}", f"pages={max(top - base, 0)}",
                     f"page_states={int(v['page_states']):#x}"]
            fields = {f.name for f in v.type.strip_typedefs().fields()}
            if "max_order" in fields:
                parts.append(f"max_order={int(v['max_order'])}")
            if top <= base:
                return "{" + ", ".join(parts) + ", (uninitialised)}"
            lo, hi = v["freelists"].type.range()
            lists = []
            for k in range(lo, hi + 1):
                head = v["freelists"][k]
                if int(head["next"]) not in (0, int(head.address)):
                    lists.append(f"{k}:{_count(head)}")
            parts.append("free lists {" + " ".join(lists) + "}")
            return "{" + ", ".join(parts) + "}"
        except gdb.MemoryError as e:
            return f"<unreadable: {e}>"


class ListPrinter:
    def __init__(self, val):
        self.val = val

    def to_string(self):
        v = self.val
        try:
            prev, nxt = int(v["prev"]), int(v["next"])
        except gdb.MemoryError as e:
            return f"<unreadable: {e}>"
        here = int(v.address) if v.address is not None else None
        if here is not None and prev == nxt == here:
            return "{empty}"
        if prev == nxt == 0:
            return "{prev=NULL, next=NULL (unlinked)}"
        return f"{{prev={prev:#x}, next={nxt:#x}}}"


def _build():
    pp = gdb.printing.RegexpCollectionPrettyPrinter("allocview")
    pp.add_printer("mem_area", "^mem_area$", MemAreaPrinter)
    pp.add_printer("linked_list", "^linked_list$", ListPrinter)
    return pp


class _PageFunction(gdb.Function):
    def __init__(self, name, key, default):
        super().__init__(name)
        self.key, self.default = key, default

    def invoke(self, addr):
        from .context import current
        info = describe_page(current(), int(addr))
        return info.get(self.key, self.default) if info.get("block") is not None else self.default


class AllocStatus(_PageFunction):
    """$alloc_status(ADDR): "fresh", "free", "allocated", "special", or "none"
    (no area / no consistent block)."""

    def __init__(self):
        super().__init__("alloc_status", "status", "none")


class AllocOrder(_PageFunction):
    """$alloc_order(ADDR): the order of the block holding ADDR, -1 if none."""

    def __init__(self):
        super().__init__("alloc_order", "order", -1)


def register() -> None:
    gdb.printing.register_pretty_printer(None, _build(), replace=True)
    AllocStatus()
    AllocOrder()
