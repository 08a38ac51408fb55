"""Guest memory as the model sees it: `read(addr, size) -> bytes`.

Sources (gdb, QMP, dump files, the reference allocator) implement `Memory`;
decoders never know where bytes come from. A read that cannot be served
raises `MemoryReadError` naming the range.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from .errors import MemoryReadError

__all__ = ["Memory", "SparseMemory", "BytesMemory", "CachedMemory", "read_many", "ram_ranges",
           "view"]


@runtime_checkable
class Memory(Protocol):
    """Guest memory. Beside `read`, a memory may offer (and callers ask
    through the functions below, which cope with their absence):

    - `read_many(ranges)`: a batch, where one is cheaper than many reads;
    - `ram_ranges()`: the guest addresses RAM covers, [(start, end)]
      sorted, or None when unknown: work is bounded by it;
    - `view(addr, size)`: a zero-copy memoryview of a range it holds in one
      piece (a mapped file), or None.
    """

    def read(self, addr: int, size: int) -> bytes:
        """`size` bytes at guest address `addr`, or MemoryReadError."""
        ...


def ram_ranges(memory: Memory) -> list[tuple[int, int]] | None:
    """Where guest RAM is, when the memory knows."""
    fn = getattr(memory, "ram_ranges", None)
    return fn() if fn is not None else None


def view(memory: Memory, addr: int, size: int) -> memoryview | None:
    """A zero-copy view of [addr, addr + size), when the memory has one."""
    fn = getattr(memory, "view", None)
    return fn(addr, size) if fn is not None else None


def merged(ranges) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping and touching ones joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def read_many(memory: Memory, ranges: Iterable[tuple[int, int]]) -> list[bytes | None]:
    """Read several small ranges; None where one is unreadable. A source
    with a cheaper batched path provides `read_many` itself."""
    batched = getattr(memory, "read_many", None)
    if batched is not None:
        return batched(list(ranges))
    return read_each(memory, ranges)


def read_each(memory: Memory, ranges: Iterable[tuple[int, int]]) -> list[bytes | None]:
    """`read_many` one read at a time: what a memory without batching does."""
    out: list[bytes | None] = []
    for addr, size in ranges:
        try:
            out.append(memory.read(addr, size))
        except MemoryReadError:
            out.append(None)
    return out


class BytesMemory:
    """One contiguous buffer at a base address (a raw dump, a test blob)."""

    def __init__(self, data: bytes | bytearray | memoryview, base: int = 0):
        self.data = data
        self.base = base

    def read(self, addr: int, size: int) -> bytes:
        off = addr - self.base
        if size < 0 or off < 0 or off + size > len(self.data):
            raise MemoryReadError(addr, size, "outside the buffer")
        return bytes(self.data[off:off + size])

    def ram_ranges(self) -> list[tuple[int, int]]:
        return [(self.base, self.base + len(self.data))]

    def view(self, addr: int, size: int) -> memoryview | None:
        off = addr - self.base
        if size < 0 or off < 0 or off + size > len(self.data):
            return None
        return memoryview(self.data)[off:off + size]


class SparseMemory:
    """Mapped ranges whose untouched bytes read as zero.

    Storage is one bytearray per touched chunk, so a 64 GiB mapping costs
    nothing until written. `attach` maps a caller's own buffer (the reference
    allocator's metadata bytes) so reads see its writes without copying.
    """

    CHUNK_SHIFT = 16
    CHUNK = 1 << CHUNK_SHIFT

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int]] = []          # mapped [start, end)
        self._chunks: dict[int, bytearray] = {}
        self._attached: list[tuple[int, bytearray]] = []  # (addr, buffer)

    # -- mapping
    def map(self, addr: int, size: int) -> None:
        """Make [addr, addr+size) readable (zero until written)."""
        if size <= 0:
            return
        self._ranges.append((addr, addr + size))
        self._ranges.sort()

    def attach(self, addr: int, buffer: bytearray) -> None:
        """Map `buffer` at addr; the memory reads and writes it in place."""
        self._attached.append((addr, buffer))
        self.map(addr, len(buffer))

    def ram_ranges(self) -> list[tuple[int, int]]:
        return merged(self._ranges)

    def is_mapped(self, addr: int, size: int = 1) -> bool:
        end = addr + size
        for start, stop in self._ranges:
            if start <= addr < stop:
                if end <= stop:
                    return True
                addr = stop
        return size <= 0

    # -- access
    def read(self, addr: int, size: int) -> bytes:
        if size < 0 or not self.is_mapped(addr, size):
            raise MemoryReadError(addr, size, "not mapped")
        off = addr & (self.CHUNK - 1)
        if off + size <= self.CHUNK and not self._attached_overlap(addr, size):
            chunk = self._chunks.get(addr >> self.CHUNK_SHIFT)   # the list-node case
            return bytes(size) if chunk is None else bytes(chunk[off:off + size])
        for base, buf in self._attached:
            if base <= addr and addr + size <= base + len(buf):
                return bytes(buf[addr - base:addr - base + size])
        out = bytearray(size)
        self._copy_chunks_into(out, addr)
        for base, buf in self._attached:
            lo, hi = max(base, addr), min(base + len(buf), addr + size)
            if lo < hi:
                out[lo - addr:hi - addr] = buf[lo - base:hi - base]
        return bytes(out)

    def _attached_overlap(self, addr: int, size: int) -> bool:
        for base, buf in self._attached:
            if base < addr + size and addr < base + len(buf):
                return True
        return False

    def _copy_chunks_into(self, out: bytearray, addr: int) -> None:
        size = len(out)
        pos = addr
        end = addr + size
        chunks = self._chunks
        while pos < end:
            key = pos >> self.CHUNK_SHIFT
            off = pos & (self.CHUNK - 1)
            n = min(self.CHUNK - off, end - pos)
            chunk = chunks.get(key)
            if chunk is not None:
                out[pos - addr:pos - addr + n] = chunk[off:off + n]
            pos += n

    def write(self, addr: int, data: bytes) -> None:
        size = len(data)
        if not self.is_mapped(addr, size):
            raise MemoryReadError(addr, size, "write to unmapped memory")
        for base, buf in self._attached:
            if base <= addr and addr + size <= base + len(buf):
                buf[addr - base:addr - base + size] = data
                return
        pos, end = addr, addr + size
        while pos < end:
            key = pos >> self.CHUNK_SHIFT
            off = pos & (self.CHUNK - 1)
            n = min(self.CHUNK - off, end - pos)
            chunk = self._chunks.get(key)
            if chunk is None:
                chunk = self._chunks[key] = bytearray(self.CHUNK)
            chunk[off:off + n] = data[pos - addr:pos - addr + n]
            pos += n
        for base, buf in self._attached:  # a write straddling an attached buffer
            lo, hi = max(base, addr), min(base + len(buf), end)
            if lo < hi:
                buf[lo - base:hi - base] = data[lo - addr:hi - addr]

    def zero(self, addr: int, size: int) -> None:
        """Zero a range cheaply: whole chunks are dropped, not written."""
        end = addr + size
        pos = addr
        while pos < end:
            key = pos >> self.CHUNK_SHIFT
            off = pos & (self.CHUNK - 1)
            n = min(self.CHUNK - off, end - pos)
            if n == self.CHUNK:
                self._chunks.pop(key, None)
            elif key in self._chunks:
                self._chunks[key][off:off + n] = bytes(n)
            pos += n
        for base, buf in self._attached:
            lo, hi = max(base, addr), min(base + len(buf), end)
            if lo < hi:
                buf[lo - base:hi - base] = bytes(hi - lo)

    def copy(self) -> "SparseMemory":
        other = SparseMemory()
        other._ranges = list(self._ranges)
        other._chunks = {k: bytearray(v) for k, v in self._chunks.items()}
        other._attached = [(a, bytearray(b)) for a, b in self._attached]
        return other


class CachedMemory:
    """Remembers every range read, so walkers that revisit a node (the
    checker after the decoder) cost the source nothing more. `record`:
    every byte used must pass through the cache (for saving them), so the
    inner memory's views are not offered."""

    def __init__(self, inner: Memory, *, record: bool = False):
        self.inner = inner
        self.record = record
        self._cache: dict[tuple[int, int], bytes] = {}
        self.reads = 0

    def ram_ranges(self) -> list[tuple[int, int]] | None:
        return ram_ranges(self.inner)

    def view(self, addr: int, size: int) -> memoryview | None:
        return None if self.record else view(self.inner, addr, size)

    def ranges(self) -> list[tuple[int, bytes]]:
        """Every (address, bytes) read so far, by address."""
        return sorted((addr, data) for (addr, _n), data in self._cache.items())

    def read(self, addr: int, size: int) -> bytes:
        key = (addr, size)
        got = self._cache.get(key)
        if got is None:
            self.reads += 1
            got = self._cache[key] = self.inner.read(addr, size)
        return got

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """Cached ranges from the cache, the rest in one batch of the inner
        memory's (so wrapping a batching source keeps its batching)."""
        out = [self._cache.get((a, n)) for a, n in ranges]
        missing = [i for i, d in enumerate(out) if d is None]
        if missing:
            got = read_many(self.inner, [ranges[i] for i in missing])
            self.reads += len(missing)
            for i, d in zip(missing, got):
                out[i] = d
                if d is not None:
                    self._cache[ranges[i]] = d
        return out
