"""Circular lists with an embedded head (lib/list.h), walked defensively.

A walk follows `next` from the head and stops at the first of: the head
(a well-formed end), a node seen before (a cycle that misses the head), a
pointer that is not a plausible node, a node it cannot read, another list's
head, or more nodes than the area has pages. Every node is visited once: a
cycle is caught at its first repeat (the nodes walked are marked, a byte
per page or a set; no re-walk, as Brent's algorithm would need), and the
page count bounds the rest. Each
node's `prev` is kept so link checks need no second read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, cast

__all__ = ["ListWalk", "walk_list", "WALK_ENDS", "FOREIGN", "PageView"]

WALK_ENDS = ("head", "repeat", "foreign", "null", "unreadable", "other-head", "limit")

# What a node reader returns for an address that cannot be a node at all
# (None: a plausible node that cannot be read).
FOREIGN = ("foreign",)


@dataclass(frozen=True)
class ListWalk:
    head: int
    head_prev: int
    nodes: tuple[int, ...]
    prevs: tuple[int, ...]       # the prev pointer read from each node
    end: str                     # one of WALK_ENDS
    end_pointer: int             # the pointer that ended the walk

    @property
    def complete(self) -> bool:
        return self.end == "head"

    @property
    def last(self) -> int:
        """The node whose next ended the walk (the head for an empty walk)."""
        return self.nodes[-1] if self.nodes else self.head


@dataclass(frozen=True)
class PageView:
    """An area's pages as one buffer: nodes inside it are unpacked in the
    walk's own loop (millions of nodes on a fragmented area). `lo` is the
    address of the buffer's first byte; no list head may lie inside."""
    lo: int
    view: memoryview
    page_mask: int
    unpack: Callable


def walk_list(head: int, head_prev: int, head_next: int,
              node_at: Callable[[int], "tuple[int, int] | tuple[str] | None"], limit: int,
              heads: Mapping[int, object] = {}, pages: PageView | None = None) -> ListWalk:
    """Walk from `head` whose (prev, next) are already known. `node_at(addr)`
    gives a node's (prev, next), FOREIGN when addr cannot be a node (checked
    before anything is read), or None when it cannot be read; `pages`, when
    given, serves the nodes inside it without calls."""
    if head_next == head:             # most of the 52 lists are empty
        return ListWalk(head, head_prev, (), (), "head", head)
    nodes: list[int] = []
    prevs: list[int] = []
    seen: set[int] = set()
    add, push, push_prev = seen.add, nodes.append, prevs.append
    cur = head_next
    n = 0
    if pages is not None:
        lo, v, pmask, unpack = pages.lo, pages.view, pages.page_mask, pages.unpack
        shift = pages.page_mask.bit_length()
        end_off = len(v)
        # nodes walked, a byte per page: cheaper than a set of addresses
        walked = bytearray(end_off >> shift)
    else:
        lo, end_off = 0, 0
    while True:
        off = cur - lo
        if 0 <= off < end_off and not off & pmask:
            i = off >> shift
            if walked[i]:
                end = "repeat"
            elif n >= limit:
                end = "limit"
            else:
                walked[i] = 1
                p, cur_next = unpack(v, off)
                push(cur)
                push_prev(p)
                n += 1
                cur = cur_next
                continue
        elif cur == head:
            end = "head"
        elif cur == 0:
            end = "null"
        elif cur in seen:
            end = "repeat"
        elif cur in heads:
            end = "other-head"
        elif n >= limit:
            end = "limit"
        else:
            got = node_at(cur)
            if got is FOREIGN:
                end = "foreign"
            elif got is None:
                end = "unreadable"
            else:
                prev, nxt = cast("tuple[int, int]", got)
                push(cur)
                push_prev(prev)
                add(cur)
                n += 1
                cur = nxt
                continue
        return ListWalk(head, head_prev, tuple(nodes), tuple(prevs), end, cur)
