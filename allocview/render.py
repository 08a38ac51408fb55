"""Presentation, in one place for gdb and the CLI alike.

Views turn model objects into a `Doc`: lines of styled spans and tables.
`emit` writes a Doc with rich when it is importable (colour, box tables)
and as plain text otherwise (gdb without the venv, `--no-color` pipes).
Nothing here reads memory or decides what is healthy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from allocview.model.findings import CODES, Finding, Severity
from allocview.model.layout import Status
from allocview.model.snapshot import AreaSnapshot, Snapshot
from allocview.model.stats import AreaStats, Why

from .picture import human_size

__all__ = ["Doc", "Table", "to_text", "areas_view", "lists_view", "findings_view",
           "stats_view", "why_view", "map_view", "page_view", "diff_view", "human_size",
           "owner_view", "live_view", "call_text", "caller_text"]

Span = tuple[str, str]          # (text, style); style "" is plain


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str | Span]] = field(default_factory=list)
    title: str = ""
    right: set[int] = field(default_factory=set)     # right-justified column indexes

    def add(self, *cells: str | Span) -> None:
        self.rows.append(list(cells))


@dataclass
class Doc:
    parts: list = field(default_factory=list)        # list[list[Span]] lines and Tables

    def line(self, *spans: str | Span) -> "Doc":
        self.parts.append([s if isinstance(s, tuple) else (s, "") for s in spans])
        return self

    def table(self, t: Table) -> "Doc":
        self.parts.append(t)
        return self

    def extend(self, other: "Doc") -> "Doc":
        self.parts.extend(other.parts)
        return self


STATUS_STYLE = {Status.FRESH: "green", Status.FREE: "bright_green", Status.ALLOCATED: "red",
                Status.SPECIAL: "yellow", Status.INVALID: "bold magenta"}
SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


# ------------------------------------------------------------------ output
def to_text(doc: Doc, *, color: bool = False, width: int = 100) -> str:
    """Plain text unless colour is wanted and rich is there: pipes, logs
    and tests get stable, unwrapped columns."""
    if not color:
        return _plain(doc)
    try:
        import rich  # noqa: F401
    except ImportError:
        return _plain(doc)
    return _rich(doc, width)


def _cell_text(c: str | Span) -> str:
    return c[0] if isinstance(c, tuple) else c


def _plain(doc: Doc) -> str:
    out = []
    for part in doc.parts:
        if isinstance(part, Table):
            if part.title:
                out.append(part.title)
            cols = len(part.columns)
            texts = [[_cell_text(c) for c in row] + [""] * (cols - len(row)) for row in part.rows]
            widths = [max([len(part.columns[i])] + [len(r[i]) for r in texts]) for i in range(cols)]

            def fmt(cells):
                return "  ".join(c.rjust(widths[i]) if i in part.right else c.ljust(widths[i])
                                 for i, c in enumerate(cells)).rstrip()
            out.append(fmt(part.columns))
            out.append("  ".join("-" * w for w in widths))
            out += [fmt(r) for r in texts]
        else:
            out.append("".join(t for t, _ in part))
    return "\n".join(out) + "\n"


def _rich(doc: Doc, width: int) -> str:
    from rich.console import Console
    from rich.table import Table as RTable
    from rich.text import Text

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=width, color_system="standard",
                  highlight=False, soft_wrap=False, emoji=False, markup=False)
    for part in doc.parts:
        if isinstance(part, Table):
            t = RTable(title=part.title or None, title_justify="left", show_edge=False,
                       header_style="bold", pad_edge=False, box=None)
            for i, c in enumerate(part.columns):
                t.add_column(c, justify="right" if i in part.right else "left", no_wrap=True)
            for row in part.rows:
                t.add_row(*[Text(*c) if isinstance(c, tuple) else Text(c) for c in row])
            con.print(t)
        else:
            con.print(Text.assemble(*[(t, s or "") for t, s in part]))
    return buf.getvalue()


# ------------------------------------------------------------------- views
def areas_view(snap: Snapshot, stats: list[AreaStats]) -> Doc:
    by_slot = {s.slot: s for s in stats}
    t = Table(["slot", "name", "pfns", "size", "page_states", "max_order", "fresh", "free",
               "allocated", "special", "largest", "frag"], right={0, 3, 5, 6, 7, 8, 9, 10, 11})
    ps = snap.layout.page_size
    for a in snap.areas:
        s = by_slot.get(a.slot)
        rng = f"[{a.base:#x}, {a.top:#x})"
        mo = "-" if a.max_order is None else str(a.max_order)
        if s is None:
            t.add(str(a.slot), a.name, rng, "", f"{a.page_states:#x}", mo,
                  ("not decoded" if a.initialised else "not in areas_mask", "yellow"))
            continue
        t.add(str(a.slot), a.name, rng, human_size(a.pages * ps), f"{a.page_states:#x}", mo,
              str(s.fresh), str(s.free), str(s.allocated), str(s.special),
              "-" if s.largest_order is None else f"{human_size(s.largest_pages * ps)}",
              f"{s.fragmentation:.2f}")
    doc = Doc().table(t)
    mask = "unreadable" if snap.areas_mask is None else f"{snap.areas_mask:#x}"
    doc.line(f"format {snap.layout.format} ({snap.format_reason}); arch {snap.layout.arch.name}; "
             f"areas_mask {mask}")
    return doc


def lists_view(snap: Snapshot, slots: set[int] | None = None, order: int | None = None,
               limit: int = 8) -> Doc:
    """The free lists node by node: per area, each non-empty (or broken)
    list's first `limit` nodes with the status and order their metadata
    byte gives, and how the walk ended."""
    doc = Doc()
    for a in snap.areas:
        if not a.decoded or (slots is not None and a.slot not in slots):
            continue
        t = Table(["order", "#", "node", "byte", "block"], right={0, 1},
                  title=f"area {a.slot} {a.name}: free lists from head.next")
        for k, w in enumerate(a.freelists):
            if order is not None and k != order:
                continue
            if not w.nodes and w.complete and order is None:
                continue
            for i, n in enumerate(w.nodes[:limit]):
                t.add(str(k) if i == 0 else "", str(i), f"{n:#x}", *_node_block(snap, a, n, k))
            if len(w.nodes) > limit:
                t.add("", "", f"... {len(w.nodes) - limit} more", "", "")
            end = (f"{len(w.nodes)} node(s), back at the head", "dim") if w.complete else \
                (f"{len(w.nodes)} node(s), then {w.end} at {w.end_pointer:#x}", "bold red")
            t.add(str(k) if not w.nodes else "", "", end, "", "")
        if t.rows:
            doc.table(t)
    if not doc.parts:
        doc.line(("no such area, or no free block on its lists", "yellow"))
    return doc


def _node_block(snap: Snapshot, a: AreaSnapshot, node: int, k: int) -> tuple:
    """The metadata byte of a list node's page and what it says."""
    i = snap.pfn(node) - a.base
    if not 0 <= i < len(a.metadata):
        return "", ("outside the area", "bold red")
    b = a.metadata[i]
    st, o = snap.layout.encoding.table[b]
    ok = st.is_free and o == k
    return f"{b:#04x}", (f"{st.name.lower()}, order {o}", "" if ok else "bold red")


