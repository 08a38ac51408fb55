"""Building the fixture guest (tests/guest) and naming its variants."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GUEST_DIR", "BUILD_DIR", "VARIANTS", "Variant", "build", "measure_build_time"]

GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"
BUILD_DIR = GUEST_DIR / "build"
FORMATS = ("2020", "2021")
ARCHES = ("x86_64", "i386")
DEFECTS = ("nomerge", "splitend")


@dataclass(frozen=True)
class Variant:
    """One build of the guest: arch x86_64|i386, format 2020|2021, defect."""
    arch: str
    fmt: str
    defect: str | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHES or self.fmt not in FORMATS or (
                self.defect is not None and self.defect not in DEFECTS):
            raise ValueError(f"no guest variant {self.arch}-{self.fmt}-{self.defect}")

    @classmethod
    def parse(cls, name: "str | Variant") -> "Variant":
        """`x86_64-2021`, `x86_64-2021-nomerge`..."""
        if isinstance(name, Variant):
            return name
        parts = name.split("-")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad variant name {name!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.fmt}" + (f"-{self.defect}" if self.defect else "")

    def dir(self, build_dir: Path = BUILD_DIR) -> Path:
        return build_dir / self.name

    @property
    def elf(self) -> Path:
        """The ELF gdb reads (64-bit on x86_64)."""
        return self.dir() / "guest.elf"

    @property
    def flat(self) -> Path:
        """The ELF32 image QEMU's multiboot loader boots."""
        return self.dir() / "guest.flat"

    @property
    def qemu(self) -> str:
        # qemu-system-i386 so that gdb's i386 register layout matches the stub's
        return "qemu-system-i386" if self.arch == "i386" else "qemu-system-x86_64"

    @property
    def gdb_arch(self) -> str:
        return "i386" if self.arch == "i386" else "i386:x86-64"

    def __str__(self) -> str:
        return self.name


VARIANTS = tuple(Variant.parse(v) for v in (
    "x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020",
    "x86_64-2021-nomerge", "x86_64-2021-splitend"))


def _jobs() -> str:
    return str(max(1, min(4, os.cpu_count() or 1)))


def build(build_dir: Path | None = None, *, timeout: float = 300.0) -> None:
    """`make` every variant (a no-op when nothing is stale); raises with
    make's output when the build fails."""
    cmd = ["make", "-C", str(GUEST_DIR), "-j", _jobs()]
    if build_dir is not None:
        cmd.append(f"BUILD={build_dir}")
    if shutil.which("make") is None:
        raise RuntimeError("make is not installed")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"guest build failed ({' '.join(cmd)}):\n{r.stdout}")


def measure_build_time() -> float:
    """Seconds to build every variant from scratch (into a temporary
    directory, leaving tests/guest/build alone)."""
    with tempfile.TemporaryDirectory(prefix="allocview-guest-build-") as d:
        t0 = time.perf_counter()
        build(Path(d) / "build")
        return time.perf_counter() - t0
