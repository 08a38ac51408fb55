"""Where a kvm-unit-tests program ends, and how few breakpoints it takes to
see it.

Under TCG a breakpoint costs more than its hit: QEMU translates every
instruction on the breakpoint's guest page one at a time, so a breakpoint
on `abort`, which shares its page with memcpy and malloc, slowed the
upstream sieve test by half. `abort()` calls `exit()` in kvm-unit-tests
and in the fixture guest, so where the program's own code says so (a
direct call of exit inside abort, decoded by the arch's ABI), one breakpoint on exit serves both and the
return address tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from allocview.model.arch import arch as arch_named

__all__ = ["Ends", "find_ends"]


@dataclass(frozen=True)
class Ends:
    """exit (and abort) entry addresses; `abort_via_exit`: abort's body
    calls exit, so no breakpoint on abort is needed; `abort_range` is
    (start, end] of abort's code, where a call from abort returns to."""
    exit: int
    abort: int | None = None
    abort_range: tuple[int, int] | None = None
    abort_via_exit: bool = False

    def moved(self, offset: int) -> "Ends":
        """The same ends in a program loaded `offset` from its link addresses."""
        if not offset:
            return self
        rng = None if self.abort_range is None else \
            (self.abort_range[0] + offset, self.abort_range[1] + offset)
        return Ends(self.exit + offset, None if self.abort is None else self.abort + offset,
                    rng, self.abort_via_exit)

    def breakpoints(self) -> dict[str, int]:
        out = {"exit": self.exit}
        if self.abort is not None and not self.abort_via_exit:
            out["abort"] = self.abort
        return out


def _function(elf: ELFFile, name: str) -> tuple[int, int] | None:
    """(address, size) of the one global function `name`."""
    for sec in elf.iter_sections():
        if isinstance(sec, SymbolTableSection) and sec["sh_type"] == "SHT_SYMTAB":
            hits = [s for s in sec.get_symbol_by_name(name) or ()
                    if s["st_info"]["type"] == "STT_FUNC"]
            if len(hits) == 1:
                return hits[0]["st_value"], hits[0]["st_size"]
    return None


def _code(elf: ELFFile, addr: int, size: int) -> bytes | None:
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr and \
                addr + size <= seg["p_vaddr"] + seg["p_filesz"]:
            off = addr - seg["p_vaddr"]
            return seg.data()[off:off + size]
    return None


def find_ends(elf_path: str, arch: str, exit_addr: int, abort_addr: int | None) -> Ends:
    if abort_addr is None:
        return Ends(exit_addr, abort_addr)
    try:
        with open(elf_path, "rb") as f:
            elf = ELFFile(f)
            fn = _function(elf, "abort")
            code = _code(elf, *fn) if fn and fn[0] == abort_addr and fn[1] else None
    except Exception:  # noqa: BLE001 - any doubt: break on abort too
        return Ends(exit_addr, abort_addr)
    if code is None:
        return Ends(exit_addr, abort_addr)
    rng = (abort_addr, abort_addr + len(code))
    calls = arch_named(arch).abi.direct_calls(code, abort_addr)
    return Ends(exit_addr, abort_addr, rng, exit_addr in set(calls))