def findings_view(findings: list[Finding], *, limit: int | None = 20,
                  explain: bool = True) -> Doc:
    """Findings grouped by code, `limit` per code (None: all)."""
    doc = Doc()
    if not findings:
        return doc.line(("no findings", "green"))
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    spans = [(f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}", SEVERITY_STYLE[s])
             for s in sorted(Severity, reverse=True) if counts[s]]
    doc.line(spans[0], *[(", " + text, style) for text, style in spans[1:]])
    codes: dict[str, list[Finding]] = {}
    for f in findings:
        codes.setdefault(f.code, []).append(f)
    for code, fs in codes.items():
        sev = fs[0].severity
        doc.line((f"{sev}", SEVERITY_STYLE[sev]), (f" {code}", "bold"),
                 (f" ({len(fs)})" if len(fs) > 1 else "", ""),
                 (f": {CODES.get(code, '')}" if explain else "", "dim"))
        shown = fs if limit is None else fs[:limit]
        for f in shown:
            where = f"slot {f.slot} " if f.slot is not None else ""
            addr = f"{f.address:#x} " if f.address is not None else ""
            doc.line("  ", (where + addr, "cyan"), f.message)
        if len(fs) > len(shown):
            doc.line(f"  ... {len(fs) - len(shown)} more (--all, or narrow with --code, "
                     f"--area, --from, --to)")
    return doc


