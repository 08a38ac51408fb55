"""`allocview`: the allocator's views and checks from every source QEMU
offers, outside gdb.

    allocview [SOURCE] [--elf TEST.elf] COMMAND [ARGS] [--json]

Exit status: 0 no error findings, 1 error findings (report, check), 2 could
not inspect (usage, unreadable source, missing symbols); always one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from model.check import check, errors
from model.constants import FLAG_FRESH
from model.diff import diff
from model.errors import AllocviewError
from model.arch import ARCHES
from model.layout import layout_for
from model.memory import CachedMemory
from model.query import describe_page
from model.report import SCHEMA_VERSION, report
from model.snapshot import Snapshot, decode
from model.stats import stats, why

from . import render
from .errors import SymbolError
from .progress import ReadProgress

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT = 0, 1, 2


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: give 0 < SECONDS <= 3600")
    return v


def _source_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = p.add_argument_group("source (one of --dump, --memfile, --qmp, --gdb)")
    g.add_argument("--dump", metavar="FILE", default=d(None),
                   help="a dump-guest-memory ELF, or a raw pmemsave file with --base")
    g.add_argument("--base", metavar="ADDR", type=_int, default=d(None),
                   help="guest physical address of a raw dump's first byte")
    g.add_argument("--memfile", metavar="PATH", default=d(None),
                   help="guest RAM shared through memory-backend-file,share=on")
    g.add_argument("--machine", choices=["pc", "q35"], default=d("pc"),
                   help="where --memfile RAM sits below/above 4 GiB (default pc); with --qmp "
                        "QEMU's own memory map places it, on any machine")
    g.add_argument("--qmp", metavar="SOCKET", default=d(None),
                   help="QEMU's QMP socket: pauses the guest only while reading, reads from "
                        "the QEMU process (/proc/PID/mem) when it runs here as you, else via "
                        "pmemsave; or just pauses beside --memfile")
    g.add_argument("--pmemsave", action="store_true", default=d(False),
                   help="with --qmp: read only through pmemsave, never from /proc/PID/mem")
    g.add_argument("--gdb", metavar="HOST:PORT", default=d(None),
                   help="a QEMU gdb stub (guest RAM from the QEMU process when it is local)")
    g.add_argument("--stub-only", action="store_true", default=d(False),
                   help="with --gdb: read only through the stub, never from /proc/PID/mem")
    g.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=d(5.0),
                   help="how long a QMP monitor or gdb stub may stay silent (default 5)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=d(None),
                   help="with --gdb: let the guest run when done (attaching stops it). "
                        "Default: as QMP said it was before (--qmp, or the QMP socket on "
                        "QEMU's command line), else paused, and a line says which")
    s = p.add_argument_group("program")
    s.add_argument("--elf", metavar="TEST.elf", default=d(None),
                   help="the test's ELF: symbols and the struct layout (DWARF)")
    s.add_argument("--arch", choices=sorted(ARCHES), default=d(None),
                   help="guest arch when the ELF has no DWARF (or none is given)")
    s.add_argument("--format", choices=["2020", "2021", "auto"], default=d("auto"),
                   help="metadata byte encoding (default: detect)")
    s.add_argument("--areas", metavar="ADDR", type=_int, default=d(None),
                   help="address of areas[] (without --elf)")
    s.add_argument("--mask", metavar="ADDR", type=_int, default=d(None),
                   help="address of areas_mask (without --elf)")
    s.add_argument("--phys-offset", metavar="OFF", type=_int, default=d(0),
                   help="virtual minus physical address of guest RAM (default 0, identity)")
    s.add_argument("--load-offset", metavar="OFF", type=_int, default=d(None),
                   help="where a relocatable test is loaded, minus its link address "
                        "(default: found from its code in guest memory)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", default=d(False), help="JSON on stdout")
    o.add_argument("--no-color", action="store_true", default=d(False), help="plain text")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (what is wrong, where help is), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_CANNOT, f"allocview: {message} (`{self.prog} --help` for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="allocview", description=__doc__.split("\n\n")[0],
                epilog="Exit status: 0 clean, 1 error findings, 2 cannot inspect.")
    _source_options(p, suppress=False)
    common = _Parser(add_help=False)
    _source_options(common, suppress=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name, help):
        return sub.add_parser(name, help=help, description=help, parents=[common])

    cmd("report", "areas, free lists summary and findings")
    cmd("check", "every invariant; exit 1 on error findings")
    cmd("areas", "the areas: slot, pfn range, size, page counts")
    c = cmd("lists", "the free lists, node by node")
    c.add_argument("--slot", type=int)
    c.add_argument("--order", type=int)
    c.add_argument("-n", "--nodes", type=int, default=8, help="nodes shown per list")
    c = cmd("page", "the page holding an address: block, status, list, buddy")
    c.add_argument("address", type=_int)
    cmd("stats", "free blocks per order, largest block, fragmentation")
    c = cmd("why", "would alloc(ORDER) succeed now, from where, and if not why")
    c.add_argument("order", type=int)
    c.add_argument("--align", type=int, help="alignment order (default: ORDER)")
    c.add_argument("--area", nargs="+", default=[], help="area names or slot numbers")
    c.add_argument("--fresh", action="store_true", help="FLAG_FRESH (2021)")
    c = cmd("map", "a picture of each area by page status")
    c.add_argument("--slot", type=int)
    c.add_argument("--rows", type=int, default=8)
    c.add_argument("--svg", metavar="FILE", help="write the map as SVG")
    c.add_argument("--html", metavar="FILE", help="write the map as an HTML page")
    c = cmd("diff", "what changed between two dumps (or saved snapshots)")
    c.add_argument("a")
    c.add_argument("b")
    c = cmd("save", "save what the allocator's state is made of as a small ELF dump "
                    "(for diff, replay or a bug report)")
    c.add_argument("file")
    c = cmd("replay", "replay a trace (alloc trace) into the reference allocator and report "
                      "the first call after which it and the guest disagree")
    c.add_argument("trace")
    c.add_argument("--start", metavar="DUMP", help="the state the trace starts from (default: "
                   "TRACE.start.elf when present, else an empty allocator)")
    c.add_argument("--against", metavar="DUMP", help="the guest's end state to compare with")
    c.add_argument("--mode", choices=["exact", "relaxed"], default="exact",
                   help="exact: list order too; relaxed: lists as sets")
    c.add_argument("--known", metavar="FILE", help="accepted difference kinds, one per line")
    c = cmd("drive", "run generated allocator operations in the guest (through --gdb) and in "
                     "the reference allocator, compare after each, shrink a divergence. WRITES "
                     "GUEST MEMORY: needs --yes; restores the start state at the end")
    c.add_argument("--ops", type=int, default=500)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--mix", default="default", choices=["default", "allocs", "merge", "reserve"])
    c.add_argument("--area", nargs="+", default=[])
    c.add_argument("--mode", choices=["exact", "relaxed"], default="exact")
    c.add_argument("--known", metavar="FILE")
    c.add_argument("--out", default="alloc-drive", help="reproducer prefix")
    c.add_argument("--no-shrink", action="store_true")
    c.add_argument("--call-timeout", type=float, default=10.0, help="seconds one call may take")
    c.add_argument("--yes", action="store_true", help="yes, write guest memory")
    from . import suite as _suite
    c = sub.add_parser("suite", help="one table over allocview-qemu reports (--json, --junit FILE)")
    _suite.add_arguments(c)
    c = cmd("watch", "refresh stats and the map of a running guest (QMP or memfile)")
    c.add_argument("--interval", type=float, default=2.0)
    c.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: never)")
    return p


# ------------------------------------------------------------- inspection
def _program(args):
    """The guest program: from --elf, or a bare one from --arch/--areas/--mask
    (no code to locate it by)."""
    from dataclasses import replace

    from model.program import Program

    from .symbols import load_program
    fmt = None if args.format == "auto" else args.format
    if args.elf:
        prog = load_program(args.elf, arch=args.arch, format=fmt)
        given = {k: v for k, v in (("areas", args.areas), ("areas_mask", args.mask))
                 if v is not None}
        if given:
            # addresses the user gives are the guest's: no placement
            prog = replace(prog, symbols={**prog.symbols, **given}, samples=(),
                           relocatable=False)
        return prog
    if args.arch and args.areas is not None and args.mask is not None:
        return Program("", args.arch, layout_for(args.arch, fmt or "2021"),
                       {"areas": args.areas, "areas_mask": args.mask})
    raise SymbolError("give --elf TEST.elf (or --arch, --areas ADDR and --mask ADDR)")


def _open(args, dump=None, arch: str | None = None):
    """The source the arguments name; `arch`: the program's, for the gdb
    that debugs it."""
    from .sources import open_source
    if args.pmemsave and not (args.qmp and not args.memfile and not args.gdb):
        raise AllocviewError("--pmemsave applies to --qmp as the memory source only")
    if args.stub_only and not args.gdb:
        raise AllocviewError("--stub-only applies to --gdb only")
    if args.resume is not None and not args.gdb:
        raise AllocviewError("--resume/--no-resume apply to --gdb only")
    return open_source(dump=dump or args.dump, raw_base=args.base if not dump else None,
                       memfile=None if dump else args.memfile, qmp=None if dump else args.qmp,
                       gdb=None if dump else args.gdb, elf=args.elf,
                       phys_offset=args.phys_offset, machine=args.machine,
                       arch=args.arch or arch,
                       host_memory=not (args.pmemsave or args.stub_only),
                       resume=args.resume, timeout=args.timeout)


def snapshot_of(args, dump=None, keep: list | None = None, require: bool = True) -> Snapshot:
    return inspection_of(args, dump, keep, require).snapshot


def inspection_of(args, dump=None, keep: list | None = None, require: bool = True):
    """The allocview.inspect.Inspection of the source the arguments name."""
    program = _program(args)          # a bad ELF fails before any guest is touched
    with _open(args, dump, program.arch) as src:
        try:
            return inspection_from(args, src, program, keep, require)
        finally:
            _say_run_state(args, src)


def _say_run_state(args, src) -> None:
    """After --gdb without --resume/--no-resume: what was done with the
    guest that attaching stopped, and how allocview knew."""
    state = getattr(src, "run_state", None)
    if state and args.resume is None:
        print(f"allocview: the guest was {state}", file=sys.stderr)


def snapshot_from(args, src, program, keep: list | None = None,
                  require: bool = True) -> Snapshot:
    return inspection_from(args, src, program, keep, require).snapshot


def inspection_from(args, src, program, keep: list | None = None, require: bool = True):
    """Locate the program, decode through an open source (progress shown
    when it is slow), and make sure there was something to check
    (NothingToCheck otherwise); `keep` gets every range read."""
    from .inspect import inspect
    shown = ReadProgress.on_stderr(src, src.name)
    mem = CachedMemory(shown, record=keep is not None)
    try:
        found = inspect(mem, program, format=None if args.format == "auto" else args.format,
                        phys_offset=args.phys_offset, load_offset=args.load_offset,
                        guest_machine=src.guest_machine(), require=require)
    finally:
        shown.close()
    if keep is not None:
        keep.extend(mem.ranges())
    return found


# ---------------------------------------------------------------- output
def _color(args) -> bool:
    return not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _width() -> int:
    try:
        return max(60, min(os.get_terminal_size().columns, 200))
    except OSError:
        return 100


def _show(args, doc: render.Doc) -> None:
    sys.stdout.write(render.to_text(doc, color=_color(args), width=_width()))


def _json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


def _area_bits(names: list[str], snap: Snapshot) -> int:
    return snap.layout.area_bits(names)


# --------------------------------------------------------------- commands
def _unchecked_json(args, e) -> None:
    """With --json, a document that says nothing was checked, and why."""
    if args.json:
        doc = {"schema": SCHEMA_VERSION, "unchecked": e.unchecked.to_json()}
        if e.placement is not None:
            doc["program"] = e.placement.to_json()
        _json(doc)


def run_report(args) -> int:
    from .inspect import NothingToCheck
    try:
        inspected = inspection_of(args)
    except NothingToCheck as e:
        _unchecked_json(args, e)
        raise
    snap = inspected.snapshot
    found = check(snap)
    if args.json:
        _json(report(snap, found, inspected.placement))
    else:
        _show(args, render.areas_view(snap, stats(snap)).extend(render.findings_view(found)))
    return EXIT_FINDINGS if errors(found) else EXIT_OK


def run_check(args) -> int:
    from .inspect import NothingToCheck
    try:
        snap = snapshot_of(args)
    except NothingToCheck as e:
        _unchecked_json(args, e)
        raise
    found = check(snap)
    if args.json:
        _json([f.to_json() for f in found])
    else:
        _show(args, render.findings_view(found))
    return EXIT_FINDINGS if errors(found) else EXIT_OK


def run_areas(args) -> int:
    snap = snapshot_of(args)
    if args.json:
        _json(report(snap, [])["areas"])
    else:
        _show(args, render.areas_view(snap, stats(snap)))
    return EXIT_OK


def run_lists(args) -> int:
    snap = snapshot_of(args)
    if args.json:
        _json({str(a.slot): {str(k): {"nodes": list(w.nodes), "end": w.end}
                             for k, w in enumerate(a.freelists)
                             if w.nodes or not w.complete}
               for a in snap.areas if a.decoded and (args.slot is None or a.slot == args.slot)})
    else:
        _show(args, render.lists_view(snap, args.slot, args.order, args.nodes))
    return EXIT_OK


def run_page(args) -> int:
    info = describe_page(snapshot_of(args), args.address)
    if args.json:
        _json(info)
    else:
        _show(args, render.page_view(info))
    return EXIT_OK


def run_stats(args) -> int:
    snap = snapshot_of(args)
    st = stats(snap)
    if args.json:
        _json([s.to_json() for s in st])
    else:
        _show(args, render.stats_view(snap, st))
    return EXIT_OK


def run_why(args) -> int:
    snap = snapshot_of(args)
    flags = (FLAG_FRESH if args.fresh else 0) | _area_bits(args.area, snap)
    w = why(snap, args.order, args.align, flags)
    if args.json:
        _json(w.to_json())
    else:
        req = f"alloc order {args.order}" + (f" align {args.align}" if args.align is not None else "")
        _show(args, render.why_view(w, req + (f" flags {flags:#x}" if flags else "")))
    return EXIT_OK


def run_map(args) -> int:
    snap = snapshot_of(args)
    if args.svg or args.html:
        svg = render.map_svg(snap, args.slot)
        for path, text in ((args.svg, svg), (args.html, render.map_html(snap, svg))):
            if path:
                with open(path, "w") as f:
                    f.write(text)
                print(f"allocview: map written to {path}", file=sys.stderr)
        return EXIT_OK
    if args.json:
        _json({str(a.slot): [c.name.lower() for c in render.map_cells(a, snap.layout.encoding,
                                                                       min(a.pages, 512))]
               for a in snap.areas if a.decoded})
    else:
        _show(args, render.map_view(snap, args.slot, _width(), args.rows))
    return EXIT_OK


def run_diff(args) -> int:
    a = snapshot_of(args, dump=args.a, require=False)
    b = snapshot_of(args, dump=args.b, require=False)
    changes = diff(a, b)
    if args.json:
        _json([c.to_json() for c in changes])
    else:
        _show(args, render.diff_view(changes, args.a, args.b))
    return EXIT_OK


def run_save(args) -> int:
    from .dumpwrite import write_elf_dump
    kept: list = []
    snap = snapshot_of(args, keep=kept)
    segments = sorted((addr - args.phys_offset, data) for addr, data in kept)
    write_elf_dump(args.file, segments, arch=snap.layout.arch.name, partial=True)
    print(f"allocview: saved {len(segments)} ranges ({sum(len(d) for _, d in segments)} bytes) "
          f"to {args.file}", file=sys.stderr)
    return EXIT_OK


def run_watch(args) -> int:
    if args.dump:
        raise AllocviewError("watch needs a live guest: --qmp or --memfile")
    if args.qmp and not args.memfile and not args.gdb:
        # one connection for every refresh; the guest paused per snapshot only
        from .sources.qmp import QmpSource
        with QmpSource(args.qmp, phys_offset=args.phys_offset, host_memory=not args.pmemsave,
                       timeout=args.timeout, pause=False) as src:
            how = "QEMU's memory" if src.host is not None else "pmemsave"
            return _watch(args, lambda: _paused_snapshot(args, src), how)
    return _watch(args, lambda: snapshot_of(args), "the RAM file" if args.memfile else "")


def _paused_snapshot(args, src) -> Snapshot:
    program = _program(args)
    with src.paused():
        return snapshot_from(args, src, program)


def _watch(args, take, how: str) -> int:
    n = 0
    while True:
        t = time.perf_counter()
        snap = take()
        took = time.perf_counter() - t
        via = f" from {how}" if how else ""
        doc = render.Doc().line(f"allocview watch: {time.strftime('%H:%M:%S')}, read{via} in "
                                f"{took * 1000:.0f} ms (guest paused only while reading)")
        doc.extend(render.areas_view(snap, stats(snap)))
        doc.extend(render.map_view(snap, None, _width(), 4))
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        _show(args, doc)
        sys.stdout.flush()
        n += 1
        if args.count and n >= args.count:
            return EXIT_OK
        time.sleep(args.interval)


def _known(path: str | None) -> frozenset[str]:
    from model.drive_io import read_known
    return read_known(path)


def run_replay(args) -> int:
    from model.reference import Allocator
    from model.replay import replay
    from model.trace import read_trace

    trace = read_trace(args.trace)
    prog = _program(args)
    if args.load_offset is None and prog.relocatable and "areas" in trace.header:
        # the trace holds the guest's own address of areas[]
        args.load_offset = trace.header["areas"] - prog.symbols["areas"]
    prog = prog.relocated(args.load_offset or 0)
    areas, mask = prog.symbols["areas"], prog.symbols["areas_mask"]
    start = args.start or (args.trace + ".start.elf" if os.path.exists(args.trace + ".start.elf")
                           else None)
    if start:
        snap = snapshot_of(args, dump=start, require=False)
        al = Allocator.from_state(snap.layout, list(snap.state()), snap.areas_mask or 0,
                                  areas_addr=areas, mask_addr=mask, phys_offset=args.phys_offset)
    else:
        al = Allocator(prog.layout, areas_addr=areas, mask_addr=mask,
                       phys_offset=args.phys_offset)
    against = snapshot_of(args, dump=args.against).state() if args.against else None
    t = time.perf_counter()
    res = replay(al, trace.calls, trace.states, against, mode=args.mode,
                 accepted=_known(args.known))
    took = time.perf_counter() - t
    verdict = _replay_verdict(res, against is not None, len(trace.calls))
    if args.json:
        _json({"calls": res.calls, "compared": res.compared, "end_state_checked": against
               is not None, "seconds": round(took, 3), "verdict": verdict,
               "divergence": res.divergence.to_json() if res.divergence else None})
    else:
        doc = render.Doc()
        doc.line(f"replayed {res.calls} of {len(trace.calls)} calls in {took:.2f} s, "
                 f"{res.compared} state comparison(s)")
        if res.divergence is None:
            doc.line((verdict, "green" if res.compared else "yellow"))
        else:
            d = res.divergence
            doc.line(("divergence ", "bold red"), *[(w, "") for w in d.words()[:1]])
            for w in d.words()[1:]:
                doc.line(w)
        _show(args, doc)
    return EXIT_FINDINGS if res.divergence else EXIT_OK


def _replay_verdict(res, end_checked: bool, calls: int) -> str:
    """What a replay without divergence may claim: results only, or state."""
    if res.divergence is not None:
        return "divergence"
    if not res.compared:
        return (f"every result of the {calls} calls is the model's; no state was compared "
                f"(the trace holds no states and no --against end state was given), so "
                f"the guest's metadata and lists were not checked")
    if not end_checked:
        return (f"no divergence in {res.compared} state comparison(s) and every result; the "
                f"end state was not checked (give --against DUMP)")
    return "no divergence: the guest follows the design"


def run_drive(args) -> int:
    from model.drive import generate
    from model.drive_io import drive_session, drive_words

    from .drive_mi import MiGuest
    from .dumpwrite import write_elf_dump
    from .sources.gdbmi import GdbMiSource

    if not args.gdb:
        raise AllocviewError("drive needs a gdb stub: --gdb HOST:PORT")
    if not args.yes:
        raise AllocviewError("drive calls the guest's allocator and writes guest memory; "
                             "pass --yes")
    from .inspect import inspect

    prog = _program(args)
    fmt = None if args.format == "auto" else args.format
    accepted = _known(args.known)
    with _open(args, arch=prog.arch) as src:
        assert isinstance(src, GdbMiSource)
        mem = CachedMemory(src, record=True)
        found = inspect(mem, prog, format=fmt, phys_offset=args.phys_offset,
                        load_offset=args.load_offset, search=False)
        start, prog = found.snapshot, found.program
        areas, mask, layout = prog.symbols["areas"], prog.symbols["areas_mask"], prog.layout
        image = mem.ranges()
        if errors(check(start)):
            raise AllocviewError("the allocator already breaks the design here (see `check`)")
        ops = generate(args.seed, args.ops, start.layout, start, mix=args.mix,
                       area_bits=_area_bits(args.area, start))
        arch = start.layout.arch.name
        header = {"arch": arch, "format": start.layout.format, "areas": areas,
                  "areas_mask": mask, "source": "allocview drive", "seed": args.seed}
        out = drive_session(
            MiGuest(src, args.call_timeout), start, image, ops, mode=args.mode, accepted=accepted,
            shrink_it=not args.no_shrink, prefix=args.out, header=header,
            write_dump=lambda p, img: write_elf_dump(p, img, arch=arch, partial=True),
            decode_end=lambda: decode(src, layout, areas, mask, format=start.layout.format,
                                      phys_offset=args.phys_offset).state())
    if args.json:
        _json(out)
    else:
        doc = render.Doc()
        for w in drive_words(out):
            doc.line(w)
        _show(args, doc)
    return EXIT_FINDINGS if out["divergence"] else EXIT_OK


COMMANDS = {"report": run_report, "check": run_check, "areas": run_areas, "lists": run_lists,
            "page": run_page, "stats": run_stats, "why": run_why, "map": run_map,
            "diff": run_diff, "save": run_save, "watch": run_watch,
            "replay": run_replay, "drive": run_drive}


def _run_suite(args) -> int:
    from . import suite
    return suite.run(args)


COMMANDS["suite"] = _run_suite


# Options whose value may be a negative number ("-0x1000"), which argparse
# would take for an option.
_SIGNED = ("--phys-offset", "--load-offset")


def _signed_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    for word in argv:
        if out and out[-1] in _SIGNED and re.fullmatch(r"-(0[xX][0-9a-fA-F]+|\d+)", word):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_signed_values(sys.argv[1:] if argv is None else list(argv)))
    try:
        return COMMANDS[args.command](args)
    except AllocviewError as e:
        print(f"allocview: {e}", file=sys.stderr)
        return EXIT_CANNOT
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:                 # a file the user named: map --svg, save, ...
        print(f"allocview: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_CANNOT
    except KeyboardInterrupt:
        print("allocview: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
