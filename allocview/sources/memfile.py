"""Guest RAM shared through a file:

    -object memory-backend-file,id=ram,size=S,mem-path=FILE,share=on
    -machine memory-backend=ram

The file is the guest's RAM block, offset 0 first. On x86 `pc` and `q35`
machines QEMU maps its first `below_4g` bytes at physical 0 and the rest at
4 GiB (above the PCI hole); with a QMP socket beside it, QEMU's own flat
view places it on any machine (`qmp.memfile_extents`). Reads see the running guest live: a walk over a
guest that allocates meanwhile can see torn lists. Pause it (a `QmpPauser`,
which `open_source(memfile=..., qmp=...)` adds) for a consistent snapshot.
"""

from __future__ import annotations

import os

from ..errors import SourceError
from .mapped import Extent, MappedFile, MappedSource, open_file

__all__ = ["MemfileSource", "x86_below_4g", "ram_extents", "MACHINES"]

GiB = 1 << 30
FOUR_GIB = 4 * GiB
MACHINES = ("pc", "q35")


def x86_below_4g(ram_size: int, machine: str = "pc", max_ram_below_4g: int = 0) -> int:
    """Bytes of RAM QEMU maps below 4 GiB for `-m ram_size` (QEMU's
    pc_init1 / pc_q35_init split). max_ram_below_4g: the machine property
    of that name, 0 when not set."""
    if machine == "pc":
        lowmem = max_ram_below_4g or 0xE0000000          # 3.5 GiB, the legacy split
        if ram_size >= lowmem and lowmem > 0xC0000000:
            lowmem = 0xC0000000                          # gigabyte aligned: 3 GiB
    elif machine == "q35":
        lowmem = 0x80000000 if ram_size >= 0xB0000000 else 0xB0000000
        if max_ram_below_4g and lowmem > max_ram_below_4g:
            lowmem = max_ram_below_4g
    else:
        raise SourceError(f"machine {machine!r}: the RAM map is known for "
                          f"{' and '.join(MACHINES)} only")
    return min(ram_size, lowmem)


def ram_extents(ram_size: int, below_4g: int) -> list[Extent]:
    """RAM offsets -> guest physical: [0, below_4g) at 0, the rest at 4 GiB."""
    if not 0 < below_4g <= FOUR_GIB:
        raise SourceError(f"RAM below 4 GiB of {below_4g:#x} bytes is not in (0, 4 GiB]")
    below = min(below_4g, ram_size)
    out = [Extent(0, below, 0)]
    if ram_size > below:
        out.append(Extent(FOUR_GIB, ram_size - below, below))
    return out


class MemfileSource(MappedSource):
    """Guest physical memory from a shared RAM file, mmap'ed.

    machine: "pc" or "q35", for QEMU's split of RAM around the PCI hole.
    below_4g: the exact bytes of RAM below 4 GiB (overrides the machine's
    rule; read it from `info mtree` when the machine sets max-ram-below-4g).
    pauser: a QmpPauser (or any object with close()) held while open, so the
    guest stays paused during reads.
    """

    def __init__(self, path: str, *, machine: str = "pc", below_4g: int | None = None,
                 ram_size: int | None = None, phys_offset: int = 0, pauser=None,
                 extents: list[Extent] | None = None):
        """extents: where QEMU itself maps the file (from its flat view,
        any machine); without them, the pc/q35 rule places it."""
        super().__init__(f"memfile {path}", phys_offset=phys_offset)
        self.path = path
        f = open_file(path, "--memfile")
        try:
            size = os.fstat(f.fileno()).st_size
            if not size:
                raise SourceError(f"--memfile {path}: empty file (is QEMU running with "
                                  "memory-backend-file,share=on?)")
            self.ram_size = ram_size if ram_size is not None else size
            self.placed_by = "QEMU's flat view" if extents else f"the {machine} rule"
            if extents:
                self.below_4g = None
            else:
                self.below_4g = below_4g if below_4g is not None else \
                    x86_below_4g(self.ram_size, machine)
                extents = ram_extents(self.ram_size, self.below_4g)
            self._file = MappedFile(f, extents,
                                    label=f"--memfile {path}", gap_reason="not guest RAM",
                                    short_reason="beyond the end of the RAM file")
        except BaseException:
            f.close()
            raise
        self.pauser = pauser

    def close(self) -> None:
        if not self.closed and self.pauser is not None:
            self.pauser.close()
        super().close()