def stats_view(snap: Snapshot, stats: list[AreaStats]) -> Doc:
    doc = Doc()
    ps = snap.layout.page_size
    for s in stats:
        orders = sorted(s.free_blocks)
        t = Table(["order", "block size", "free blocks", "free pages", "share"], right={0, 1, 2, 3},
                  title=f"area {s.slot} {s.name}: {s.free_pages} free of {s.pages} pages, "
                        f"largest {human_size(s.largest_pages * ps)}, fragmentation "
                        f"{s.fragmentation:.2f}")
        for k in orders:
            pages = s.free_blocks[k] << k
            share = pages / s.free_pages if s.free_pages else 0
            t.add(str(k), human_size(ps << k), str(s.free_blocks[k]), str(pages),
                  ("#" * max(1, round(share * 30)) + f" {share:.0%}", "green"))
        doc.table(t)
    return doc


def why_view(w: Why, request: str) -> Doc:
    doc = Doc()
    if w.ok:
        doc.line((f"{request}: yes", "bold green"),
                 f", from area {w.slot}: block {w.block:#x} (order {w.block_order}) -> {w.result:#x}")
    else:
        doc.line((f"{request}: no", "bold red"), ", alloc would return NULL")
    for r in w.reasons:
        doc.line("  ", r)
    return doc


# --------------------------------------------------------------------- maps
# The pictures are allocview.picture's, drawn by allocview.mapdraw; these
# keep the calls gdb and the CLI make.

def map_cells(area: AreaSnapshot, enc, ncells: int, lo: int = 0,
              hi: int | None = None) -> list[Status]:
    """The dominant status of each of ncells equal slices of the area's
    pages [lo, hi) (default: all of them): the JSON form of `map`."""
    classes = bytes(int(enc.table[b][0]) for b in range(256))
    t = area.metadata[lo:hi].translate(classes)
    n = len(t)
    cells = []
    for c in range(ncells):
        lo, hi = n * c // ncells, max(n * (c + 1) // ncells, n * c // ncells + 1)
        counts = [t.count(s, lo, hi) for s in range(5)]
        if counts[Status.INVALID]:
            cells.append(Status.INVALID)
        elif counts[Status.SPECIAL] and counts[Status.SPECIAL] * 8 >= hi - lo:
            cells.append(Status.SPECIAL)
        else:
            cells.append(Status(max(range(4), key=lambda s: counts[s])))
    return cells


def _findings_for(snap: Snapshot, findings: list[Finding] | None) -> list[Finding]:
    """The findings a map marks: the caller's, or the checker's when None."""
    if findings is not None:
        return findings
    from allocview.model.check import check
    return check(snap)


def map_view(snap: Snapshot, slot: int | None = None, width: int = 80, rows: int = 8,
             from_addr: int | None = None, to_addr: int | None = None, *,
             findings: list[Finding] | None = None) -> Doc:
    """Each decoded area (or `slot`'s) in [from_addr, to_addr) as rows of
    cells at most `width` characters wide, at most `rows` rows an area:
    address labels, a ruler, cells of a power-of-two number of pages,
    findings marked (None: the checker's), a legend."""
    from . import mapdraw
    tops = [snap.virt(a.decoded_top) for a in snap.areas if a.decoded]
    label_w = len(f"{max(tops, default=0):#x}") + 1
    room = max(16, width - label_w - 4)                # 4: the findings gutter, " E12"
    cols = 1 << (room.bit_length() - 1)
    pics = mapdraw.pictures(snap, _findings_for(snap, findings), slot, from_addr, to_addr,
                            cols, cols * max(1, rows))
    if not pics:
        return Doc().line(("no decoded page in that area or range", "yellow"))
    ps = snap.layout.page_size
    return mapdraw.terminal_map(pics, ps).extend(mapdraw.legend(ps))


