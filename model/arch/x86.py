"""x86_64 and i386: the PC machine, multiboot, tests at their link address."""

from __future__ import annotations

from .base import GiB, MiB, Arch, Boot, CallABI, SlotRange, signed

__all__ = ["X86_64", "I386"]


def _direct_calls(code: bytes, at: int):
    """`call rel32` (E8); the same encoding in 32- and 64-bit mode."""
    i = code.find(b"\xe8")
    while 0 <= i <= len(code) - 5:
        rel = signed(int.from_bytes(code[i + 1:i + 5], "little"), 32)
        yield (at + i + 5 + rel) & 0xFFFFFFFFFFFFFFFF
        i = code.find(b"\xe8", i + 1)


_RETURNS = (r"(repz? )?retq?\b",)

# lib/x86/asm/memory_areas.h (2021) and lib/alloc_page.h (2020)
_SLOTS = {
    "2021": (SlotRange(0, "NORMAL", 64 * GiB, None), SlotRange(1, "HIGH", 4 * GiB, 64 * GiB),
             SlotRange(2, "LOW", 16 * MiB, 4 * GiB), SlotRange(3, "LOWEST", 0, 16 * MiB)),
    "2020": (SlotRange(0, "NORMAL", 64 * GiB, None), SlotRange(1, "PAE_HIGH", 4 * GiB, 64 * GiB),
             SlotRange(2, "LOW", 0, 4 * GiB)),
}
_MAX_AREAS = {"2021": 4, "2020": 6}

X86_64 = Arch(
    name="x86_64", ptr_size=8, endian="little", u64_align=8, elf_machine="EM_X86_64",
    gdb_arch="i386:x86-64", gdb_names=("i386:x86-64", "i386:x64-32"),
    debuggers=("gdb", "gdb-multiarch"), family="x86", stub_follows_qemu=True,
    abi=CallABI(args=("rdi", "rsi", "rdx", "rcx", "r8", "r9"), ret="rax", sp="rsp",
                return_address="*(unsigned long *)$rsp", returns=_RETURNS,
                direct_calls=_direct_calls),
    boot=Boot(qemu="qemu-system-x86_64", machine="pc", cpu=None, relocatable=False,
              load_addresses=(), ram_start=0, runner_arch="x86_64"),
    slots=_SLOTS, max_areas=_MAX_AREAS)

I386 = Arch(
    name="i386", ptr_size=4, endian="little", u64_align=4, elf_machine="EM_386",
    gdb_arch="i386", gdb_names=("i386",), debuggers=("gdb", "gdb-multiarch"), family="x86",
    stub_follows_qemu=True,
    abi=CallABI(args=(), ret="eax", sp="esp", return_address="*(unsigned int *)$esp",
                returns=_RETURNS, direct_calls=_direct_calls, stack_args=True),
    boot=Boot(qemu="qemu-system-i386", machine="pc", cpu=None, relocatable=False,
              load_addresses=(), ram_start=0, runner_arch="i386"),
    slots=_SLOTS, max_areas=_MAX_AREAS)
