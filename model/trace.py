"""Allocator call traces: what `alloc trace` records and `replay` reads.

A trace is JSON lines: a header object, then one object per call
`{"i": N, "func": NAME, "args": [...], "result": INT|null}` (with `"died":
WORDS` when the call never returned: drive's reproducers), and optionally
state records `{"after": N, "state": [AREA, ...]}` (after call N) whose
metadata is zlib-compressed and base64-encoded (runs of equal bytes shrink
to almost nothing). A call may carry its footprint (model/footprint.py):
`"w": {"b": BLOB}`, the guest's bytes after the call where the design
says the call writes (ranges and bytes packed, compressed the same way;
the first such traces had `"w": {"r": [[ADDR, SIZE], ...], "z": BYTES}`,
still read), and
its caller: `"ra": INT`, the return address the entry point was entered
with, as the guest had it (a relocatable test's runtime address, not the
ELF's: the header's `areas`, the guest's address of `areas`, says how far
the program was moved). A header with `"callers": true` says every call
carries one (traces recorded before that have no `ra`, and read the same).
"""

from __future__ import annotations

import base64
import binascii
import gc
import struct
import json
import zlib
from dataclasses import dataclass, field

from .entry_points import SIGNATURES, VOID_FUNCS
from .errors import AllocviewError
from .files import require_regular
from .state import AreaState

__all__ = ["Call", "Trace", "read_trace", "TraceWriter", "state_to_json", "state_from_json",
           "VOID_FUNCS", "SIGNATURES"]



@dataclass(frozen=True)
class Call:
    i: int
    func: str
    args: tuple[int, ...]
    result: int | None
    # the guest's bytes after the call where the design writes: ((addr, bytes), ...)
    wrote: tuple[tuple[int, bytes], ...] | None = field(default=None, compare=False, repr=False)
    # the caller's return address at entry (the guest's address), None when
    # the trace did not record it: who made the call, not what it did, so
    # calls compare equal with or without it
    ra: int | None = field(default=None, compare=False)
    # the call never returned: the guest hung or aborted in it (drive's words)
    died: str | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        doc = {"i": self.i, "func": self.func, "args": list(self.args), "result": self.result}
        if self.ra is not None:
            doc["ra"] = self.ra
        return doc

    def c(self) -> str:
        """The call as C, for a kvm-unit-tests reproducer."""
        args = ", ".join(hex(a) if a > 9 else str(a) for a in self.args)
        return f"{self.func}({args})"


@dataclass
class Trace:
    header: dict
    calls: list[Call] = field(default_factory=list)
    states: dict[int, tuple[AreaState, ...]] = field(default_factory=dict)   # after call i


def state_to_json(state: tuple[AreaState, ...]) -> list[dict]:
    return [{"slot": a.slot, "base": a.base, "top": a.top, "page_states": a.page_states,
             "max_order": a.max_order,
             "metadata_z": base64.b64encode(zlib.compress(a.metadata, 6)).decode(),
             "freelists": {str(k): list(v) for k, v in enumerate(a.freelists) if v},
             "nlists": len(a.freelists)} for a in state]


def state_from_json(doc: list[dict]) -> tuple[AreaState, ...]:
    out = []
    for a in doc:
        lists = [tuple(a["freelists"].get(str(k), ())) for k in range(a["nlists"])]
        out.append(AreaState(a["slot"], a["base"], a["top"], a["page_states"], a["max_order"],
                             zlib.decompress(base64.b64decode(a["metadata_z"])), tuple(lists)))
    return tuple(out)


_RANGE = struct.Struct("<QI")


def _wrote_to_json(wrote: list[tuple[int, bytes]]) -> dict:
    """One blob: the ranges packed (little-endian u64 address, u32 size)
    after their count, then their bytes, zlib-compressed, base64: a short
    string is what JSON parses fastest (a list of numbers per call was
    half of a million-call replay's time)."""
    head = struct.pack("<I", len(wrote)) + b"".join(_RANGE.pack(a, len(d)) for a, d in wrote)
    return {"b": base64.b64encode(zlib.compress(head + b"".join(d for _, d in wrote), 6))
            .decode()}


