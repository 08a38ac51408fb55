"""The commands only gdb can offer: they keep a stop's state (snapshot),
plant breakpoints (trace, check-each) or evaluate gdb expressions in the
program (vmalloc, phys). Declared like every other command
(allocview.commands), run with a GdbContext."""

from __future__ import annotations

import gdb  # type: ignore[import-not-found]

from allocview import render
from allocview.commands import CommandError, Result, arg, command

from . import target
from .context import current, recorded, symbols_at_guest
from .session import session

VM_MAGIC = 0x7E57C0DE


def _say(text: str) -> render.Doc:
    return render.Doc().line(f"allocview: {text}")


# ----------------------------------------------------------------- snapshot
@command("snapshot", "Keep the allocator's state at this stop under a name, for `diff`.",
         "NAME defaults to s1, s2, ...; `alloc diff NAME` then shows what changed since.",
         arg("name", nargs="?", metavar="NAME", help="what to call it"),
         writes=True, json=False, only="gdb")
def run_snapshot(ctx, args) -> Result:
    s = session()
    snap = current(require=False)
    s.counter += 1
    name = args.name or f"s{s.counter}"
    s.saved[name] = snap
    return Result({"name": name}, _say(f"saved snapshot {name}"))


# -------------------------------------------------------------------- trace
@command("trace", "Record every allocator call while the guest runs on.",
         "`alloc trace start [FILE]`, then `continue`; `alloc trace stop`. Each call's "
         "arguments and result go to FILE as JSON lines, the state at start to "
         "FILE.start.elf, for `allocview replay`. Costs two breakpoint hits per call (about "
         "3-4 ms each over the gdb stub), plus a decode every N calls with "
         "--snapshot-every N.",
         arg("action", choices=["start", "stop", "status"], complete="word",
             help="start, stop, or status"),
         arg("file", nargs="?", default="alloc-trace.jsonl", metavar="FILE", complete="file",
             help="the trace file (start)"),
         arg("--snapshot-every", type=int, default=0, metavar="N",
             help="record the whole state after every N calls (0: never)"),
         arg("--funcs", nargs="+", metavar="FUNC", complete="entry-point",
             help="entry points to trace (default: the outermost ones the program has)"),
         arg("--no-footprint", action="store_true",
             help="record calls only, not the bytes each one writes (replay then compares "
                  "results and recorded states only)"),
         writes=True, only="gdb")
def run_trace(ctx, args) -> Result:
    from .trace import Tracer, entry_points
    s = session()
    t = s.tracer
    if args.action == "status":
        if t is None:
            return Result({"tracing": False}, _say("not tracing"))
        return Result({"tracing": True, "path": t.writer.path, "calls": t.writer.count},
                      _say(f"tracing to {t.writer.path}: {t.writer.count} calls so far"))
    if args.action == "stop":
        if t is None:
            raise CommandError("not tracing")
        r = t.stop()
        s.tracer = None
        s.last_trace = t.writer.path
        run = r["running_seconds"]
        rate = (f"{r['calls'] / run:.0f} calls/s of guest time" if run and r["calls"]
                else "no guest time yet")
        extra = "".join(f", {r[k]} {what}" for k, what in
                        (("duplicates", "duplicate hits dropped"), ("errors", "unreadable"))
                        if r[k])
        return Result(r, _say(f"{r['calls']} calls recorded in {r['path']} (the guest ran "
                              f"{run:.1f} s: {rate}{extra})"))
    if t is not None:
        raise CommandError("already tracing; `alloc trace stop` first")
    prog = symbols_at_guest("alloc trace")
    funcs = _entry_points(prog, args.funcs, entry_points)
    start = _save(args.file + ".start.elf")
    footprint, why_not = (None, "--no-footprint") if args.no_footprint else _footprint(start)
    s.tracer = Tracer(args.file, funcs, args.snapshot_every, on_state=_state_now,
                      footprint=footprint)
    also = ("each call's footprint too" if footprint is not None
            else f"calls only: {why_not}")
    return Result({"tracing": True, "path": args.file, "funcs": funcs,
                   "footprints": footprint is not None},
                  _say(f"tracing {', '.join(funcs)} into {args.file} ({also}; start state in "
                       f"{args.file}.start.elf); `continue` to run"))


def _footprint(start):
    """The design's model of the allocator from the start state, to say what
    each call writes (model.footprint); (None, why) when it cannot hold it."""
    from allocview.model.errors import ModelError
    from allocview.model.footprint import Footprint
    from allocview.model.reference import Allocator
    try:
        al = Allocator.from_state(start.layout, list(start.state()), start.areas_mask or 0,
                                  areas_addr=start.areas_addr, mask_addr=start.mask_addr,
                                  phys_offset=start.phys_offset)
    except ModelError as e:
        return None, f"the start state breaks the design ({e})"
    return Footprint(al), ""


def _state_now():
    from .context import fresh_snapshot
    return fresh_snapshot().state()


def _entry_points(prog, asked, default) -> list[str]:
    funcs = asked or default(prog)
    missing = [f for f in funcs if f not in prog.symbols]
    if missing or not funcs:
        raise CommandError(f"no such entry point(s): {', '.join(missing) or 'none found'}")
    return funcs


def _save(path: str):
    """The state now, written to path as a small dump; the snapshot."""
    from allocview.dumpwrite import write_elf_dump
    snap, segments = recorded()
    write_elf_dump(path, segments, arch=snap.layout.arch.name, partial=True)
    return snap


