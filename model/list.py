"""Circular lists with an embedded head (lib/list.h), walked defensively.

A walk follows `next` from the head and stops at the first of: the head
(a well-formed end), a node seen before (a cycle that misses the head), a
pointer that is not a plausible node, a node it cannot read, another list's
head, or more nodes than the area has pages. It records every node's `prev`
so link checks need no second read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

__all__ = ["ListWalk", "walk_list", "WALK_ENDS"]

WALK_ENDS = ("head", "repeat", "foreign", "null", "unreadable", "other-head", "limit")


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


def walk_list(head: int, head_prev: int, head_next: int,
              read_node: Callable[[int], tuple[int, int] | None],
              plausible: Callable[[int], bool], limit: int,
              heads: Mapping[int, object] = {}) -> ListWalk:
    """Walk from `head` whose (prev, next) are already known. `read_node`
    gives a node's (prev, next) or None; `plausible` says whether an
    address may be a node at all (checked before it is read)."""
    if head_next == head:             # most of the 52 lists are empty
        return ListWalk(head, head_prev, (), (), "head", head)
    nodes: list[int] = []
    prevs: list[int] = []
    seen: set[int] = set()
    cur = head_next
    while True:
        if cur == head:
            end = "head"
        elif cur == 0:
            end = "null"
        elif cur in seen:
            end = "repeat"
        elif cur in heads:
            end = "other-head"
        elif len(nodes) >= limit:
            end = "limit"
        elif not plausible(cur):
            end = "foreign"
        else:
            got = read_node(cur)
            if got is None:
                end = "unreadable"
            else:
                nodes.append(cur)
                prevs.append(got[0])
                seen.add(cur)
                cur = got[1]
                continue
        return ListWalk(head, head_prev, tuple(nodes), tuple(prevs), end, cur)
