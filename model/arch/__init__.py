"""Every architecture allocview knows, one module each (x86, s390x, arm,
ppc64, riscv64), gathered here. Adding an arch: one module ending in one
`Arch`, listed below, and its fixture guest."""

from __future__ import annotations

from ..errors import LayoutError
from .arm import AARCH64, ARM
from .base import Arch, Boot, CallABI, SlotRange
from .ppc64 import PPC64
from .riscv64 import RISCV64
from .s390x import S390X
from .x86 import I386, X86_64

__all__ = ["ARCHES", "Arch", "Boot", "CallABI", "SlotRange", "arch", "by_elf", "by_gdb_name",
           "by_qemu", "by_runner_arch"]

ARCHES: dict[str, Arch] = {a.name: a for a in (X86_64, I386, S390X, AARCH64, ARM, PPC64, RISCV64)}


def arch(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise LayoutError(f"unknown arch {name!r}: expected one of {', '.join(ARCHES)}") from None


def by_elf(machine: str, ptr_size: int) -> Arch | None:
    """The arch of an ELF's e_machine (pyelftools' name) and class."""
    return next((a for a in ARCHES.values() if a.elf_machine == machine
                 and a.ptr_size == ptr_size), None)


def by_gdb_name(name: str) -> Arch | None:
    """The arch gdb reports as `name` (Architecture.name())."""
    return next((a for a in ARCHES.values() if name in a.gdb_names), None)


def by_qemu(binary: str) -> Arch | None:
    """The arch whose QEMU is `binary` (a path or a name)."""
    base = binary.rsplit("/", 1)[-1]
    return next((a for a in ARCHES.values() if a.boot.qemu == base), None)


def by_runner_arch(name: str) -> Arch | None:
    """The arch of a kvm-unit-tests tree configured with ARCH=name."""
    return next((a for a in ARCHES.values() if a.boot.runner_arch == name), None)
