"""The commands that look at one state: areas, lists, page, check, stats,
why, map, report, diff, save. Each is parse -> one core call -> render."""

from __future__ import annotations

from allocview.model.constants import FLAG_FRESH
from allocview.model.findings import Finding

from . import Result, arg, command

__all__ = ["narrow", "NARROWING"]

# check and report: which findings to show
NARROWING = (
    arg("--code", nargs="+", metavar="CODE", complete="code",
        help="only findings of these codes"),
    arg("--area", nargs="+", metavar="AREA", complete="area",
        help="only these areas (slot numbers or names)"),
    arg("--from", dest="from_addr", type="address", metavar="ADDR",
        help="only findings at or above this address"),
    arg("--to", dest="to_addr", type="address", metavar="ADDR",
        help="only findings below this address"),
    arg("--limit", type=int, default=20, metavar="N",
        help="findings shown per code in the text"),
    arg("--all", action="store_true", help="show every finding in the text"),
)


def _slots(snap, names: list[str] | None) -> set[int] | None:
    """Slot numbers for area names or numbers (None: every area)."""
    if not names:
        return None
    bits = snap.layout.area_bits(names)
    return {n for n in range(32) if bits >> n & 1}


def narrow(found: list[Finding], snap, args) -> list[Finding]:
    """The findings the narrowing options keep."""
    codes = set(args.code or ())
    slots = _slots(snap, args.area)
    lo, hi = args.from_addr, args.to_addr
    out = []
    for f in found:
        if codes and f.code not in codes:
            continue
        if slots is not None and f.slot not in slots:
            continue
        if lo is not None and (f.address is None or (f.last or f.address) < lo):
            continue
        if hi is not None and (f.address is None or f.address >= hi):
            continue
        out.append(f)
    return out


def _render():
    from .. import render
    return render


# -------------------------------------------------------------------- areas
@command("areas", "Show the allocator's areas.",
         "One row per area slot: pfn range, size, metadata address, max_order, pages by "
         "status, the largest free block and fragmentation; then how the byte encoding was "
         "decided.")
def run_areas(ctx, args) -> Result:
    from allocview.model.report import report
    from allocview.model.stats import stats
    snap = ctx.snapshot()
    return Result(report(snap, [])["areas"], _render().areas_view(snap, stats(snap)))


# -------------------------------------------------------------------- lists
@command("lists", "Show the free lists node by node.",
         "For each area and order: the nodes from head.next, each with its index, address, "
         "block order and status, and how the walk ended (at the head, or where it broke).",
         arg("slot", nargs="?", complete="slot", help="only this area (slot number or name)"),
         arg("order", nargs="?", type=int, complete="order", help="only this order"),
         arg("--limit", type=int, default=8, metavar="N", help="nodes shown per list"))
def run_lists(ctx, args) -> Result:
    snap = ctx.snapshot()
    slots = _slots(snap, [args.slot] if args.slot is not None else None)
    data = {str(a.slot): {str(k): {"nodes": list(w.nodes), "end": w.end}
                          for k, w in enumerate(a.freelists)
                          if (w.nodes or not w.complete) and args.order in (None, k)}
            for a in snap.areas if a.decoded and (slots is None or a.slot in slots)}
    return Result(data, _render().lists_view(snap, slots, args.order, args.limit))


# --------------------------------------------------------------------- page
@command("page", "Describe the page that holds an address.",
         "Its area, the block that covers it (first page, order, status, metadata byte), the "
         "free list it is on and where, and its buddy.",
         arg("address", type="address", complete="expression",
             help="a guest address (in gdb, any expression)"))
def run_page(ctx, args) -> Result:
    from allocview.model.query import describe_page
    info = describe_page(ctx.snapshot(), args.address)
    return Result(info, _render().page_view(info))


# -------------------------------------------------------------------- check
@command("check", "Check every invariant of the allocator and explain each breach.",
         "One finding per broken thing, with its code, area, address and what was expected; "
         "runs of like breaches at consecutive blocks are one finding with a count. Exit "
         "status 1 (CLI) when there are error findings.", *NARROWING)
def run_check(ctx, args) -> Result:
    from allocview.model.check import check, errors
    snap = ctx.snapshot()
    found = narrow(check(snap), snap, args)
    doc = _render().findings_view(found, limit=None if args.all else args.limit)
    return Result([f.to_json() for f in found], doc, 1 if errors(found) else 0)


# -------------------------------------------------------------------- stats
@command("stats", "Show free blocks per order, the largest block and fragmentation.",
         "Per area: free blocks and pages of each order, their share of the free memory, the "
         "largest free block, and 1 - largest / free pages as fragmentation.")
def run_stats(ctx, args) -> Result:
    from allocview.model.stats import stats
    snap = ctx.snapshot()
    st = stats(snap)
    return Result([s.to_json() for s in st], _render().stats_view(snap, st))


# ---------------------------------------------------------------------- why
@command("why", "Say whether an allocation would succeed now, and from where or why not.",
         "Follows the design's search: areas in slot order, one candidate per list from the "
         "request's order up to max_order (FLAG_FRESH: the back of the list, FRESH only).",
         arg("order", type=int, complete="order", help="the order of the allocation"),
         arg("--align", type=int, metavar="ORDER", help="the alignment order (default ORDER)"),
         arg("--area", nargs="+", default=[], metavar="AREA", complete="area",
             help="restrict to these areas (slot numbers or names)"),
         arg("--fresh", action="store_true", help="ask for FLAG_FRESH (2021)"),
         arg("--flags", type="address", default=0, metavar="FLAGS",
             help="raw allocation flags, or'ed with the above"))
