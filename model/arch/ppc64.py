"""ppc64: big-endian, 64 KiB pages, the pseries machine; tests are
relocatable ELFs loaded at 0x400000."""

from __future__ import annotations

import re

from .base import Arch, Boot, CallABI, SlotRange, signed

__all__ = ["PPC64"]


def _direct_calls(code: bytes, at: int):
    """bl (I-form, LK=1, AA=0)."""
    for i in range(0, len(code) - 3, 4):
        insn = int.from_bytes(code[i:i + 4], "big")
        if insn & 0xFC000003 == 0x48000001:
            yield (at + i + signed(insn & 0x03FFFFFC, 26)) & 0xFFFFFFFFFFFFFFFF


def _local_entry(other: int) -> int:
    """ELFv2: st_other's top three bits give the local entry's distance."""
    return ((1 << (other >> 5 & 7)) >> 2) << 2


def _local_entry_asm(insns: list[str]) -> int:
    """ELFv2 global entry: r2 (the TOC) set from r12 in two instructions."""
    if len(insns) >= 2 and re.match(r"(addis|lis)\s+r?2,", insns[0].strip()) \
            and re.match(r"addi\s+r?2,\s*r?2,", insns[1].strip()):
        return 8
    return 0


PPC64 = Arch(
    name="ppc64", ptr_size=8, endian="big", u64_align=8, elf_machine="EM_PPC64",
    gdb_arch="powerpc:common64", gdb_names=("powerpc:common64",), debuggers=("gdb-multiarch",),
    family="ppc",
    abi=CallABI(args=tuple(f"r{i}" for i in range(3, 11)), ret="r3", sp="r1",
                return_address="$lr", returns=(r"blr\b",), direct_calls=_direct_calls,
                local_entry=_local_entry, local_entry_asm=_local_entry_asm, descriptors=".opd",
                jumps=r"b(?!l\w*\s|ctrl)[a-z]*[+-]?\s"),
    boot=Boot(qemu="qemu-system-ppc64", machine="pseries", cpu=None, relocatable=True,
              load_addresses=(0x400000,), ram_start=0, runner_arch="ppc64"),
    slots={"2021": (SlotRange(0, "NORMAL", 0, None),), "2020": (SlotRange(0, "NORMAL", 0, None),)},
    max_areas={"2021": 1, "2020": 6}, page_shift=16, page_shifts=(12, 16))
