"""A guest for drive without QEMU: the reference allocator itself, with
defects planted by name, behind drive's Guest protocol (call, read,
write). Writes go to its memory; the next call decodes the allocator back
from it, as a guest's code would find it."""

from __future__ import annotations

from allocview.model.constants import AREA_ANY_NUMBER, FLAG_FRESH
from allocview.model.drive import CallDied, GuestGone
from allocview.model.entry_points import VOID_FUNCS
from allocview.model.layout import layout_for
from allocview.model.reference import Allocator, get_order
from allocview.model.snapshot import decode

# what each planted defect does (the fixture guest's multi build has the same)
DEFECTS = ("hang", "abort", "unreserve", "memalign", "nomerge", "gone")


class FakeGuest:
    def __init__(self, arch: str = "x86_64", fmt: str = "2021", defects=(), pages: int = 0x4000):
        self.layout = layout_for(arch, fmt)
        self.defects = set(defects)
        al = Allocator(self.layout, areas_addr=0x2000_0000)
        al.init_area(AREA_ANY_NUMBER, 0x800, 0x800 + pages)
        al.sync()
        self.al = al
        self.stale = False
        self.calls = 0

    def snapshot(self):
        return decode(self.al.memory, self.layout, self.al.areas_addr, self.al.mask_addr)

    def _fresh_al(self) -> None:
        if self.stale:
            snap = self.snapshot()
            al = Allocator.from_state(self.layout, list(snap.state()), snap.areas_mask or 0,
                                      areas_addr=self.al.areas_addr, mask_addr=self.al.mask_addr)
            al.sync()
            self.al, self.stale = al, False

    def call(self, func, args):
        self._fresh_al()
        self.calls += 1
        d = self.defects
        if "hang" in d and func == "alloc_pages_flags" and args[1] & FLAG_FRESH and args[0] == 3:
            raise CallDied("hang", f"{func}{args} did not return")
        if "abort" in d and func == "reserve_pages" and args[1] == 11:
            raise CallDied("abort", f"{func}{args} reached abort()", "bug: reserve of 11 pages\n")
        if "gone" in d and func == "alloc_pages_flags" and args[0] == 7:
            self.defects = {"dead"}
            raise GuestGone(f"{func}{args}: QEMU exited")
        if "dead" in d:
            raise GuestGone("the guest is gone")
        if "unreserve" in d and func == "unreserve_pages" and args[1] > 1:
            args = (args[0], args[1] - 1)
        if "memalign" in d and func == "memalign_pages_flags":
            ps = self.layout.page_size
            size_order = get_order(-(-args[1] // ps))
            args = (min(args[0], ps << size_order), args[1], args[2])
        if "nomerge" in d and func == "free_pages":
            return self._free_unmerged(args[0])
        r = getattr(self.al, func)(*args)
        self.al.sync()
        return None if func in VOID_FUNCS else r

    def _free_unmerged(self, addr):
        """free_pages without merging: mark the block FREE, push it on its list."""
        al = self.al
        pfn = al.pfn(addr)
        a = next(x for x in al.areas if x and x.base <= pfn < x.top)
        i = pfn - a.base
        order = a.meta[i] & 0x3F
        a.meta[i:i + (1 << order)] = bytes([0x40 | order]) * (1 << order) \
            if self.layout.format == "2021" else bytes([order]) * (1 << order)
        al._push_front(al.head(a.slot, order), addr)
        if self.layout.format == "2021" and order > a.max_order:
            a.max_order = order
        al.sync()

    def read(self, addr, size):
        if self.stale:                 # being written: the bytes as written
            return self.al._memory.read(addr, size)
        return self.al.memory.read(addr, size)

    def write(self, addr, data):
        self.al.memory.write(addr, data)
        self.stale = True