# --------------------------------------------------------------- check-each
@command("check-each", "Stop the guest at the first allocator call that breaks the design.",
         "After every call of the entry points (or the FUNCs named), check what the call "
         "touched; stop at the first call that adds an error finding, naming the call, its "
         "arguments and the findings (breaches there when armed do not stop it). A full "
         "check runs every --full-every calls and after gdb writes memory. `alloc check-each "
         "off` removes it; `status` shows the count.",
         arg("funcs", nargs="*", metavar="FUNC", complete="entry-point",
             help="entry points (default: the outermost ones), or `off`, or `status`"),
         arg("--full-every", type=int, default=100, metavar="N",
             help="a full check every N calls"),
         writes=True, only="gdb")
def run_check_each(ctx, args) -> Result:
    from .checkeach import CheckEach
    from .trace import entry_points
    s = session()
    w = s.checkeach
    if args.funcs in (["off"], ["status"]):
        if w is None:
            return Result({"armed": False}, _say("check-each is off"))
        doc = render.Doc()
        for line in w.describe().splitlines():
            doc.line(line)
        data = {"armed": True, "calls": w.calls, "full_checks": w.full_checks,
                "broken": w.broken is not None}
        if args.funcs == ["off"]:
            w.off()
            s.checkeach = None
            data["armed"] = False
            doc.line("allocview: check-each off")
        return Result(data, doc)
    if w is not None:
        w.off()
        s.checkeach = None
    prog = symbols_at_guest("alloc check-each")
    funcs = _entry_points(prog, args.funcs, entry_points)
    s.checkeach = CheckEach(funcs, args.full_every, s.format)
    return Result({"armed": True, "funcs": funcs},
                  _say(f"checking after each call of {', '.join(funcs)}; `continue` to run"))


# ------------------------------------------------------------------ vmalloc
@command("vmalloc", "Decode the vmalloc metadata in front of a pointer it returned.",
         "A multi-page allocation has struct metadata {npages; magic;} just before it; a "
         "one-page one has the magic in the word before the pointer.",
         arg("pointer", type="address", metavar="POINTER", complete="expression",
             help="a pointer vmalloc returned (any gdb expression)"),
         only="gdb")
def run_vmalloc(ctx, args) -> Result:
    prog = target.program()
    mem = target.GdbMemory()     # vmalloc addresses are virtual: never the physical shortcut
    lay = prog.layout
    ul = lay.ptr_size
    p = args.pointer

    def word(addr):
        return int.from_bytes(mem.read(addr, ul), lay.endian)

    doc = render.Doc()
    page = p & ~(lay.page_size - 1)
    magic = word(p - ul)
    data: dict = {"pointer": p, "magic_at": p - ul, "magic": magic}
    if magic != VM_MAGIC:
        data["kind"] = None
        doc.line((f"{p:#x}: no vmalloc metadata (the word before it is {magic:#x}, not the "
                  f"magic {VM_MAGIC:#x})", "yellow"))
    elif p == page:
        data.update(kind="pages", npages=word(p - 2 * ul), metadata=p - 2 * ul)
        doc.line(f"{p:#x}: vmalloc allocation of {data['npages']} page(s), struct metadata at "
                 f"{p - 2 * ul:#x}")
    else:
        data.update(kind="one-page", offset=p - page, page=page)
        doc.line(f"{p:#x}: one-page vmalloc allocation, {p - page} bytes into page {page:#x} "
                 f"(magic at {p - ul:#x})")
    vt = target.address_of(["'vmalloc.c'::vfree_top", "vfree_top"])
    if vt is not None:
        data["vfree_top"] = word(vt)
        doc.line(f"vfree_top = {data['vfree_top']:#x}")
    return Result(data, doc)


# --------------------------------------------------------------------- phys
@command("phys", "Show the early physical allocator: its free range and regions.",
         "alloc_phys.c's base and top (what is still free), align_min, and the regions it "
         "handed out.", only="gdb")
def run_phys(ctx, args) -> Result:
    def val(name):
        for n in (f"'alloc_phys.c'::{name}", name):
            try:
                return gdb.parse_and_eval(n)
            except gdb.error:
                continue
        return None

    base, top, nr, regions = val("base"), val("top"), val("nr_regions"), val("regions")
    if base is None or top is None:
        raise CommandError("no alloc_phys `base`/`top` symbols in this program")
    doc = render.Doc()
    b, t = int(base), int(top)
    data: dict = {"base": b, "top": t, "free": max(t - b, 0), "regions": []}
    doc.line(f"free range [{b:#x}, {t:#x}): {render.human_size(max(t - b, 0))}")
    align = val("align_min")
    if align is not None:
        data["align_min"] = int(align)
        doc.line(f"align_min {int(align)}")
    if nr is not None and regions is not None:
        n = int(nr)
        hi = regions.type.range()[1] + 1
        tab = render.Table(["#", "base", "size", "end"], right={0})
        for i in range(min(n, hi)):
            r = regions[i]
            rb, rs = int(r["base"]), int(r["size"])
            data["regions"].append({"base": rb, "size": rs})
            tab.add(str(i), f"{rb:#x}", render.human_size(rs), f"{rb + rs:#x}")
        doc.line(f"{n} region(s) allocated"
                 + (f" (only {hi} fit: corrupt nr_regions)" if n > hi else ""))
        doc.table(tab)
    return Result(data, doc)
