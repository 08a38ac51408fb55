"""QEMU `dump-guest-memory` ELF cores (`DumpSource`), and the dispatch that
tells them from raw pmemsave files and kdump-compressed dumps.

In a QEMU core each PT_LOAD segment holds guest physical memory from
`p_paddr` (paging=false sets p_paddr to the guest physical address), at
file offset `p_offset`, `p_filesz` bytes. pyelftools parses the headers;
the data is read through mmap.
"""

from __future__ import annotations

from elftools.elf.elffile import ELFFile

from ..errors import SourceError, first_line
from .mapped import Extent, MappedFile, MappedSource, open_file
from .raw import RawSource

__all__ = ["DumpSource", "open_dump", "KDUMP_SIGNATURES"]

ELF_MAGIC = b"\x7fELF"
# makedumpfile / dump-guest-memory format=kdump-*: "KDUMP   " disk dump
# header; makedumpfile -F (flattened): "makedumpfile" signature.
KDUMP_SIGNATURES = (b"KDUMP   ", b"makedumpfile")
_EHDR_SIZE = {1: 52, 2: 64}     # by EI_CLASS


def open_dump(path: str, *, raw_base: int | None = None, phys_offset: int = 0) -> MappedSource:
    """A DumpSource for an ELF core, a RawSource for anything else when
    `raw_base` is given, SourceError otherwise (kdump-compressed dumps,
    empty files, files that are not dumps)."""
    with open_file(path, "--dump") as f:
        head = f.read(16)
    if head.startswith(ELF_MAGIC):
        return DumpSource(path, phys_offset=phys_offset)
    if head.startswith(KDUMP_SIGNATURES):
        raise SourceError(f"--dump {path}: kdump-compressed dumps are not supported yet; "
                          "dump with dump-guest-memory without -z/-l/-s (format=elf)")
    if not head:
        raise SourceError(f"--dump {path}: empty file")
    if raw_base is not None:
        return RawSource(path, raw_base, phys_offset=phys_offset)
    raise SourceError(f"--dump {path}: not an ELF dump; for a raw pmemsave file give --base ADDR")


class DumpSource(MappedSource):
    """Guest memory from a dump-guest-memory ELF core (ELF64 or ELF32).

    A read in no segment raises MemoryReadError("not in the dump"); one in a
    segment the file was cut short of raises it with "truncated dump".
    Opening fails (SourceError) only when the headers are unreadable.
    """

    def __init__(self, path: str, *, phys_offset: int = 0):
        super().__init__(f"dump {path}", phys_offset=phys_offset)
        self.path = path
        f = open_file(path, "--dump")
        try:
            extents, self.machine, self.elfclass, self.endian, self.partial = _parse(f, path)
            self._file = MappedFile(f, extents, label=f"--dump {path}")
        except BaseException:
            f.close()
            raise
        # what a caller may report: segments whose data the file lacks
        self.truncated = [e for e in self._file.extents if self._file.available(e) < e.size]

    def ram_phys(self) -> list[tuple[int, int]] | None:
        """A QEMU dump's segments are guest RAM; a partial image's (a saved
        state) are only the pieces allocview read, and say nothing of RAM."""
        return None if self.partial else super().ram_phys()

    def guest_machine(self) -> tuple[str, int, str]:
        return self.machine, self.elfclass, self.endian

    @property
    def segments(self) -> list[Extent]:
        """The PT_LOAD segments as (phys, size, file offset), sorted."""
        return list(self._file.extents)



def _parse(f, path: str) -> tuple[list[Extent], str, int, str, bool]:
    """PT_LOAD extents, e_machine, ELF class and endianness of the core in
    f, and whether it is a partial image (allocview's note)."""
    label = f"--dump {path}"
    size = f.seek(0, 2)
    f.seek(0)
    head = f.read(5)
    want = _EHDR_SIZE.get(head[4] if len(head) > 4 else 0)
    if want is None:
        raise SourceError(f"{label}: not an ELF file (bad ELF class)")
    if size < want:
        raise SourceError(f"{label}: not an ELF file (truncated at byte {size}, "
                          f"the header has {want})")
    try:
        elf = ELFFile(f)
        if elf["e_type"] != "ET_CORE":
            raise SourceError(f"{label}: an ELF {_kind(elf['e_type'])}, not a memory dump "
                              "(a guest program goes to --elf)")
        phend = elf["e_phoff"] + elf.num_segments() * elf["e_phentsize"]
        if phend > size:
            raise SourceError(f"{label}: truncated ELF dump (program headers end at byte "
                              f"{phend}, the file has {size})")
        extents = [Extent(s["p_paddr"], s["p_filesz"], s["p_offset"])
                   for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_filesz"]]
    except SourceError:
        raise
    except OSError as e:
        raise SourceError(f"{label}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - pyelftools raises many kinds on bad headers
        raise SourceError(f"{label}: unreadable ELF headers ({first_line(e)})") from None
    if not extents:
        raise SourceError(f"{label}: no PT_LOAD segment, so no guest memory in this dump")
    return (extents, elf["e_machine"], elf.elfclass, "little" if elf.little_endian else "big",
            _partial(elf))


def _partial(elf: ELFFile) -> bool:
    from ..dumpwrite import PARTIAL_NOTE
    try:
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_NOTE" and seg["p_filesz"] >= 12:
                if any(n["n_name"] == PARTIAL_NOTE for n in seg.iter_notes()):
                    return True
    except Exception:  # noqa: BLE001 - an odd note is no reason to refuse a dump
        pass
    return False


def _kind(e_type: str) -> str:
    return {"ET_EXEC": "executable", "ET_DYN": "shared object",
            "ET_REL": "object file"}.get(e_type, e_type)
