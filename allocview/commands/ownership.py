"""`owner` and `live`: who owns a page, from a trace (Linux's page_owner,
answered from outside the guest). The trace's calls say which blocks were
handed out and given back (model/owner.py); each call's caller, the return
address it was entered with, becomes a function and a source line through
the ELF's DWARF (allocview/symbols.py). Files only, so gdb and the CLI
both offer them; in gdb, without --trace, the trace `alloc trace` is
recording right now."""

from __future__ import annotations

from . import CommandError, Result, arg, command

TRACE = arg("--trace", metavar="FILE", complete="file",
            help="the trace (`alloc trace`); in gdb, default: the one being recorded")


@command("owner", "Name the calls that allocated and freed the block holding an address.",
         "From a trace: the block that holds ADDR, the call that allocated (or reserved) it "
         "with its arguments and result, the guest's caller (function and source line, from "
         "the return address through the ELF's DWARF), and the call that freed it, if any; "
         "earlier blocks that held ADDR and were freed are listed after it. Exit status 2 "
         "(CLI) when no block the trace saw held ADDR.",
         arg("address", type="address", complete="expression", metavar="ADDR",
             help="a guest address (in gdb, any expression)"),
         TRACE, costly=True)
def run_owner(ctx, args) -> Result:
    from .. import render
    seen = _Traced(ctx, args.trace)
    found = seen.owners.owner(args.address)
    if found is None:
        raise CommandError(f"{args.address:#x} is in no block the trace saw allocated or "
                           f"reserved ({seen.scope()})")
    data = {"address": args.address, **seen.about(),
            "block": seen.block(found.block) if found.block else None,
            "earlier": [seen.block(b) for b in found.earlier],
            "also_live": [seen.block(b) for b in found.also_live],
            "stray_frees": [seen.call(c) for c in found.stray_frees]}
    return Result(data, render.owner_view(data))


@command("live", "List the blocks a trace allocated and never freed, by call site.",
         "From a trace: every block allocated (or reserved) and not freed by its end, grouped "
         "by the guest's call site (function and source line of the caller, through the "
         "ELF's DWARF), the most memory first. Blocks allocated before the trace began are "
         "not known to it.",
         TRACE,
         arg("--limit", type=int, default=10, metavar="N", help="call sites shown in the text"),
         costly=True)
def run_live(ctx, args) -> Result:
    from .. import render
    seen = _Traced(ctx, args.trace)
    sites = seen.owners.by_call_site(seen.site_key)
    live = [b for s in sites for b in s.blocks]
    data = {**seen.about(),
            "live": {"blocks": len(live), "bytes": sum(b.size for b in live)},
            "sites": [{"caller": seen.frames(s.blocks[0].call.ra),
                       "return_addresses": sorted({b.call.ra for b in s.blocks
                                                   if b.call.ra is not None}),
                       "blocks": len(s.blocks), "bytes": s.size,
                       "list": [seen.block(b, caller=False) for b in s.blocks]}
                      for s in sites],
            "handed_out_twice": [{"live": seen.block(a), "over_it": seen.block(b)}
                                 for a, b in seen.owners.doubles]}
    return Result(data, render.live_view(data, args.limit))


class _Traced:
    """A trace with what it needs to be told: its calls' blocks, and the ELF
    that turns its callers' addresses into source lines."""

    def __init__(self, ctx, path: str | None):
        from allocview.model.owner import Owners
        from allocview.model.trace import read_trace
        path = path or ctx.trace_in_progress()
        if path is None:
            raise CommandError("which trace? give --trace FILE (in gdb the trace `alloc trace "
                               "start` is recording, or last recorded, is the default)")
        self.trace = read_trace(path, footprints=False)
        prog = ctx.program()
        arch = self.trace.header.get("arch")
        if arch is not None and arch != prog.arch:
            raise CommandError(f"{path} is a trace of an {arch} guest, and {prog.name} is "
                               f"{prog.arch}")
        page_size = self.trace.header.get("page_size") or prog.layout.page_size
        self.owners = Owners(self.trace.calls, page_size)
        self.index, self.offset, self.why_no_lines = _code(ctx, prog, self.trace.header)
        self._frames: dict[int, list[dict]] = {}

    def scope(self) -> str:
        o = self.owners
        start = "from boot" if o.started_at_boot else "begun after boot"
        return f"{o.calls} calls, {start}"

    def about(self) -> dict:
        """What the trace could tell (the same in every answer)."""
        o = self.owners
        notes = []
        if o.calls and not o.callers:
            notes.append("this trace has no caller addresses (recorded before `alloc trace` "
                         "recorded them): calls are named without their callers")
        elif o.callers < o.calls:
            notes.append(f"{o.calls - o.callers} of {o.calls} calls have no caller address "
                         f"(unreadable at their entry)")
        if o.callers and self.why_no_lines:
            notes.append(self.why_no_lines)
        if not o.started_at_boot:
            notes.append("the trace began after boot: blocks allocated before it are not known")
        if o.stray_frees:
            notes.append(f"{len(o.stray_frees)} free(s) of blocks the trace did not see "
                         f"allocated")
        return {"calls": o.calls, "callers": o.callers > 0, "from_boot": bool(o.started_at_boot),
                "load_offset": self.offset, "notes": notes}

    def frames(self, ra: int | None) -> list[dict]:
        """The caller at ra: innermost function first, with its line."""
        if ra is None or self.index is None:
            return []
        got = self._frames.get(ra)
        if got is None:
            got = self._frames[ra] = [f.to_json()
                                      for f in self.index.call_site(ra - self.offset)]
        return got

    def site_key(self, call):
        """What live groups by: the caller's source frames (two return
        addresses on one line are one site), else the address itself."""
        frames = self.frames(call.ra)
        return tuple(tuple(f.values()) for f in frames) if frames else call.ra

    def call(self, c) -> dict:
        return {**c.to_json(), "ra": c.ra, "caller": self.frames(c.ra)}

    def block(self, b, caller: bool = True) -> dict:
        doc = b.to_json()
        if caller:
            doc["call"] = self.call(b.call)
            if b.freed_by is not None:
                doc["freed_by"] = self.call(b.freed_by)
        return doc


def _code(ctx, prog, header: dict):
    """The ELF's code index, how far the guest moved the program (its
    callers' addresses minus this are the ELF's), and why there are no
    source lines, if there are none."""
    from allocview.symbols import code_index, load_program

    from ..errors import SymbolError
    if not prog.path:
        return None, 0, "no ELF to name callers by (give --elf): their addresses only"
    try:
        linked = load_program(prog.path, arch=prog.arch)   # the ELF's own addresses
        index = code_index(prog.path)
    except SymbolError as e:
        return None, 0, f"callers by address only: {e}"
    offset = ctx.load_offset()
    if offset is None:
        # the trace names where the guest had `areas`: the program moved by the difference
        offset = header["areas"] - linked.symbols["areas"] if "areas" in header else 0
    why = None if index.has_lines else \
        f"{prog.name} has no DWARF line information: callers by function symbol only"
    return index, offset, why
