"""s390x: big-endian, the s390-ccw-virtio machine, the ELF booted as is."""

from __future__ import annotations

from .base import GiB, Arch, Boot, CallABI, SlotRange, signed

__all__ = ["S390X"]


def _direct_calls(code: bytes, at: int):
    """BRASL r,imm32 (C0 r5, halfwords) and BRAS r,imm16 (A7 r5)."""
    for i in range(0, len(code) - 3, 2):
        op, r = code[i], code[i + 1]
        if op == 0xC0 and r & 0xF == 5 and i + 6 <= len(code):
            yield (at + i + 2 * signed(int.from_bytes(code[i + 2:i + 6], "big"), 32)) \
                & 0xFFFFFFFFFFFFFFFF
        elif op == 0xA7 and r & 0xF == 5:
            yield (at + i + 2 * signed(int.from_bytes(code[i + 2:i + 4], "big"), 16)) \
                & 0xFFFFFFFFFFFFFFFF


S390X = Arch(
    name="s390x", ptr_size=8, endian="big", u64_align=8, elf_machine="EM_S390",
    gdb_arch="s390:64-bit", gdb_names=("s390:64-bit",), debuggers=("gdb-multiarch",),
    family="s390",
    abi=CallABI(args=("r2", "r3", "r4", "r5", "r6"), ret="r2", sp="r15",
                return_address="$r14", returns=(r"br\s+%r14\b",),
                direct_calls=_direct_calls, jumps=r"(j\w*|brc\w*)\s"),
    boot=Boot(qemu="qemu-system-s390x", machine="s390-ccw-virtio", cpu=None, relocatable=False,
              load_addresses=(), ram_start=0, runner_arch="s390x"),
    # lib/s390x/asm/memory_areas.h
    slots={"2021": (SlotRange(0, "NORMAL", 2 * GiB, None), SlotRange(1, "LOW", 0, 2 * GiB)),
           "2020": (SlotRange(0, "NORMAL", 2 * GiB, None), SlotRange(1, "LOW", 0, 2 * GiB))},
    max_areas={"2021": 2, "2020": 6})
