"""Building the fixture guest (tests/guest) and naming its variants.

Per-arch facts (QEMU binary, machine, cpu, gdb architecture and binaries,
load address, page size) come from allocview.model.arch, the project's arch table;
what only the fixture decides (firmware, console device, how a run ends)
lives in qemu.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GUEST_DIR", "BUILD_DIR", "ARCHES", "NEW_ARCHES", "VARIANTS", "Variant", "build",
           "measure_build_time"]

GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"
BUILD_DIR = GUEST_DIR / "build"
FORMATS = ("2020", "2021")
NEW_ARCHES = ("s390x", "aarch64", "ppc64", "riscv64")
ARCHES = ("x86_64", "i386") + NEW_ARCHES
DEFECTS = ("nomerge", "splitend", "multi")
# QEMU's own exit status carries exit(code) as (code << 1) | 1: isa-debug-exit
# (x86), semihosting SYS_EXIT (aarch64), the virt test device (riscv64). On
# s390x (CPU stop) and ppc64 (RTAS power-off) QEMU exits 0 and only the
# console's `EXIT: STATUS=` line says it.
STATUS_FROM_QEMU = ("x86_64", "i386", "aarch64", "riscv64")


@dataclass(frozen=True)
class Variant:
    """One build of the guest: arch (ARCHES), format 2020|2021, defect."""
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
    def info(self):
        """The arch's model.arch.Arch."""
        from allocview.model.arch import arch

        return arch(self.arch)

    @property
    def elf(self) -> Path:
        """The ELF gdb reads (64-bit on x86_64; linked at 0 when relocatable)."""
        return self.dir() / "guest.elf"

    @property
    def flat(self) -> Path:
        """What QEMU -kernel boots: an ELF32 copy (x86 multiboot), the ELF
        itself (s390x, ppc64), the raw image (aarch64, riscv64)."""
        return self.dir() / "guest.flat"

    kernel = flat

    @property
    def qemu(self) -> str:
        # qemu-system-i386 for i386 so that gdb's i386 register layout matches the stub's
        return self.info.boot.qemu

    @property
    def gdb_arch(self) -> str:
        return self.info.gdb_arch

    @property
    def gdb(self) -> str:
        """The gdb binary for this arch: $ALLOCVIEW_GDB, else the first of
        model.arch's debuggers that is installed (gdb-multiarch off x86)."""
        env = os.environ.get("ALLOCVIEW_GDB")
        if env:
            return env
        debuggers = self.info.debuggers
        return next((d for d in debuggers if shutil.which(d)), debuggers[0])

    @property
    def relocatable(self) -> bool:
        """Linked at 0 and relocating itself where it was loaded."""
        return self.info.boot.relocatable

    @property
    def load_offset(self) -> int:
        """What to add to the ELF's addresses for the running guest's (0
        unless relocatable; gdb gets it as `symbol-file -o`)."""
        return self.info.boot.load_addresses[0] if self.relocatable else 0

    @property
    def page_shift(self) -> int:
        return self.info.page_shift

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def ram_start(self) -> int:
        """Guest physical address of the first RAM byte (a shared memory
        file's offset 0)."""
        return self.info.boot.ram_start

    @property
    def big_endian(self) -> bool:
        return self.info.endian == "big"

    @property
    def status_from_qemu(self) -> bool:
        """QEMU's exit status is the test's ((code << 1) | 1); else only the
        console's `EXIT: STATUS=` line has it."""
        return self.arch in STATUS_FROM_QEMU

    def __str__(self) -> str:
        return self.name


VARIANTS = tuple(Variant.parse(v) for v in (
    "x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020",
    "x86_64-2021-nomerge", "x86_64-2021-splitend", "x86_64-2021-multi", "s390x-2021-multi",
    *(f"{a}-{s}" for a in NEW_ARCHES for s in ("2021", "2020", "2021-nomerge", "2021-splitend"))))


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
