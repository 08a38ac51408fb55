"""What one allocator call writes, as the design says: its footprint.

A model runs beside the guest (`alloc trace`), each call in both; after
each call the footprint (the metadata bytes, list nodes and heads, and the
descriptor and mask bytes the model wrote) is read back from the guest and
recorded with the call. Replay runs the same calls in the same model from
the same start, so it predicts the same footprints, and names the first
call whose recorded bytes are not the model's: the call that departed from
the design, not just the end state that shows it.

Recording reads a few small ranges a call (a handful of list nodes, a run
of metadata bytes), never the whole state.
"""

from __future__ import annotations

from .errors import ModelError
from .reference import Allocator

__all__ = ["Footprint", "spans_of", "merge"]


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(addr, size) ranges sorted, overlapping or touching ones merged."""
    out: list[tuple[int, int]] = []
    for addr, size in sorted(ranges):
        if out and addr <= out[-1][0] + out[-1][1]:
            lo = out[-1][0]
            out[-1] = (lo, max(out[-1][1], addr + size - lo))
        else:
            out.append((addr, size))
    return out


def spans_of(before: bytes, after: bytes, base: int, slack: int = 16) -> list[tuple[int, int]]:
    """(addr, size) of the byte runs that differ between two equal-length
    images of the memory at `base`, runs less than `slack` bytes apart
    joined: a list head's changed pointer bytes are one range with the
    unchanged bytes between (compared too: they must be equal), which keeps
    each call's record short to write and to parse."""
    out: list[tuple[int, int]] = []
    i, n = 0, min(len(before), len(after))
    while i < n:
        if before[i] != after[i]:
            j = i
            while j < n and before[j] != after[j]:
                j += 1
            if out and base + i - (out[-1][0] + out[-1][1]) < slack:
                out[-1] = (out[-1][0], base + j - out[-1][0])
            else:
                out.append((base + i, j - i))
            i = j
        else:
            i += 1
    return out


class Footprint:
    """A model allocator started from the guest's state, and after each call
    the ranges that call wrote in it. `broken` once the model refused a
    call (it can no longer predict; what was recorded so far stands)."""

    def __init__(self, al: Allocator):
        self.al = al
        al.track_touched()
        self.pop_touched_meta_all()
        self.desc = self._descriptors()
        self.broken: str | None = None

    def _descriptors(self) -> bytes:
        al = self.al
        mem = al.memory                                  # syncs pending writes
        return mem.read(al.areas_addr, al.layout.areas_size) + mem.read(al.mask_addr, 4)

    def pop_touched_meta_all(self) -> list[tuple[int, int]]:
        al = self.al
        out = []
        for a in al.areas:
            if a is not None:
                out += [(a.page_states + lo, hi - lo) for lo, hi in al.pop_touched_meta(a.slot)]
        return out

    def call(self, func: str, args: tuple[int, ...]) -> list[tuple[int, int]] | None:
        """Run the call in the model; the (addr, size) ranges it wrote, or
        None once the model cannot follow (it refused this call or an
        earlier one)."""
        if self.broken is not None:
            return None
        al = self.al
        try:
            getattr(al, func)(*args)
        except ModelError as e:
            self.broken = f"{func}{tuple(args)}: {e}"
            return None
        ptr2 = 2 * al.layout.ptr_size
        lo, hi = al.areas_addr, al.areas_addr + al.layout.areas_size
        ranges = [(n, ptr2) for n in al.pending_nodes() if not lo <= n < hi]
        ranges += self.pop_touched_meta_all()
        desc = self._descriptors()
        if desc != self.desc:
            size = al.layout.areas_size
            ranges += spans_of(self.desc[:size], desc[:size], al.areas_addr)
            ranges += spans_of(self.desc[size:], desc[size:], al.mask_addr)
            self.desc = desc
        return merge(ranges)

    def model_bytes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        mem = self.al.memory
        return [mem.read(addr, size) for addr, size in ranges]
