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

A Tracer also records each call's caller: the return address the entry
point was entered with, read where the arch says it is at a function's
first instruction (model/arch: CallABI.return_address), as the guest has
it; `owner` and `live` map it back to the ELF and its DWARF.
"""

from __future__ import annotations

import time

import gdb  # type: ignore[import-not-found]

from allocview.model.entry_points import SIGNATURES, outermost
from allocview.model.errors import MemoryReadError
from allocview.model.trace import TraceWriter

from . import target

__all__ = ["CallWatcher", "Tracer", "entry_points"]



def entry_points(prog) -> list[str]:
    """The outermost entry points this program has (model.entry_points)."""
    return outermost(prog.symbols)


def _reg(frame, name: str) -> int:
    return int(frame.read_register(name)) & ((1 << 64) - 1)


class CallWatcher:
    """Sees every outermost call of the given entry points return, with its
    arguments and result; `on_call` decides whether the guest stops.
    With `records_callers`, `caller` is the return address of the call
    on_call is given (None when it could not be read)."""

    records_callers = False

    def __init__(self, funcs: list[str]):
        prog = target.program()
        self.prog = prog
        self.abi = prog.layout.arch.abi
        self.word = prog.layout.ptr_size
        self.endian = prog.layout.endian
        self.stack: list[tuple[str, int, tuple[int, ...], int | None]] = []
        self.caller: int | None = None
        self.breakpoints: list[gdb.Breakpoint] = []
        self.started = time.perf_counter()
        self.duplicates = 0
        self.errors = 0
        self._plant_all(funcs)

    # -------------------------------------------------------------- planting
    def _plant_all(self, funcs: list[str]) -> None:
        returns: dict[int, set[str]] = {}
        arch = gdb.selected_inferior().architecture()
        for func in funcs:
            addr = self.prog.symbols[func]
            first = [i["asm"] for i in arch.disassemble(addr, count=2)]
            # where calls enter it: past a ppc64 ELFv2 TOC setup
            self.breakpoints.append(_Entry(self, func, addr + self.abi.local_entry_asm(first)))
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
            # the function's outermost block: a block of code inlined at
            # its start has a function of its own (spin_lock)
            while block is not None and (block.function is None or (
                    block.superblock is not None and block.superblock.function is not None)):
                block = block.superblock
            if block is None or block.start in seen:
                continue
            seen.add(block.start)
            insns = [(i["addr"], i["asm"].strip())
                     for i in arch.disassemble(block.start, block.end - 1)]
            for n, (at, asm) in enumerate(insns):
                if self.abi.is_return(asm):
                    out.append(at)
                elif self.abi.is_jump(asm):
                    t = self.abi.jump_target(insns, n)
                    if t is not None and not block.start <= t < block.end:
                        todo.append(t)
        return out

    # ------------------------------------------------------------- recording
    def args(self, frame, func: str) -> tuple[int, ...]:
        sizes, _ = SIGNATURES[func]
        if not self.abi.stack_args:
            out = []
            for reg, size in zip(self.abi.args, sizes):
                v = _reg(frame, reg)
                out.append(v & ((1 << (8 * size)) - 1) if size else v)
            return tuple(out)
        sp = _reg(frame, self.abi.sp)
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
        sp = _reg(frame, self.abi.sp)
        if self.stack and self.stack[-1][0] == func and self.stack[-1][1] == sp:
            self.duplicates += 1          # the stub reported this hit twice
            return
        outermost = not self.stack
        self.stack.append((func, sp, self.args(frame, func) if outermost else (),
                           self.return_address() if outermost and self.records_callers
                           else None))

    def return_address(self) -> int | None:
        """Where the call that just entered returns to, read at the entry
        point's first instruction (the arch's CallABI.return_address: the
        word at the stack pointer on x86, the link register elsewhere)."""
        try:
            v = int(gdb.parse_and_eval(self.abi.return_address))
        except gdb.error:
            return None
        return v & ((1 << (8 * self.word)) - 1)

    def leave(self, owners: set[str]) -> bool:
        if not self.stack or self.stack[-1][0] not in owners:
            return False                  # a return with no entry: ignore
        func, _sp, args, caller = self.stack.pop()
        if self.stack:
            return False                  # nested inside another entry point
        self.caller = caller
        _, returns = SIGNATURES[func]
        result = None
        if returns:
            v = _reg(gdb.selected_frame(), self.abi.ret)
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
    """One recording session: every call into a trace file, with its
    caller's return address."""

    records_callers = True

    def __init__(self, path: str, funcs: list[str], snapshot_every: int = 0,
                 on_state=None, footprint=None):
        prog = target.program()
        self.snapshot_every = snapshot_every
        self.on_state = on_state              # () -> the whole state now
        # model.footprint.Footprint: the design's writes of each call, read back
        self.footprint = footprint
        self.memory = target.memory()
        # areas: the guest's address of `areas`, which says how far a
        # relocatable program was moved from its ELF (callers' addresses are
        # the guest's too); page_size: what a block of order k spans
        self.writer = TraceWriter(path, {"arch": prog.arch, "format": prog.layout.format,
                                         "areas": prog.areas_addr, "areas_mask": prog.mask_addr,
                                         "page_size": prog.layout.page_size,
                                         "callers": True, "funcs": funcs})
        super().__init__(funcs)
        # the guest's running time: a call's cost is guest time, not the
        # time the user sat at the prompt between `continue`s
        self.running = 0.0
        self._resumed: float | None = None
        gdb.events.cont.connect(self._on_cont)
        gdb.events.stop.connect(self._on_stop)

    def _on_cont(self, _event) -> None:
        if self._resumed is None:
            self._resumed = time.perf_counter()

    def _on_stop(self, _event) -> None:
        if self._resumed is not None:
            self.running += time.perf_counter() - self._resumed
            self._resumed = None

    def on_call(self, func, args, result) -> bool:
        wrote = None
        if self.footprint is not None:
            ranges = self.footprint.call(func, tuple(args))
            if ranges is not None:
                try:
                    wrote = [(addr, self.memory.read(addr, size)) for addr, size in ranges]
                except MemoryReadError:
                    self.errors += 1
        self.writer.call(func, args, result, wrote, ra=self.caller)
        if self.snapshot_every and self.on_state and \
                self.writer.count % self.snapshot_every == 0:
            self.writer.state(self.on_state())
        return False

    def flush(self) -> str:
        """The trace so far on disk (for `owner`/`live` while it runs); its path."""
        self.writer.flush()
        return self.writer.path

    def stop(self) -> dict:
        self._on_stop(None)
        for ev, fn in ((gdb.events.cont, self._on_cont), (gdb.events.stop, self._on_stop)):
            try:
                ev.disconnect(fn)
            except (ValueError, RuntimeError):
                pass
        self.remove()
        self.writer.close()
        return {"calls": self.writer.count, "seconds": time.perf_counter() - self.started,
                "running_seconds": self.running, "duplicates": self.duplicates,
                "errors": self.errors, "path": self.writer.path}


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
