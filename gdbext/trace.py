"""`alloc trace start|stop`: record every allocator call with its arguments
and result, letting the guest run on by itself.

Breakpoints sit on each entry point's first instruction (arguments read by
the calling convention, so optimised code and missing DWARF do not matter)
and on each of its return instructions (found by disassembling the
function), never on a FinishBreakpoint: ALLOCATOR.md measured 3.5 ms per
call for this against 100 ms. Every stop() returns False, so the guest
never stops. Entries and returns are paired on a stack: a repeated entry
at the same stack pointer is the stub reporting a hit twice, and only
outermost calls are recorded (an entry point called by another is part of
that call).
"""

from __future__ import annotations

import re
import time

import gdb  # type: ignore[import-not-found]

from model.trace import SIGNATURES, TraceWriter

from . import target

__all__ = ["CallWatcher", "Tracer", "RETURN_MNEMONICS", "entry_points"]

# Per arch: integer argument registers, return register, stack-passed args
# (i386 cdecl), the stack pointer register.
ABI = {
    "x86_64": (("rdi", "rsi", "rdx", "rcx", "r8", "r9"), "rax", False, "rsp"),
    "i386": ((), "eax", True, "esp"),
    "aarch64": (tuple(f"x{i}" for i in range(8)), "x0", False, "sp"),
    "riscv64": (tuple(f"a{i}" for i in range(8)), "a0", False, "sp"),
    "s390x": (("r2", "r3", "r4", "r5", "r6"), "r2", False, "r15"),
    "ppc64": (tuple(f"r{i}" for i in range(3, 11)), "r3", False, "r1"),
}
_TARGET = re.compile(r"\b0x([0-9a-f]+)\b")
RETURN_MNEMONICS = ("ret", "retq", "repz ret", "rep ret", "blr", "br\t%r14", "br %r14")


def entry_points(prog) -> list[str]:
    """The outermost entry points this program has (ALLOCATOR.md, entry
    points): the *_flags set in 2021 trees, the *_area set in 2020 ones."""
    have = set(prog.symbols)
    if "alloc_pages_flags" in have:
        names = ["page_alloc_init_area", "alloc_pages_flags", "memalign_pages_flags", "free_pages",
                 "reserve_pages", "unreserve_pages"]
    else:
        names = ["page_alloc_init_area", "alloc_pages_area", "memalign_pages_area", "free_pages",
                 "alloc_pages_special", "free_pages_special"]
    return [n for n in names if n in have]


def _reg(frame, name: str) -> int:
    return int(frame.read_register(name)) & ((1 << 64) - 1)