def _wrote_from_json(doc: dict) -> tuple[tuple[int, bytes], ...]:
    out = []
    if "b" in doc:
        blob = zlib.decompress(binascii.a2b_base64(doc["b"]))
        pos = 4 + _RANGE.size * int.from_bytes(blob[:4], "little")
        for addr, size in _RANGE.iter_unpack(blob[4:pos]):
            out.append((addr, blob[pos:pos + size]))
            pos += size
    else:                     # the first footprint traces: ranges as JSON
        blob = zlib.decompress(base64.b64decode(doc["z"]))
        pos = 0
        for addr, size in doc["r"]:
            out.append((int(addr), blob[pos:pos + int(size)]))
            pos += int(size)
    if pos != len(blob):
        raise ValueError("footprint sizes do not add up to its bytes")
    return tuple(out)


def read_trace(path: str, footprints: bool = True) -> Trace:
    """Parse a trace; AllocviewError naming the line for anything malformed.
    footprints=False skips decoding them (who owns what needs calls only)."""
    require_regular(path, "trace")
    try:
        f = open(path)
    except OSError as e:
        raise AllocviewError(f"{path}: cannot open ({e.strerror or e})") from None
    # a million calls are millions of objects that hold no cycles: the
    # collector's passes over them were a third of the time
    collecting = gc.isenabled()
    gc.disable()
    try:
        with f:
            return _parse(f, path, footprints)
    finally:
        if collecting:
            gc.enable()


def _parse(f, path: str, footprints: bool) -> Trace:
    trace = None
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if trace is None:
                if "trace" not in doc:
                    raise ValueError("no trace header")
                trace = Trace(doc)
            elif "func" in doc:
                if doc["func"] not in SIGNATURES:
                    raise ValueError(f"unknown function {doc['func']!r}")
                trace.calls.append(Call(int(doc["i"]), doc["func"],
                                        tuple(int(x) for x in doc["args"]),
                                        None if doc.get("result") is None else int(doc["result"]),
                                        _wrote_from_json(doc["w"])
                                        if footprints and "w" in doc else None,
                                        None if doc.get("ra") is None else int(doc["ra"]),
                                        str(doc["died"]) if doc.get("died") else None))
            elif "after" in doc:
                trace.states[int(doc["after"])] = state_from_json(doc["state"])
        except (ValueError, KeyError, TypeError, zlib.error, struct.error,
                binascii.Error) as e:
            raise AllocviewError(f"{path}:{n}: not a trace record ({e})") from None
    if trace is None:
        raise AllocviewError(f"{path}: empty, not a trace")
    return trace


class TraceWriter:
    """Appends records to a trace file; the header goes first."""

    def __init__(self, path: str, header: dict):
        self.path = path
        self.f = open(path, "w")
        self.count = 0
        self.f.write(json.dumps({"trace": 1, **header}) + "\n")

    def call(self, func: str, args: tuple[int, ...], result: int | None,
             wrote: list[tuple[int, bytes]] | None = None, ra: int | None = None,
             died: str | None = None) -> None:
        doc: dict = {"i": self.count, "func": func, "args": list(args), "result": result}
        if ra is not None:
            doc["ra"] = ra
        if wrote is not None:
            doc["w"] = _wrote_to_json(wrote)
        if died:
            doc["died"] = died
        self.f.write(json.dumps(doc) + "\n")
        self.count += 1

    def state(self, state: tuple[AreaState, ...]) -> None:
        self.f.write(json.dumps({"after": self.count - 1, "state": state_to_json(state)}) + "\n")

    def flush(self) -> None:
        """Every record so far on disk, whole lines only (a reader while
        the trace goes on)."""
        self.f.flush()

    def close(self) -> None:
        self.f.close()
