"""The allocator's state as a comparable value: what the decoder finds in
guest memory and what the reference allocator holds, compared by replay
and drive. Neither side imports the other: both build these."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AreaState"]


@dataclass(frozen=True)
class AreaState:
    """One area: its descriptor, metadata bytes, and the nodes of each
    free list in list order."""
    slot: int
    base: int
    top: int
    page_states: int
    max_order: int | None
    metadata: bytes
    freelists: tuple[tuple[int, ...], ...]
