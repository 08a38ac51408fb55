"""riscv64: the virt machine, entered from OpenSBI; tests are relocatable
and loaded at 0x80200000."""

from __future__ import annotations

import re

from .base import Arch, Boot, CallABI, SlotRange, signed

__all__ = ["RISCV64"]


def _direct_calls(code: bytes, at: int):
    """jal ra, imm20 and the far form auipc ra, hi20; jalr ra, lo12(ra)."""
    n = len(code) - 3
    i = 0
    while i < n:
        insn = int.from_bytes(code[i:i + 4], "little")
        if insn & 3 != 3:            # a compressed instruction: 2 bytes
            i += 2
            continue
        rd = insn >> 7 & 0x1F
        if insn & 0x7F == 0x6F and rd == 1:
            imm = (insn >> 31 & 1) << 20 | (insn >> 12 & 0xFF) << 12 \
                | (insn >> 20 & 1) << 11 | (insn >> 21 & 0x3FF) << 1
            yield (at + i + signed(imm, 21)) & 0xFFFFFFFFFFFFFFFF
        elif insn & 0x7F == 0x17 and rd == 1 and i + 8 <= len(code):
            nxt = int.from_bytes(code[i + 4:i + 8], "little")
            if nxt & 0x707F == 0x67 and nxt >> 7 & 0x1F == 1 and nxt >> 15 & 0x1F == 1:
                yield (at + i + signed(insn & 0xFFFFF000, 32) + signed(nxt >> 20, 12)) \
                    & 0xFFFFFFFFFFFFFFFF
        i += 4


def _far_jump(insns: list[tuple[int, str]], i: int) -> int | None:
    """`auipc rX, hi` then `jr lo(rX)`: hi << 12 + lo from the auipc."""
    m = re.match(r"jr\s+(-?\d+)\((\w+)\)", insns[i][1].strip())
    if not m or i == 0:
        return None
    pc, text = insns[i - 1]
    a = re.match(rf"auipc\s+{m.group(2)},\s*(0x[0-9a-fA-F]+|\d+)", text.strip())
    if not a:
        return None
    return (pc + (signed(int(a.group(1), 0), 20) << 12) + int(m.group(1))) & 0xFFFFFFFFFFFFFFFF


RISCV64 = Arch(
    name="riscv64", ptr_size=8, endian="little", u64_align=8, elf_machine="EM_RISCV",
    gdb_arch="riscv:rv64", gdb_names=("riscv:rv64", "riscv"), debuggers=("gdb-multiarch",),
    family="riscv",
    abi=CallABI(args=tuple(f"a{i}" for i in range(8)), ret="a0", sp="sp", return_address="$ra",
                returns=(r"ret\b",), direct_calls=_direct_calls,
                jumps=r"(j|jr|tail|b(eq|ne|lt|ge|ltu|geu|eqz|nez|lez|gez|ltz|gtz|gt|le|gtu|leu))\s",
                computed_jump=_far_jump),
    boot=Boot(qemu="qemu-system-riscv64", machine="virt", cpu="rv64", relocatable=True,
              load_addresses=(0x80200000,), ram_start=0x80000000, runner_arch="riscv64"),
    slots={"2021": (SlotRange(0, "NORMAL", 0, None),), "2020": (SlotRange(0, "NORMAL", 0, None),)},
    max_areas={"2021": 1, "2020": 6})
