"""A raw memory file (QMP `pmemsave`, `dd` of a RAM file): byte i is guest
physical address `base + i`."""

from __future__ import annotations

import os

from ..errors import SourceError
from .mapped import Extent, MappedFile, MappedSource, open_file

__all__ = ["RawSource"]


class RawSource(MappedSource):
    """Guest physical [base, base + file size) from one flat file."""

    def __init__(self, path: str, base: int, *, phys_offset: int = 0):
        super().__init__(f"raw {path} at {base:#x}", phys_offset=phys_offset)
        if base < 0:
            raise SourceError(f"--base {base:#x}: a physical address is not negative")
        self.path = path
        self.base = base
        f = open_file(path, "--dump")
        try:
            size = os.fstat(f.fileno()).st_size
            if not size:
                raise SourceError(f"--dump {path}: empty file")
            self._file = MappedFile(f, [Extent(base, size, 0)], label=f"--dump {path}",
                                    gap_reason=f"outside the raw file (physical "
                                    f"{base:#x}-{base + size:#x})")
        except BaseException:
            f.close()
            raise
