"""A file mapped into memory whose pieces stand for guest physical ranges:
the shared core of dump, raw and memfile sources.

The file is mmap'ed read-only and never read whole, so a 16 GiB dump costs
only the pages a snapshot touches. Extents are kept sorted for bisect.
"""

from __future__ import annotations

import mmap
import os
from bisect import bisect_right
from dataclasses import dataclass

from allocview.model.errors import AllocviewError, MemoryReadError
from allocview.model.files import require_regular

from ..errors import SourceError
from . import Source

__all__ = ["Extent", "MappedFile", "MappedSource", "open_file"]


@dataclass(frozen=True)
class Extent:
    """Guest physical [phys, phys + size) lives at file offset `offset`."""
    phys: int
    size: int
    offset: int

    @property
    def end(self) -> int:
        return self.phys + self.size


def open_file(path: str, label: str):
    """The file opened for reading, or SourceError naming it (a FIFO or
    device is refused before open() could block on it)."""
    try:
        require_regular(path, label)
    except AllocviewError as e:
        raise SourceError(str(e)) from None
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise SourceError(f"{label} {path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{label} {path}: is a directory") from None
    except OSError as e:
        raise SourceError(f"{label} {path}: cannot open: {e.strerror or e}") from None
    return f


class MappedFile:
    """Extents of one open file. Reads outside every extent raise
    MemoryReadError(`gap_reason`); reads of an extent past the end of the
    file (a truncated dump) raise MemoryReadError(`short_reason`)."""

    def __init__(self, f, extents: list[Extent], *, label: str,
                 gap_reason: str = "not in the dump", short_reason: str = "truncated dump"):
        self.file = f
        self.label = label
        self.size = os.fstat(f.fileno()).st_size
        self.gap_reason = gap_reason
        self.short_reason = short_reason
        try:
            # ACCESS_READ is MAP_SHARED: a RAM file shows the guest's writes.
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
        except (OSError, ValueError) as e:
            raise SourceError(f"{label}: cannot map the file: {e}") from None
        self.extents = _disjoint(extents)
        self._starts = [e.phys for e in self.extents]

    def view(self, phys: int, size: int) -> memoryview | None:
        """The bytes of [phys, phys + size) in place, when one extent of the
        file holds them all."""
        i = bisect_right(self._starts, phys) - 1
        if i < 0 or self.mm is None:
            return None
        e = self.extents[i]
        off = phys - e.phys
        if size < 0 or phys + size > e.end or off + size > self.available(e):
            return None
        return memoryview(self.mm)[e.offset + off:e.offset + off + size]

    def available(self, e: Extent) -> int:
        """Bytes of extent e the file really holds."""
        return max(0, min(e.size, self.size - e.offset))

    def read(self, phys: int, size: int) -> bytes:
        if size == 0:
            return b""
        i = bisect_right(self._starts, phys) - 1
        pos, end, parts = phys, phys + size, []
        while pos < end:
            e = self.extents[i] if 0 <= i < len(self.extents) else None
            if e is None or not e.phys <= pos < e.end:
                raise MemoryReadError(phys, size, self.gap_reason)
            n = min(end, e.end) - pos
            off = pos - e.phys
            if off + n > self.available(e):
                raise MemoryReadError(phys, size, self.short_reason)
            parts.append(self.mm[e.offset + off:e.offset + off + n])
            pos += n
            i += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        self.file.close()


def _disjoint(extents: list[Extent]) -> list[Extent]:
    """Sorted, overlaps trimmed: a paging dump can list one physical page
    under several virtual mappings; the bytes are the same, keep the first."""
    out: list[Extent] = []
    for e in sorted((e for e in extents if e.size > 0), key=lambda e: (e.phys, -e.size)):
        if out and e.phys < out[-1].end:
            cut = out[-1].end - e.phys
            if cut >= e.size:
                continue
            e = Extent(e.phys + cut, e.size - cut, e.offset + cut)
        out.append(e)
    return out


class MappedSource(Source):
    """A Source whose guest memory is one MappedFile, `_file` (dumps, raw
    files, RAM files): reads and closing in one place."""

    _file: MappedFile

    def read_phys(self, phys: int, size: int) -> bytes:
        return self._file.read(phys, size)

    def ram_phys(self) -> list[tuple[int, int]]:
        return [(e.phys, e.end) for e in self._file.extents]

    def view(self, addr: int, size: int) -> memoryview | None:
        if self.closed:
            return None
        return self._file.view(addr - self.phys_offset, size)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()