def page_view(info: dict) -> Doc:
    doc = Doc()
    if not info.get("area"):
        return doc.line((f"{info['address']:#x} is in no area", "yellow"))
    doc.line((f"{info['address']:#x}", "bold"), f": pfn {info['pfn']:#x} in area {info['slot']} "
             f"{info['area']}")
    if info.get("block") is None:
        return doc.line(("  no consistent block covers it", "red"),
                        f" (metadata byte {info['byte']:#04x})")
    st = info["status"]
    doc.line(f"  block {info['block']:#x}, order {info['order']} "
             f"({info['pages']} page{'s' if info['pages'] > 1 else ''}), ",
             (st, STATUS_STYLE.get(Status[st.upper()], "")), f", byte {info['byte']:#04x}")
    if info.get("list") is not None:
        doc.line(f"  on list {info['list']} at position {info['position']} of {info['list_len']}")
    elif st in ("free", "fresh"):
        doc.line(("  on no free list", "bold red"))
    if info.get("buddy") is not None:
        doc.line(f"  buddy {info['buddy']:#x}: {info['buddy_state']}")
    return doc


# --------------------------------------------------------- owner and live
def call_text(call: dict) -> str:
    """A recorded call as C with its result: `alloc_pages_flags(2, 0x10000) -> 0x1234000`."""
    args = ", ".join(hex(a) if a > 9 else str(a) for a in call["args"])
    r = call.get("result")
    res = "" if r is None else f" -> {r:#x}" if r > 9 or r < -9 else f" -> {r}"
    return f"#{call['i']} {call['func']}({args}){res}"


def caller_text(frames: list[dict], ra: int | None) -> str:
    """Where a call was made: the innermost function and line, then what it
    was inlined into (addr2line -i)."""
    if ra is None:
        return "caller unknown (no return address recorded)"
    if not frames:
        return f"called from {ra:#x}"

    def one(f):
        where = f" at {f['file']}:{f['line']}" if f["file"] and f["line"] else ""
        return f"{f['function'] or '??'}{where}"
    inl = "".join(f", inlined in {one(f)}" for f in frames[1:])
    return f"called from {one(frames[0])}{inl} (return address {ra:#x})"


def _block_lines(doc: Doc, b: dict, callers: bool, indent: str = "  ") -> None:
    """A block, its call and its free; callers: the trace has caller
    addresses (else no call says it has none: one note says it once)."""
    verb = "allocated" if b["kind"] == "allocated" else "reserved"
    doc.line(indent, (f"[{b['start']:#x}, {b['end']:#x})", "bold"),
             f" {human_size(b['size'])} {verb} by ", (call_text(b["call"]), "cyan"))
    if callers:
        doc.line(indent, "  ", caller_text(b["call"]["caller"], b["call"]["ra"]))
    f = b.get("freed_by")
    if f is None:
        doc.line(indent, ("  never freed", "red" if b["kind"] == "allocated" else "yellow"),
                 " (live at the end of the trace)")
    else:
        doc.line(indent, "  freed by ", (call_text(f), "green"))
        if callers:
            doc.line(indent, "    ", caller_text(f["caller"], f["ra"]))


def _notes(doc: Doc, data: dict) -> None:
    for n in data["notes"]:
        doc.line((f"note: {n}", "yellow"))


def owner_view(data: dict) -> Doc:
    doc = Doc()
    b = data["block"]
    if b is None:
        doc.line((f"{data['address']:#x}", "bold"), " is in no block the trace saw allocated")
    else:
        doc.line((f"{data['address']:#x}", "bold"), f" is {data['address'] - b['start']:#x} "
                 f"into the block")
        _block_lines(doc, b, data["callers"])
    for other in data["also_live"]:
        doc.line(("also live over it (the allocator handed this memory out twice):", "bold red"))
        _block_lines(doc, other, data["callers"])
    if data["earlier"]:
        doc.line(f"earlier, {len(data['earlier'])} block(s) held it and were freed "
                 f"(latest first):")
        for e in reversed(data["earlier"]):
            _block_lines(doc, e, data["callers"])
    for c in data["stray_frees"]:
        doc.line("freed by ", (call_text(c), "green"), " without an allocation in the trace",
                 f": {caller_text(c['caller'], c['ra'])}" if data["callers"] else "")
    _notes(doc, data)
    return doc