class CallWatcher:
    """Sees every outermost call of the given entry points return, with its
    arguments and result; `on_call` decides whether the guest stops."""

    def __init__(self, funcs: list[str]):
        prog = target.program()
        if prog.arch not in ABI:
            raise gdb.GdbError(f"allocview: watching calls is not supported on {prog.arch} yet")
        self.prog = prog
        self.abi = ABI[prog.arch]
        self.word = prog.layout.ptr_size
        self.endian = prog.layout.endian
        self.stack: list[tuple[str, int, tuple[int, ...]]] = []
        self.breakpoints: list[gdb.Breakpoint] = []
        self.started = time.perf_counter()
        self.duplicates = 0
        self.errors = 0
        self._plant_all(funcs)

    # -------------------------------------------------------------- planting
    def _plant_all(self, funcs: list[str]) -> None:
        returns: dict[int, set[str]] = {}
        for func in funcs:
            addr = self.prog.symbols[func]
            self.breakpoints.append(_Entry(self, func, addr))
            rets = self._returns(addr)
            if not rets:
                raise gdb.GdbError(f"allocview: found no return instruction in {func}")
            for r in rets:
                returns.setdefault(r, set()).add(func)
        for r, owners in returns.items():
            self.breakpoints.append(_Return(self, owners, r))

    def _returns(self, addr: int) -> list[int]:
        """Return instructions of the function at addr and of the functions
        it tail-jumps to (`jmp other` at -O2), a few levels deep."""
        arch = gdb.selected_inferior().architecture()
        out, seen, todo = [], set(), [addr]
        while todo and len(seen) < 16:
            block = gdb.block_for_pc(todo.pop())
            while block is not None and block.function is None:
                block = block.superblock
            if block is None or block.start in seen:
                continue
            seen.add(block.start)
            for insn in arch.disassemble(block.start, block.end - 1):
                asm = insn["asm"].strip()
                if any(asm == m or asm.startswith(m + " ") for m in RETURN_MNEMONICS):
                    out.append(insn["addr"])
                elif asm.startswith("j") and (m := _TARGET.search(asm)):
                    t = int(m.group(1), 16)
                    if not block.start <= t < block.end:
                        todo.append(t)
        return out

    # ------------------------------------------------------------- recording
    def args(self, frame, func: str) -> tuple[int, ...]:
        sizes, _ = SIGNATURES[func]
        regs, _, on_stack, sp_name = self.abi
        if not on_stack:
            out = []
            for reg, size in zip(regs, sizes):
                v = _reg(frame, reg)
                out.append(v & ((1 << (8 * size)) - 1) if size else v)
            return tuple(out)
        sp = _reg(frame, sp_name)
        mem = gdb.selected_inferior()
        off = sp + self.word                  # skip the return address
        out = []
        for size in sizes:
            n = size if size in (8,) else self.word
            raw = mem.read_memory(off, n).tobytes()
            v = int.from_bytes(raw, self.endian)
            out.append(v & ((1 << (8 * size)) - 1) if size else v)
            off += n
        return tuple(out)

    def enter(self, func: str) -> None:
        frame = gdb.selected_frame()
        sp = _reg(frame, self.abi[3])
        if self.stack and self.stack[-1][0] == func and self.stack[-1][1] == sp:
            self.duplicates += 1          # the stub reported this hit twice
            return
        self.stack.append((func, sp, self.args(frame, func) if not self.stack else ()))

    def leave(self, owners: set[str]) -> bool:
        if not self.stack or self.stack[-1][0] not in owners:
            return False                  # a return with no entry: ignore
        func, _sp, args = self.stack.pop()
        if self.stack:
            return False                  # nested inside another entry point
        _, returns = SIGNATURES[func]
        result = None
        if returns:
            v = _reg(gdb.selected_frame(), self.abi[1])
            if func == "reserve_pages":
                v &= 0xFFFFFFFF
                v = v - (1 << 32) if v >> 31 else v
            else:
                v &= (1 << (8 * self.word)) - 1
            result = v
        return self.on_call(func, args, result)

    def on_call(self, func: str, args: tuple[int, ...], result: int | None) -> bool:
        raise NotImplementedError

    def remove(self) -> None:
        for bp in self.breakpoints:
            if bp.is_valid():
                bp.delete()
        self.breakpoints.clear()


class Tracer(CallWatcher):
    """One recording session: every call into a trace file."""

    def __init__(self, path: str, funcs: list[str], snapshot_every: int = 0):
        prog = target.program()
        self.snapshot_every = snapshot_every
        self.writer = TraceWriter(path, {"arch": prog.arch, "format": prog.layout.format,
                                         "areas": prog.areas_addr, "areas_mask": prog.mask_addr,
                                         "funcs": funcs})
        super().__init__(funcs)

    def on_call(self, func, args, result) -> bool:
        self.writer.call(func, args, result)
        if self.snapshot_every and self.writer.count % self.snapshot_every == 0:
            from .commands import fresh_snapshot
            self.writer.state(fresh_snapshot().state())
        return False

    def stop(self) -> dict:
        self.remove()
        self.writer.close()
        return {"calls": self.writer.count, "seconds": time.perf_counter() - self.started,
                "duplicates": self.duplicates, "errors": self.errors, "path": self.writer.path}


class _Entry(gdb.Breakpoint):
    def __init__(self, tracer: Tracer, func: str, addr: int):
        super().__init__(f"*{addr:#x}", internal=True)
        self.tracer, self.func = tracer, func
        self.silent = True

    def stop(self):
        try:
            self.tracer.enter(self.func)
        except Exception:           # never stop or crash the guest over a bad record
            self.tracer.errors += 1
        return False


class _Return(gdb.Breakpoint):
    def __init__(self, tracer: Tracer, owners: set[str], addr: int):
        super().__init__(f"*{addr:#x}", internal=True)
        self.tracer, self.owners = tracer, owners
        self.silent = True

    def stop(self):
        try:
            return bool(self.tracer.leave(self.owners))
        except Exception as e:
            self.tracer.errors += 1
            self.tracer.last_error = e
        return False
