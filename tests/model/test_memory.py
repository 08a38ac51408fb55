"""model.memory: the cache every CLI snapshot reads through keeps a
batching source's batching (the decoder prefetches list nodes in one
read_many, which is one QMP round trip or one gdb/MI batch)."""

from allocview.model.inject import scenario
from allocview.model.layout import layout_for
from allocview.model.memory import BytesMemory, CachedMemory
from allocview.model.snapshot import decode


class Batching:
    """A memory that counts single reads and batches."""

    def __init__(self, inner):
        self.inner = inner
        self.reads = 0
        self.batches: list[int] = []

    def read(self, addr, size):
        self.reads += 1
        return self.inner.read(addr, size)

    def read_many(self, ranges):
        self.batches.append(len(ranges))
        out = []
        for a, n in ranges:
            try:
                out.append(self.inner.read(a, n))
            except Exception:  # noqa: BLE001 - unreadable: None, as the protocol says
                out.append(None)
        return out


def test_decode_through_the_cache_prefetches_nodes_in_one_batch():
    al = scenario(layout_for("x86_64", "2021"))
    src = Batching(al.memory)
    mem = CachedMemory(src)
    snap = decode(mem, al.layout, al.areas_addr, al.mask_addr)
    nodes = sum(len(fl) for a in al.state() for fl in a.freelists)
    assert snap.state() == al.state()
    assert src.batches == [nodes] and nodes > 3
    # globals, mask and one metadata read per area; no node read alone
    assert src.reads == 2 + len(snap.areas)
    # a second decode costs the source nothing
    decode(mem, al.layout, al.areas_addr, al.mask_addr)
    assert src.batches == [nodes] and src.reads == 2 + len(snap.areas)


def test_read_many_serves_cached_ranges_and_passes_failures_through():
    mem = CachedMemory(BytesMemory(bytes(range(256)), base=0x1000))
    assert mem.read(0x1010, 4) == bytes([16, 17, 18, 19])
    assert mem.read_many([(0x1010, 4), (0x1020, 2), (0x5000, 4)]) == \
        [bytes([16, 17, 18, 19]), bytes([32, 33]), None]
    assert mem.reads == 3          # the first read, then the two ranges it lacked
