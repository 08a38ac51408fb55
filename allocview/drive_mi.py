"""`allocview drive --gdb`: the drive guest over gdb/MI (pygdbmi).

Inferior calls are `-data-evaluate-expression` of the entry point cast to
its prototype; a call that does not return in time is interrupted (SIGINT
to gdb, which unwinds it: `unwindonsignal on`) and reported.
"""

from __future__ import annotations

from allocview.model.drive import GuestCallError
from allocview.model.drive_io import call_expression, parse_int

from .errors import SourceError
from .mi import message
from .sources.gdbmi import GdbMiSource

__all__ = ["MiGuest"]


class MiGuest:
    def __init__(self, source: GdbMiSource, timeout: float = 10.0):
        self.src = source
        self.timeout = timeout
        rec = self.src.batch(["-gdb-set unwindonsignal on"], 10)[0]
        if rec["message"] == "error":
            raise SourceError(f"{source.label}: gdb refused unwindonsignal: {message(rec)}")

    def call(self, func: str, args: tuple[int, ...]) -> int | None:
        expr = call_expression(func, args).replace('"', '\\"')
        try:
            rec = self.src.batch([f'-data-evaluate-expression "{expr}"'], self.timeout)[0]
        except SourceError as e:
            if "no answer" in str(e):
                self.src.interrupt()
                raise GuestCallError(f"{func}{tuple(args)} did not return in {self.timeout:g} s: "
                                     f"the guest hangs in it (interrupted)") from None
            raise GuestCallError(f"{func}{tuple(args)}: {e}") from None
        if rec["message"] != "done":
            raise GuestCallError(f"{func}{tuple(args)} failed in the guest: {message(rec)}")
        value = (rec.get("payload") or {}).get("value")
        if value is None or func in ("free_pages", "unreserve_pages", "free_pages_special",
                                     "page_alloc_init_area"):
            return None
        return parse_int(value)

    def read(self, addr: int, size: int) -> bytes:
        return self.src.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        for off in range(0, len(data), 0x8000):
            piece = data[off:off + 0x8000]
            rec = self.src.batch([f"-data-write-memory-bytes {addr + off:#x} {piece.hex()}"],
                                     30)[0]
            if rec["message"] != "done":
                raise SourceError(f"{self.src.label}: cannot write {len(piece)} bytes at "
                                  f"{addr + off:#x}: {message(rec)}")