def run_why(ctx, args) -> Result:
    from allocview.model.stats import why
    snap = ctx.snapshot()
    flags = args.flags | (FLAG_FRESH if args.fresh else 0) | snap.layout.area_bits(args.area)
    w = why(snap, args.order, args.align, flags)
    req = f"alloc order {args.order}" + (f" align {args.align}" if args.align is not None
                                         else "") + (f" flags {flags:#x}" if flags else "")
    return Result(w.to_json(), _render().why_view(w, req))


# ---------------------------------------------------------------------- map
@command("map", "Draw each area as a map of its pages.",
         "One cell per run of pages, coloured by status and block order; --from/--to zoom "
         "into a range; --svg and --html write the map as a picture.",
         arg("slot", nargs="?", complete="slot", help="only this area (slot number or name)"),
         arg("--rows", type=int, default=8, metavar="N", help="rows of cells per area"),
         arg("--from", dest="from_addr", type="address", metavar="ADDR",
             help="zoom: the first address shown"),
         arg("--to", dest="to_addr", type="address", metavar="ADDR",
             help="zoom: the end of what is shown"),
         arg("--svg", metavar="FILE", complete="file", help="write the map as SVG to FILE"),
         arg("--html", metavar="FILE", complete="file", help="write the map as HTML to FILE"),
         costly=True)
def run_map(ctx, args) -> Result:
    from allocview.model.check import check
    render = _render()
    snap = ctx.snapshot()
    found = check(snap)
    slots = _slots(snap, [args.slot] if args.slot is not None else None)
    slot = None if slots is None else min(slots)
    zoom = {"from_addr": args.from_addr, "to_addr": args.to_addr}
    doc = render.Doc()
    if args.svg or args.html:
        svg = render.map_svg(snap, slot, findings=found, **zoom)
        for path, text in ((args.svg, svg), (args.html, render.map_html(snap, svg))):
            if path:
                with open(path, "w") as f:
                    f.write(text)
                doc.line(f"allocview: map written to {path}")
    else:
        doc.extend(render.map_view(snap, slot, ctx.width(), args.rows, findings=found, **zoom))
    data = {}
    for a in snap.areas:
        if a.decoded and (slots is None or a.slot in slots):
            lo, hi = _page_range(snap, a, args.from_addr, args.to_addr)
            if hi > lo:
                data[str(a.slot)] = [c.name.lower() for c in render.map_cells(
                    a, snap.layout.encoding, min(hi - lo, 512), lo, hi)]
    return Result(data, doc)


def _page_range(snap, a, from_addr, to_addr) -> tuple[int, int]:
    """The area's decoded page indexes inside [from_addr, to_addr)."""
    n = len(a.metadata)
    lo = 0 if from_addr is None else snap.pfn(from_addr) - a.base
    hi = n if to_addr is None else snap.pfn(to_addr + snap.layout.page_size - 1) - a.base
    return max(0, min(lo, n)), max(0, min(hi, n))


# ------------------------------------------------------------------- report
@command("report", "The whole report: areas, statistics and findings.",
         "--json gives the JSON document (allocview/schema/report.schema.json), the same "
         "from gdb, the CLI and allocview-qemu; --html FILE writes a self-contained page.",
         *NARROWING,
         arg("--html", metavar="FILE", complete="file",
             help="write the report as one self-contained HTML page"))
def run_report(ctx, args) -> Result:
    from allocview.model.check import check, errors
    from allocview.model.report import report
    from allocview.model.stats import stats
    render = _render()
    snap = ctx.snapshot()
    found = check(snap)
    shown = narrow(found, snap, args)
    doc = render.areas_view(snap, stats(snap)).extend(
        render.findings_view(shown, limit=None if args.all else args.limit))
    if args.html:
        _write_html(args.html, snap, found, ctx.placement())
        doc.line(f"allocview: report written to {args.html}")
    return Result(report(snap, shown, ctx.placement()), doc, 1 if errors(found) else 0)


def _write_html(path: str, snap, found, placement) -> None:
    from ..htmlreport import state_page
    with open(path, "w") as f:
        f.write(state_page(snap, found, placement))


# --------------------------------------------------------------------- diff
@command("diff", "Show what changed between two states.",
         "What was allocated, freed, split, merged, reserved and unreserved between state A "
         "and state B (default: now). A state is a saved snapshot's name (gdb: `alloc "
         "snapshot NAME`) or a dump file (`save`, dump-guest-memory).",
         arg("a", metavar="A", complete="file", help="the earlier state"),
         arg("b", metavar="B", nargs="?", complete="file", help="the later state (default: now)"),
         arg("--limit", type=int, default=50, metavar="N", help="rows shown in the text"))
def run_diff(ctx, args) -> Result:
    from allocview.model.diff import diff
    before = ctx.resolve(args.a)
    after = ctx.resolve(args.b) if args.b else ctx.snapshot(require=False)
    changes = diff(before, after)
    return Result([c.to_json() for c in changes],
                  _render().diff_view(changes, args.a, args.b or "now", args.limit))


# --------------------------------------------------------------------- save
@command("save", "Save the allocator's state as a small ELF dump.",
         "Every byte the decoder reads (globals, metadata, list nodes, the program's code "
         "samples), as a dump-guest-memory-like ELF marked partial: for `diff`, `replay "
         "--start` and bug reports.",
         arg("file", metavar="FILE", complete="file", help="where to write it"),
         writes=True, json=False)
def run_save(ctx, args) -> Result:
    from ..dumpwrite import write_elf_dump
    from .. import render
    snap, segments = ctx.recorded()
    write_elf_dump(args.file, segments, arch=snap.layout.arch.name, partial=True)
    n = sum(len(d) for _, d in segments)
    return Result({"file": args.file, "ranges": len(segments), "bytes": n},
                  render.Doc().line(f"allocview: saved {len(segments)} ranges ({n} bytes) to "
                                    f"{args.file}"))