def live_view(data: dict, limit: int | None = 10) -> Doc:
    doc = Doc()
    live = data["live"]
    sites = data["sites"]
    doc.line((f"{live['blocks']} live block(s), {human_size(live['bytes'])}", "bold"),
             f", from {len(sites)} call site(s) ({data['calls']} calls traced)")
    if sites:
        t = Table(["size", "blocks", "call site", "first blocks"], right={0, 1})
        for s in sites[:limit]:
            ra = s["return_addresses"][0] if s["return_addresses"] else None
            site = caller_text(s["caller"], ra).removeprefix("called from ")
            if len(s["return_addresses"]) > 1:
                site = site.replace("(return address", f"({len(s['return_addresses'])} return "
                                    f"addresses, first")
            firsts = ", ".join(f"{b['start']:#x}" for b in s["list"][:3]) + \
                (", ..." if len(s["list"]) > 3 else "")
            t.add(human_size(s["bytes"]), str(s["blocks"]), site, firsts)
        doc.table(t)
        if limit is not None and len(sites) > limit:
            doc.line(f"... {len(sites) - limit} more call site(s) (--limit N, or --json)")
    for d in data["handed_out_twice"]:
        doc.line((f"handed out twice: [{d['over_it']['start']:#x}, {d['over_it']['end']:#x}) "
                  f"by {call_text(d['over_it']['call'])} while {call_text(d['live']['call'])} "
                  f"still held it", "bold red"))
    _notes(doc, data)
    return doc


def diff_view(events: list, name_a: str, name_b: str, limit: int | None = 50) -> Doc:
    """Changes, with runs of like changes (same kind and order at evenly
    spaced addresses) merged into one row."""
    doc = Doc()
    if not events:
        return doc.line(f"no change between {name_a} and {name_b}")
    runs = _runs(events)
    doc.line(f"{len(events)} change(s) from {name_a} to {name_b}"
             + (f", in {len(runs)} runs" if len(runs) < len(events) else "") + ":")
    t = Table(["what", "address", "order", "detail"], right={2})
    shown = runs if limit is None else runs[:limit]
    for first, n, step in shown:
        addr = f"{first.address:#x}" if n == 1 else \
            f"{first.address:#x}..{first.address + (n - 1) * step:#x} ({n}, every {step:#x})"
        t.add((first.kind, "bold"), addr, str(first.order), first.detail if n == 1 else
              f"{n} blocks: " + first.detail)
    doc.table(t)
    if len(runs) > len(shown):
        doc.line(f"... {len(runs) - len(shown)} more rows (--limit)")
    return doc


def _runs(events: list) -> list[tuple]:
    """(first change, count, address step) per run of changes of one kind
    and order at evenly spaced addresses."""
    runs: list[list] = []
    for e in events:
        if runs:
            first, n, step = runs[-1]
            last = first.address + (n - 1) * step
            same = e.kind == first.kind and e.order == first.order and e.address > last
            if same and (n == 1 or e.address - last == step):
                runs[-1] = [first, n + 1, e.address - last if n == 1 else step]
                continue
        runs.append([e, 1, 0])
    return [tuple(r) for r in runs]


def map_svg(snap: Snapshot, slot: int | None = None, cols: int = 128, cell: int = 6,
            from_addr: int | None = None, to_addr: int | None = None, *,
            findings: list[Finding] | None = None, rows: int = 32) -> str:
    """The map as an SVG picture: per area, at most `rows` rows of `cols`
    cells of `cell` pixels, row labels and a ruler, hover text per cell,
    findings marked (None: the checker's), a legend."""
    from . import mapdraw
    pics = mapdraw.pictures(snap, _findings_for(snap, findings), slot, from_addr, to_addr,
                            cols, cols * max(1, rows))
    return mapdraw.svg_map(pics, snap.layout.page_size, cell)


def map_html(snap: Snapshot, svg: str) -> str:
    """map_svg's picture in a page of its own."""
    from . import mapdraw
    return mapdraw.html_page(f"allocview map: {snap.layout.arch.name}, format "
                             f"{snap.layout.format}", svg)
