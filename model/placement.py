"""Where a test program sits in guest memory, found from the guest's own
bytes: the program's code (samples of its loaded image, at link
addresses) is looked for in memory.

A fixed-address program (x86, s390x) must be found at its link address,
else the ELF is not the one the guest runs. A relocatable one (aarch64,
ppc64, riscv64: linked at 0, relocated by itself where it was loaded) is
tried at the arch's usual load addresses, then searched for in guest RAM,
which works on any machine. Code is what is compared: its bytes do not
change when a program relocates itself (its pointers do), and a few
samples of it tell one test from another.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MemoryReadError
from .memory import Memory, ram_ranges, view

__all__ = ["Placement", "place", "verify", "MIN_MATCH"]

CHUNK = 16 << 20               # RAM searched this much at a time
MIN_MATCH = 0.75               # share of samples that must match


@dataclass(frozen=True)
class Placement:
    """offset: add to link addresses for the guest's (0 for a program
    where it was linked). found: True the code is there, False it is
    definitely not (the ELF does not match the guest), None it could not
    be told (the code is not in the memory read: a saved snapshot). how:
    one line for the user and the report."""
    offset: int
    found: bool | None
    how: str

    def to_json(self) -> dict:
        return {"load_offset": self.offset, "found": self.found, "how": self.how}


def verify(memory: Memory, samples: list[tuple[int, bytes]], offset: int) -> bool | None:
    """Whether the samples are at their link address + offset: True (at
    least MIN_MATCH of those readable match), False, None (none readable)."""
    readable = same = 0
    for addr, data in samples:
        try:
            got = memory.read(addr + offset, len(data))
        except MemoryReadError:
            continue
        readable += 1
        same += got == data
    if not readable:
        return None
    return same >= MIN_MATCH * readable


def place(memory: Memory, samples: list[tuple[int, bytes]], *, relocatable: bool,
          candidates: tuple[int, ...] = (), link_base: int = 0, forced: int | None = None,
          search: bool = True, align: int = 4096) -> Placement:
    """Find the program. candidates: load addresses to try first (where the
    first loadable byte, at link address `link_base`, usually lands);
    forced: the user's --load-offset, only verified; search: scan guest RAM
    (when the memory knows where it is) for a relocatable program."""
    if not samples:
        return Placement(forced or 0, None, "the ELF has no code to compare")
    if forced is not None:
        ok = verify(memory, samples, forced)
        how = f"load offset {forced:#x} given"
        if ok is False:
            how += ", but the program's code is not there"
        return Placement(forced, ok, how)
    if not relocatable:
        ok = verify(memory, samples, 0)
        if ok is False:
            return Placement(0, False, "its code is not at its link addresses in guest memory: "
                                       "the guest runs another program?")
        return Placement(0, ok, "at its link addresses" if ok else
                         "at its link addresses (its code is not in this memory to compare)")
    unreadable = True
    for load in candidates:
        ok = verify(memory, samples, load - link_base)
        if ok:
            return Placement(load - link_base, True, f"loaded at {load:#x} (the arch's usual "
                                                       f"load address; its code is there)")
        unreadable &= ok is None
    if search:
        got = _search(memory, samples, align)
        if got is not None:
            return Placement(got, True, f"loaded at {link_base + got:#x} (found by its code in "
                                        f"guest RAM)")
        if ram_ranges(memory) is not None:
            return Placement(0, False, "its code is nowhere in guest RAM: the guest runs "
                                       "another program?")
    if unreadable:
        return Placement(0, None, "relocatable, and its code is not in this memory to find it "
                                  "by (give --load-offset)")
    return Placement(0, False, "relocatable, and not at the arch's usual load addresses "
                               "(give --load-offset)")


def _search(memory: Memory, samples: list[tuple[int, bytes]], align: int) -> int | None:
    """The offset at which the samples match, found by looking for the
    least uniform sample in guest RAM (offsets that are multiples of
    `align` only)."""
    ram = ram_ranges(memory)
    if not ram:
        return None
    addr0, needle = max(samples, key=lambda s: len(set(s[1])))   # the least uniform one
    overlap = len(needle) - 1
    for lo, hi in ram:
        pos = lo
        while pos < hi:
            end = min(hi, pos + CHUNK + overlap)
            seen = view(memory, pos, end - pos)
            if seen is not None:
                data = bytes(seen)
            else:
                try:
                    data = memory.read(pos, end - pos)
                except MemoryReadError:
                    pos += CHUNK
                    continue
            i = data.find(needle)
            while i >= 0:
                offset = pos + i - addr0
                if offset % align == 0 and verify(memory, samples, offset):
                    return offset
                i = data.find(needle, i + 1)
            pos += CHUNK
    return None
