"""What an architecture is to allocview: the fields every arch module fills.

One `Arch` per kvm-unit-tests architecture (drgn's `drgn_architecture_info`
idea): data layout, area slots, gdb, QEMU, how a test is loaded, the call
ABI, and how a test's end is recognised. Modules ask the arch; none tests
`if arch == ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Literal, Mapping

Endian = Literal["little", "big"]

__all__ = ["Arch", "Boot", "CallABI", "SlotRange", "GiB", "MiB"]

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class SlotRange:
    """An area slot (lib/<arch>/asm/memory_areas.h) by guest physical
    address: [start, end), end None for no upper bound."""
    number: int
    name: str
    start: int
    end: int | None


@dataclass(frozen=True)
class CallABI:
    """Enough of the calling convention for breakpoints and inferior calls.

    args: integer argument registers in order (empty with `stack_args`:
    i386 cdecl passes every argument on the stack above the return
    address); ret: the integer return register; sp: the stack pointer;
    return_address: a gdb expression for the return address at a
    function's first instruction; returns: return instructions as gdb
    disassembles them (regular expressions matched at the start);
    direct_calls(code, at): the targets
    of the direct calls in `code` placed at address `at` (what a call
    leaves as return address inside the caller)."""
    args: tuple[str, ...]
    ret: str
    sp: str
    return_address: str
    returns: tuple[str, ...]
    direct_calls: Callable[[bytes, int], Iterator[int]] = field(compare=False, repr=False)
    stack_args: bool = False
    # where a call enters a function whose symbol has this st_other: ppc64
    # ELFv2 functions have a local entry past the TOC setup, which calls
    # inside the program use (a breakpoint must sit there)
    local_entry: Callable[[int], int] = field(default=lambda other: 0, compare=False, repr=False)
    # the same from the function's first instructions as gdb disassembles
    # them, where the symbol's st_other is not at hand (gdb's own symbols)
    local_entry_asm: Callable[[list[str]], int] = field(default=lambda insns: 0, compare=False,
                                                         repr=False)
    # jumps (not calls) as gdb disassembles them: a function's returns
    # include those of the functions it tail-jumps to
    jumps: str = r"j\w*\s"
    # the target of a jump gdb prints no address for (riscv's far
    # `auipc t1, hi; jr lo(t1)`), from (address, text) instructions
    computed_jump: Callable[[list[tuple[int, str]], int], int | None] = field(
        default=lambda insns, i: None, compare=False, repr=False)
    # a section whose function symbols are descriptors holding the code
    # address in their first word (ppc64 ELFv1's .opd)
    descriptors: str | None = None

    def is_return(self, asm: str) -> bool:
        """Whether gdb's disassembly text `asm` returns from a function."""
        return any(re.match(p, asm.strip()) for p in self.returns)

    def is_jump(self, asm: str) -> bool:
        return re.match(self.jumps, asm.strip()) is not None

    def jump_target(self, insns: list[tuple[int, str]], i: int) -> int | None:
        """Where the jump insns[i] (address, gdb's text) goes, when known:
        the address gdb prints, or what the arch computes from the
        instructions before it."""
        m = _ADDRESS.search(insns[i][1])
        if m:
            return int(m.group(1), 16)
        return self.computed_jump(insns, i)

    def arg_expr(self, n: int, ptr_size: int) -> str:
        """A gdb expression for integer argument n (0-based) at entry."""
        if self.stack_args:
            ctype = "unsigned int" if ptr_size == 4 else "unsigned long"
            return f"*({ctype} *)(${self.sp} + {(n + 1) * ptr_size})"
        return f"${self.args[n]}"


@dataclass(frozen=True)
class Boot:
    """How kvm-unit-tests runs a test of this arch under QEMU.

    qemu: the system emulator; machine, cpu: what its runner passes (cpu
    None: the machine's default). relocatable: the test ELF is linked at 0
    (ET_DYN) and relocates itself where it was loaded; load_addresses:
    where tests of this arch are usually found (first guesses; allocview
    finds the real one in guest memory). ram_start: where the machine's
    RAM begins. runner_arch: ARCH in a built tree's config.mak."""
    qemu: str
    machine: str
    cpu: str | None
    relocatable: bool
    load_addresses: tuple[int, ...]
    ram_start: int
    runner_arch: str


@dataclass(frozen=True)
class Arch:
    name: str
    ptr_size: int                 # bytes in a pointer / unsigned long
    endian: Endian
    u64_align: int                # alignment of a 64-bit member inside a struct
    elf_machine: str              # pyelftools e_machine
    gdb_arch: str                 # gdb's `set architecture` name
    gdb_names: tuple[str, ...]    # what gdb may report for this arch
    debuggers: tuple[str, ...]    # gdb binaries able to debug it, preferred first
    family: str                   # arches one QEMU binary may run (x86_64 runs i386 code)
    abi: CallABI
    boot: Boot
    slots: Mapping[str, tuple[SlotRange, ...]] = field(compare=False)   # by tree
    max_areas: dict[str, int] = field(compare=False)                  # by tree
    page_shift: int = 12          # the default page size of its builds
    page_shifts: tuple[int, ...] = (12,)  # every page size a build may choose
    # the gdb stub's registers follow the QEMU binary, not the guest's mode
    # (x86: qemu-system-x86_64 talks x86-64 to a 32-bit guest too)
    stub_follows_qemu: bool = False

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def nlists(self) -> int:
        """NLISTS = BITS_PER_LONG - PAGE_SHIFT."""
        return self.ptr_size * 8 - self.page_shift

    @property
    def bits(self) -> int:
        return self.ptr_size * 8

    def with_page_shift(self, shift: int) -> "Arch":
        """The same arch built with another page size (aarch64's 16/64 KiB)."""
        return self if shift == self.page_shift else replace(self, page_shift=shift)

    def page_shift_for_nlists(self, nlists: int) -> int | None:
        """The page shift a program with `nlists` free lists was built with
        (NLISTS = BITS_PER_LONG - PAGE_SHIFT), if this arch allows it."""
        shift = self.bits - nlists
        return shift if shift in self.page_shifts else None


_ADDRESS = re.compile(r"\b0x([0-9a-fA-F]+)\b")


def signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value
