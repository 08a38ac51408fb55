"""`replay`: a recorded trace run through the reference allocator; needs
files only (the trace, its start state, the guest's end state), so gdb and
the CLI both offer it."""

from __future__ import annotations

import os
import time

from . import Result, arg, command


@command("replay", "Replay a trace in the reference allocator; find where the guest departs.",
         "Runs the calls of TRACE (`alloc trace`, `drive`) in the reference allocator from "
         "the state the trace starts in, comparing every result, every state the trace "
         "recorded, and the guest's end state (--against); reports the first call after "
         "which they differ. Exit status 1 (CLI) on a divergence.",
         arg("trace", metavar="TRACE", complete="file", help="the trace (JSON lines)"),
         arg("--start", metavar="DUMP", complete="file",
             help="the state the trace starts from (default: TRACE.start.elf when present, "
                  "else an empty allocator)"),
         arg("--against", metavar="DUMP", complete="file",
             help="the guest's end state to compare with (a dump, `save`, or a snapshot name)"),
         arg("--mode", default="exact", choices=["exact", "relaxed"],
             help="exact: list order too; relaxed: lists as sets"),
         arg("--known", metavar="FILE", complete="file",
             help="accepted difference kinds, one per line"),
         costly=True)
def run_replay(ctx, args) -> Result:
    from allocview.model.drive_io import read_known
    from allocview.model.reference import Allocator
    from allocview.model.replay import replay
    from allocview.model.trace import read_trace

    from .. import render

    trace = read_trace(args.trace)
    prog = ctx.program()
    offset = ctx.load_offset()
    if offset is None and prog.relocatable and "areas" in trace.header:
        offset = trace.header["areas"] - prog.symbols["areas"]   # the guest's own address
    prog = prog.relocated(offset or 0)
    areas, mask = prog.symbols["areas"], prog.symbols["areas_mask"]
    start = args.start or (args.trace + ".start.elf"
                           if os.path.exists(args.trace + ".start.elf") else None)
    phys = ctx.phys_offset()
    if start:
        snap = ctx.resolve(start, offset)
        al = Allocator.from_state(snap.layout, list(snap.state()), snap.areas_mask or 0,
                                  areas_addr=areas, mask_addr=mask, phys_offset=phys)
    else:
        al = Allocator(prog.layout, areas_addr=areas, mask_addr=mask, phys_offset=phys)
    against = ctx.resolve(args.against, offset).state() if args.against else None
    t = time.perf_counter()
    res = replay(al, trace.calls, trace.states, against, mode=args.mode,
                 accepted=read_known(args.known))
    took = time.perf_counter() - t
    verdict = replay_verdict(res, against is not None, len(trace.calls))
    data = {"calls": res.calls, "compared": res.compared, "footprints": res.footprints,
            "end_state_checked": against is not None, "seconds": round(took, 3),
            "verdict": verdict,
            "divergence": res.divergence.to_json() if res.divergence else None}
    doc = render.Doc()
    doc.line(f"replayed {res.calls} of {len(trace.calls)} calls in {took:.2f} s: "
             f"{res.footprints} call footprint(s), {res.compared} state comparison(s)")
    if res.divergence is None:
        doc.line((verdict, "green" if res.compared else "yellow"))
    else:
        words = res.divergence.words()
        doc.line(("divergence ", "bold red"), (words[0], ""))
        for w in words[1:]:
            doc.line(w)
    return Result(data, doc, 1 if res.divergence else 0)


def replay_verdict(res, end_checked: bool, calls: int) -> str:
    """What a replay without divergence may claim: results only, or state."""
    if res.divergence is not None:
        return "divergence"
    if not res.compared and not res.footprints:
        return (f"every result of the {calls} calls is the model's; no state was compared "
                f"(the trace holds no footprints or states and no --against end state was "
                f"given), so the guest's metadata and lists were not checked")
    seen = (f"{res.footprints} call footprint(s), " if res.footprints else "") + \
        f"{res.compared} state comparison(s) and every result"
    if not end_checked:
        return (f"no divergence in {seen}; the end state was not checked (give --against "
                f"DUMP)")
    return f"no divergence in {seen}: the guest follows the design"
