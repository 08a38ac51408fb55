"""aarch64 and arm: the virt machine. aarch64 tests are relocatable and
loaded 0x80000 into RAM (the Linux image convention QEMU follows); 32-bit
arm tests are linked where QEMU loads them."""

from __future__ import annotations

from .base import Arch, Boot, CallABI, SlotRange, signed

__all__ = ["AARCH64", "ARM"]

_ONE_AREA = {"2021": (SlotRange(0, "NORMAL", 0, None),),
             "2020": (SlotRange(0, "NORMAL", 0, None),)}
_MAX_AREAS = {"2021": 1, "2020": 6}
_VIRT_RAM = 0x40000000


def _a64_calls(code: bytes, at: int):
    """BL imm26."""
    for i in range(0, len(code) - 3, 4):
        insn = int.from_bytes(code[i:i + 4], "little")
        if insn & 0xFC000000 == 0x94000000:
            yield (at + i + 4 * signed(insn & 0x3FFFFFF, 26)) & 0xFFFFFFFFFFFFFFFF


def _a32_calls(code: bytes, at: int):
    """BL imm24 (ARM state; kvm-unit-tests builds -marm)."""
    for i in range(0, len(code) - 3, 4):
        insn = int.from_bytes(code[i:i + 4], "little")
        if insn & 0x0F000000 == 0x0B000000 and insn >> 28 != 0xF:
            yield (at + i + 8 + 4 * signed(insn & 0xFFFFFF, 24)) & 0xFFFFFFFF


AARCH64 = Arch(
    name="aarch64", ptr_size=8, endian="little", u64_align=8, elf_machine="EM_AARCH64",
    gdb_arch="aarch64", gdb_names=("aarch64",), debuggers=("gdb-multiarch",), family="arm",
    abi=CallABI(args=tuple(f"x{i}" for i in range(8)), ret="x0", sp="sp",
                return_address="$x30", returns=(r"ret\b",), direct_calls=_a64_calls,
                jumps=r"(b(\.\w+)?|cbn?z|tbn?z)\s"),
    boot=Boot(qemu="qemu-system-aarch64", machine="virt", cpu="cortex-a57", relocatable=True,
              load_addresses=(_VIRT_RAM + 0x80000,), ram_start=_VIRT_RAM, runner_arch="arm64"),
    slots=_ONE_AREA, max_areas=_MAX_AREAS, page_shifts=(12, 14, 16))

ARM = Arch(
    name="arm", ptr_size=4, endian="little", u64_align=8, elf_machine="EM_ARM",
    gdb_arch="arm", gdb_names=("arm", "armv7"), debuggers=("gdb-multiarch",), family="arm",
    abi=CallABI(args=("r0", "r1", "r2", "r3"), ret="r0", sp="sp", return_address="$lr",
                returns=(r"bx\s+lr\b", r"pop\s+\{.*\bpc\}", r"ldm\S*\s+sp!?,\s*\{.*\bpc\}"),
                jumps=r"b(eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?(\.w)?\s", direct_calls=_a32_calls),
    # 32-bit arm tests are linked where QEMU loads them (ET_EXEC, 0x40010000)
    boot=Boot(qemu="qemu-system-arm", machine="virt", cpu="cortex-a15", relocatable=False,
              load_addresses=(), ram_start=_VIRT_RAM, runner_arch="arm"),
    slots=_ONE_AREA, max_areas=_MAX_AREAS)
