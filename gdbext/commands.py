"""The `alloc` commands. Each one: parse, one core call, render.

Read-only by construction: nothing here writes guest memory or resumes the
guest. A decoded snapshot is cached until the inferior runs, stops, or its
memory changes, so several commands at one stop read the guest once.
"""

from __future__ import annotations

import argparse
import json
import sys

import gdb  # type: ignore[import-not-found]

from allocview import render
from model.assess import assess, with_cause
from model.placement import verify
from model.check import check
from model.constants import FLAG_FRESH
from model.diff import diff
from model.errors import AllocviewError
from model.memory import CachedMemory
from model.query import describe_page
from model.report import report
from model.snapshot import Snapshot, decode
from model.stats import stats, why

from . import target

__all__ = ["register"]


class _State:
    format: str | None = None            # forced byte encoding, None = detect
    color: str = "auto"
    snapshot: Snapshot | None = None
    unchecked = None                     # model.assess.Unchecked of that snapshot
    told: set = set()                    # relocation advice given (per program)
    saved: dict[str, Snapshot] = {}
    counter = 0


STATE = _State()


def invalidate(*_args) -> None:
    STATE.snapshot = None


def current(require: bool = True) -> Snapshot:
    """The allocator as it is at this stop (decoded once per stop). With
    `require`, a state with nothing to check (not initialised, not an
    allocator) is an error that says so."""
    if STATE.snapshot is None:
        target.program()
        if gdb.selected_inferior().pid == 0:
            raise gdb.GdbError("allocview: no running target; `target remote :1234` first")
        try:
            prog, where = target.placed()
            _advise_relocation(prog, where)
            snap = decode(target.memory(), prog.layout, prog.areas_addr,
                          prog.mask_addr, format=STATE.format)
        except KeyboardInterrupt:
            raise gdb.GdbError("allocview: interrupted") from None
        unchecked = assess(snap)
        STATE.snapshot = snap
        STATE.unchecked = None if unchecked is None else with_cause(unchecked, where.found)
    if require and STATE.unchecked is not None:
        raise gdb.GdbError(f"allocview: nothing checked: {STATE.unchecked.reason}")
    return STATE.snapshot


def _advise_relocation(prog, where) -> None:
    """Once per program: where it is loaded, and the command that moves
    gdb's own symbols there."""
    cmd = target.relocation_command()
    if cmd and prog.path not in STATE.told:
        STATE.told.add(prog.path)
        gdb.write(f"allocview: {prog.name} is {where.how}; allocview reads it there, but gdb's "
                  f"symbols are at its link addresses: `{cmd}` moves them\n")


def symbols_at_guest(what: str):
    """The program, for commands that plant breakpoints or call functions
    by gdb's symbols: those must be where the guest has the program."""
    prog, where = target.placed()
    cmd = target.relocation_command()
    if cmd:
        raise gdb.GdbError(f"allocview: {what} needs gdb's symbols where the guest has "
                           f"{prog.name} ({where.how}): `{cmd}` first")
    return prog


def fresh_snapshot() -> Snapshot:
    """Decode now, whatever is cached (a breakpoint callback, after a write)."""
    invalidate()
    return current(require=False)


def save_state(path: str) -> tuple[Snapshot, int]:
    """Decode through a recording memory and write every range read as a
    small ELF dump: a start state for replay, a snapshot for diff."""
    from allocview.dumpwrite import write_elf_dump
    prog, _where = target.placed()
    mem = CachedMemory(target.memory(), record=True)
    snap = decode(mem, prog.layout, prog.areas_addr, prog.mask_addr, format=STATE.format)
    # the program's code samples too: what locates the program in the saved file
    verify(mem, list(prog.samples), target.unmoved_symbols())
    segments = mem.ranges()
    write_elf_dump(path, segments, arch=prog.arch, partial=True)
    return snap, len(segments)


def _color() -> bool:
    if STATE.color != "auto":
        return STATE.color == "on"
    try:
        return bool(gdb.parameter("style enabled")) and sys.stdout.isatty()
    except (gdb.error, AttributeError, ValueError):
        return False


def _width() -> int:
    try:
        w = gdb.parameter("width")
    except gdb.error:
        w = None
    return max(60, min(int(w or 100), 200))


def out(doc: render.Doc) -> None:
    gdb.write(render.to_text(doc, color=_color(), width=_width()))


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise gdb.GdbError(f"{self.prog}: {message}")

    def exit(self, status=0, message=None):
        if message:
            gdb.write(message)
        raise _Exit()


class _Exit(Exception):
    pass


def _int(text: str) -> int:
    """An integer or a gdb expression (`ptr`, `$rdi`, `0x1000 + 8`)."""
    try:
        return int(text, 0)
    except ValueError:
        try:
            return int(gdb.parse_and_eval(text))
        except gdb.error as e:
            raise argparse.ArgumentTypeError(str(e)) from None


_COMMANDS: list = []


def command(name: str, help: str, complete=gdb.COMPLETE_NONE, words=(), expression=False):
    """Register `alloc NAME` from a function taking the parsed args. With
    `expression`, the whole argument is one gdb expression (like `x`), so
    spaces and quotes ('file.c'::var) reach gdb untouched."""
    def wrap(fn):
        parser = _Parser(prog=f"alloc {name}", description=help, add_help=True)
        fn.configure(parser) if hasattr(fn, "configure") else None

        class Cmd(gdb.Command):
            __doc__ = f"{help}\n\n{parser.format_help()}"

            def __init__(self):
                super().__init__(f"alloc {name}", gdb.COMMAND_DATA)

            def invoke(self, arg, from_tty):
                try:
                    if expression:
                        if not arg.strip() or arg.strip() in ("-h", "--help"):
                            gdb.write(parser.format_help())
                            return
                        args = argparse.Namespace(value=_int(arg.strip()))
                    else:
                        args = parser.parse_args(gdb.string_to_argv(arg))
                except _Exit:
                    return
                except argparse.ArgumentTypeError as e:
                    raise gdb.GdbError(f"alloc {name}: {e}") from None
                try:
                    fn(args)
                except AllocviewError as e:
                    raise gdb.GdbError(f"allocview: {e}") from None
                except OSError as e:          # a file the user named: --json FILE, save
                    raise gdb.GdbError(f"allocview: {e.filename or ''}: "
                                       f"{e.strerror or e}") from None
                except KeyboardInterrupt:
                    raise gdb.GdbError("allocview: interrupted") from None

            def complete(self, text, word):
                if words:
                    return [w for w in words if w.startswith(word or "")]
                return complete

        _COMMANDS.append(Cmd)
        fn.parser = parser
        return fn
    return wrap


def args(*specs):
    """Attach argparse arguments: args(("slot", {...}), ...)."""
    def wrap(fn):
        def configure(p):
            for flags, kw in specs:
                p.add_argument(*((flags,) if isinstance(flags, str) else flags), **kw)
        fn.configure = configure
        return fn
    return wrap


# ---------------------------------------------------------------- commands
@command("areas", "Show the allocator's areas: slot, pfn range, size, metadata, page counts.")
def cmd_areas(a):
    snap = current()
    out(render.areas_view(snap, stats(snap)))


@command("lists", "Show the free lists (blocks per order, node addresses, how each walk ended).")
@args(("slot", dict(nargs="?", type=int, help="only this area slot")),
      ("order", dict(nargs="?", type=int, help="only this order")),
      (("-n", "--nodes"), dict(type=int, default=8, help="nodes to show per list (default 8)")))
def cmd_lists(a):
    out(render.lists_view(current(), a.slot, a.order, a.nodes))


@command("page", "Describe the page holding an address: area, block, status, list position, "
                 "buddy.", complete=gdb.COMPLETE_EXPRESSION, expression=True)
@args(("address", dict(help="address or gdb expression")))
def cmd_page(a):
    out(render.page_view(describe_page(current(), a.value)))


@command("check", "Check every invariant of the allocator and explain each breach.")
@args(("--json", dict(action="store_true", help="findings as JSON")))
def cmd_check(a):
    found = check(current())
    if a.json:
        gdb.write(json.dumps([f.to_json() for f in found], indent=1) + "\n")
    else:
        out(render.findings_view(found))


@command("stats", "Free blocks and pages per order, largest block, fragmentation per area.")
def cmd_stats(a):
    snap = current()
    out(render.stats_view(snap, stats(snap)))


def _area_bits(names: list[str], snap: Snapshot) -> int:
    return snap.layout.area_bits(names)


@command("why", "Would alloc_pages(ORDER) (aligned to 2^ALIGN pages, with FLAGS) succeed now? "
                "From which area and block, or why not.")
@args(("order", dict(type=int)), ("align", dict(type=int, nargs="?")),
      ("flags", dict(type=_int, nargs="?", default=0, help="allocation flags (area bits, FLAG_FRESH)")),
      ("--fresh", dict(action="store_true", help="add FLAG_FRESH")),
      ("--area", dict(nargs="+", default=[], help="area names or slot numbers")))
def cmd_why(a):
    snap = current()
    flags = a.flags | (FLAG_FRESH if a.fresh else 0) | _area_bits(a.area, snap)
    req = f"alloc order {a.order}" + (f" align {a.align}" if a.align is not None else "") + \
        (f" flags {flags:#x}" if flags else "")
    out(render.why_view(why(snap, a.order, a.align, flags), req))


@command("map", "A picture of each area: one cell per run of pages, by status.")
@args(("slot", dict(nargs="?", type=int)), (("-r", "--rows"), dict(type=int, default=8)))
def cmd_map(a):
    out(render.map_view(current(), a.slot, _width(), a.rows))


@command("snapshot", "Save the allocator state at this stop under NAME (default: s1, s2, ...).")
@args(("name", dict(nargs="?")))
def cmd_snapshot(a):
    STATE.counter += 1
    name = a.name or f"s{STATE.counter}"
    STATE.saved[name] = current(require=False)
    gdb.write(f"allocview: saved snapshot {name}\n")


@command("diff", "What was allocated, freed, split, merged or reserved between two snapshots "
                 "(default: the last saved one and now).")
@args(("a", dict(nargs="?")), ("b", dict(nargs="?")))
def cmd_diff(a):
    if not STATE.saved:
        raise gdb.GdbError("allocview: no saved snapshot; `alloc snapshot` first")
    name_a = a.a or list(STATE.saved)[-1]
    for n in (name_a, a.b):
        if n is not None and n not in STATE.saved:
            raise gdb.GdbError(f"allocview: no snapshot {n!r} (saved: {', '.join(STATE.saved)})")
    before = STATE.saved[name_a]
    after = STATE.saved[a.b] if a.b else current(require=False)
    out(render.diff_view(diff(before, after), name_a, a.b or "now"))


@command("report", "The full report: areas, stats and findings; --json for the JSON document "
                   "(the same as `allocview report --json`).", complete=gdb.COMPLETE_FILENAME)
@args(("--json", dict(action="store_true")), ("file", dict(nargs="?")))
def cmd_report(a):
    snap = current()
    found = check(snap)
    if a.json:
        text = json.dumps(report(snap, found, target.placed()[1]), indent=1) + "\n"
        if a.file:
            with open(a.file, "w") as f:
                f.write(text)
            gdb.write(f"allocview: report written to {a.file}\n")
        else:
            gdb.write(text)
        return
    doc = render.areas_view(snap, stats(snap)).extend(render.findings_view(found))
    out(doc)


@command("format", "Show or force the metadata byte encoding: 2020, 2021 or auto (detect).",
         words=("2020", "2021", "auto"))
@args(("format", dict(nargs="?", choices=["2020", "2021", "auto"])))
def cmd_format(a):
    if a.format:
        STATE.format = None if a.format == "auto" else a.format
        invalidate()
    prog = target.program()
    forced = STATE.format or "auto"
    gdb.write(f"allocview: format {forced}; {prog.arch}, struct mem_area from "
              f"{prog.layout_source}; areas at {prog.areas_addr:#x}, areas_mask at "
              f"{prog.mask_addr:#x}\n")


@command("source", "Show or set how guest memory is read. auto (default): straight from the "
         "QEMU process behind the stub when it runs on this host as you (/proc/PID/mem, found "
         "through `monitor`, checked against the stub on every snapshot), else the gdb stub; "
         "stub: always the gdb stub.", words=("auto", "stub"))
@args(("mode", dict(nargs="?", choices=["auto", "stub"])))
def cmd_source(a):
    if a.mode:
        target.HOST.mode = a.mode
        target.forget_host()
        invalidate()
    if gdb.selected_inferior().pid == 0:
        gdb.write(f"allocview: source {target.HOST.mode}; no target yet\n")
        return
    host = target.host_memory()
    if host is not None:
        gdb.write(f"allocview: source {target.HOST.mode}: guest RAM from QEMU process {host.pid} "
                  f"(/proc/{host.pid}/mem, {len(host.ranges)} RAM ranges), the gdb stub for "
                  "anything else\n")
    else:
        gdb.write(f"allocview: source {target.HOST.mode}: the gdb stub ({target.HOST.why_not})\n")


@command("color", "Colour output: on, off or auto (gdb styling on a terminal).",
         words=("on", "off", "auto"))
@args(("mode", dict(choices=["on", "off", "auto"])))
def cmd_color(a):
    STATE.color = a.mode


VM_MAGIC = 0x7E57C0DE


@command("vmalloc", "Decode the vmalloc metadata in front of a pointer it returned.",
         complete=gdb.COMPLETE_EXPRESSION, expression=True)
@args(("pointer", dict(help="a pointer vmalloc returned (gdb expression)")))
def cmd_vmalloc(a):
    prog = target.program()
    mem = target.GdbMemory()     # vmalloc addresses are virtual: never the physical shortcut
    lay = prog.layout
    ul = lay.ptr_size
    p = a.value

    def word(addr):
        return int.from_bytes(mem.read(addr, ul), lay.endian)

    doc = render.Doc()
    page = p & ~(lay.page_size - 1)
    if word(p - ul) != VM_MAGIC:
        doc.line((f"{p:#x}: no vmalloc metadata (the word before it is {word(p - ul):#x}, "
                  f"not the magic {VM_MAGIC:#x})", "yellow"))
    elif p == page:
        # a multi-page allocation: struct metadata { npages; magic; } before it
        doc.line(f"{p:#x}: vmalloc allocation of {word(p - 2 * ul)} page(s), "
                 f"struct metadata at {p - 2 * ul:#x}")
    else:
        doc.line(f"{p:#x}: one-page vmalloc allocation, {p - page} bytes into page {page:#x} "
                 f"(magic at {p - ul:#x})")
    vt = target.address_of(["'vmalloc.c'::vfree_top", "vfree_top"])
    if vt is not None:
        doc.line(f"vfree_top = {word(vt):#x}")
    out(doc)


@command("phys", "Show the early physical allocator (alloc_phys): free range and regions.")
def cmd_phys(a):
    def val(name):
        for n in (f"'alloc_phys.c'::{name}", name):
            try:
                return gdb.parse_and_eval(n)
            except gdb.error:
                continue
        return None

    base, top, nr, regions = val("base"), val("top"), val("nr_regions"), val("regions")
    if base is None or top is None:
        raise gdb.GdbError("allocview: no alloc_phys `base`/`top` symbols in this program")
    doc = render.Doc()
    b, t = int(base), int(top)
    doc.line(f"free range [{b:#x}, {t:#x}): {render.human_size(max(t - b, 0))}")
    align = val("align_min")
    if align is not None:
        doc.line(f"align_min {int(align)}")
    if nr is not None and regions is not None:
        n = int(nr)
        hi = regions.type.range()[1] + 1
        tab = render.Table(["#", "base", "size", "end"], right={0})
        for i in range(min(n, hi)):
            r = regions[i]
            rb, rs = int(r["base"]), int(r["size"])
            tab.add(str(i), f"{rb:#x}", render.human_size(rs), f"{rb + rs:#x}")
        doc.line(f"{n} region(s) allocated" + (f" (only {hi} fit: corrupt nr_regions)" if n > hi else ""))
        doc.table(tab)
    out(doc)


@command("save", "Save the allocator state (every byte the decoder reads) as a small ELF "
                 "dump, for `allocview diff`, `replay --start` or a bug report.",
         complete=gdb.COMPLETE_FILENAME)
@args(("file", dict()))
def cmd_save(a):
    _snap, n = save_state(a.file)
    gdb.write(f"allocview: saved {n} ranges to {a.file}\n")


class _Tracing:
    tracer = None


@command("trace", "Record every allocator call (arguments and result) as JSON lines while the "
                  "guest runs on: `alloc trace start [FILE]`, then `continue`; `alloc trace "
                  "stop`. The state at start is saved as FILE.start.elf for `allocview replay`. "
                  "Cost: two breakpoint hits per call, about 3-4 ms each over the gdb stub "
                  "(plus a decode every N calls with --snapshot-every N).",
         words=("start", "stop", "status"))
@args(("action", dict(choices=["start", "stop", "status"])),
      ("file", dict(nargs="?", default="alloc-trace.jsonl")),
      ("--snapshot-every", dict(type=int, default=0, metavar="N",
                                help="record the whole state after every N calls")),
      ("--funcs", dict(nargs="+", help="entry points to trace (default: the outermost set)")))
def cmd_trace(a):
    from .trace import Tracer, entry_points
    if a.action == "status":
        t = _Tracing.tracer
        gdb.write("allocview: not tracing\n" if t is None else
                  f"allocview: tracing to {t.writer.path}: {t.writer.count} calls so far\n")
        return
    if a.action == "stop":
        if _Tracing.tracer is None:
            raise gdb.GdbError("allocview: not tracing")
        r = _Tracing.tracer.stop()
        _Tracing.tracer = None
        run = r["running_seconds"]
        rate = f"{r['calls'] / run:.0f} calls/s of guest time" if run and r["calls"] else \
            "no guest time yet"
        gdb.write(f"allocview: {r['calls']} calls recorded in {r['path']} "
                  f"(the guest ran {run:.1f} s: {rate}"
                  f"{', ' + str(r['duplicates']) + ' duplicate hits dropped' if r['duplicates'] else ''}"
                  f"{', ' + str(r['errors']) + ' unreadable' if r['errors'] else ''})\n")
        return
    if _Tracing.tracer is not None:
        raise gdb.GdbError("allocview: already tracing; `alloc trace stop` first")
    prog = symbols_at_guest("alloc trace")
    funcs = a.funcs or entry_points(prog)
    missing = [f for f in funcs if f not in prog.symbols]
    if missing or not funcs:
        raise gdb.GdbError(f"allocview: no such entry point(s): {', '.join(missing) or 'none found'}")
    save_state(a.file + ".start.elf")
    _Tracing.tracer = Tracer(a.file, funcs, a.snapshot_every)
    gdb.write(f"allocview: tracing {', '.join(funcs)} into {a.file} (start state in "
              f"{a.file}.start.elf); `continue` to run\n")


@command("drive", "Run generated allocator operations in the guest (inferior calls) and in the "
                  "reference allocator side by side, compare after each one, and on the first "
                  "disagreement shrink it to a minimal reproducer (PREFIX.jsonl for `allocview "
                  "replay`, PREFIX.c for a test). WRITES GUEST MEMORY: asks first, or --yes; "
                  "restores the allocator's start state at the end unless --keep.")
@args(("--ops", dict(type=int, default=500)), ("--seed", dict(type=int, default=1)),
      ("--mix", dict(default="default", choices=["default", "allocs", "merge", "reserve"])),
      ("--area", dict(nargs="+", default=[], help="restrict allocations to these areas")),
      ("--mode", dict(default="exact", choices=["exact", "relaxed"])),
      ("--known", dict(help="file of accepted difference kinds")),
      ("--out", dict(default="alloc-drive", help="reproducer prefix (default alloc-drive)")),
      ("--no-shrink", dict(action="store_true")), ("--keep", dict(action="store_true")),
      ("--force", dict(action="store_true", help="drive even from a state with error findings")),
      ("--timeout", dict(type=float, default=10.0, help="seconds one call may take")),
      ("--yes", dict(action="store_true", help="do not ask before writing guest memory")))
def cmd_drive(a):
    from allocview.dumpwrite import write_elf_dump
    from model.drive import generate
    from model.drive_io import drive_session, drive_words, read_known

    from .drive import GdbGuest

    accepted = read_known(a.known)
    prog = symbols_at_guest("alloc drive")
    mem = CachedMemory(target.memory(), record=True)
    start = decode(mem, prog.layout, prog.areas_addr, prog.mask_addr, format=STATE.format)
    image = mem.ranges()
    unchecked = assess(start)
    if unchecked is not None:
        raise gdb.GdbError(f"allocview: nothing to drive: {unchecked.reason}")
    if errors_of(start) and not a.force:
        raise gdb.GdbError("allocview: the allocator already breaks the design here (`alloc "
                           "check`); drive from an earlier stop, or --force")
    if not a.yes:
        if not sys.stdin.isatty():
            raise gdb.GdbError("allocview: alloc drive writes guest memory; pass --yes to run it "
                               "from a script")
        if input("alloc drive calls the guest's allocator and writes guest memory. "
                 "Go on? [y/N] ").strip().lower() not in ("y", "yes"):
            return
    ops = generate(a.seed, a.ops, start.layout, start, mix=a.mix,
                   area_bits=_area_bits(a.area, start))
    gdb.write(f"allocview: driving {len(ops)} operations (seed {a.seed}, mix {a.mix}, "
              f"{a.mode} compare)\n")
    header = {"arch": prog.arch, "format": start.layout.format, "areas": prog.areas_addr,
              "areas_mask": prog.mask_addr, "source": "alloc drive", "seed": a.seed}
    with GdbGuest(a.timeout) as guest:
        out = drive_session(guest, start, image, ops, mode=a.mode, accepted=accepted,
                            shrink_it=not a.no_shrink, prefix=a.out, header=header,
                            write_dump=lambda p, img: write_elf_dump(p, img, arch=prog.arch,
                                                                      partial=True),
                            decode_end=lambda: fresh_snapshot().state(), keep=a.keep,
                            progress=lambda k: k % 100 or gdb.write(f"  {k} ops\n"))
    invalidate()
    gdb.write("".join(f"allocview: {w}\n" if not w.startswith(" ") else f"{w}\n"
                      for w in drive_words(out)))


def errors_of(snap):
    from model.check import errors
    return errors(check(snap))


class _CheckEach:
    watcher = None


@command("check-each", "After every call of the allocator's entry points (or the FUNCTIONs "
                       "named), check what the call touched and stop the guest at the first call "
                       "that leaves an error finding, naming the call, its arguments and the "
                       "findings. `alloc check-each off` removes it; `status` shows the count. "
                       "A full check runs every --full-every calls and after gdb writes memory.",
         words=("off", "status"))
@args(("funcs", dict(nargs="*", help="entry points, or `off` / `status`")),
      ("--full-every", dict(type=int, default=100, metavar="N")))
def cmd_check_each(a):
    from .checkeach import CheckEach
    from .trace import entry_points
    w = _CheckEach.watcher
    if a.funcs in (["off"], ["status"]):
        if w is None:
            gdb.write("allocview: check-each is off\n")
            return
        gdb.write(w.describe())
        if a.funcs == ["off"]:
            w.off()
            _CheckEach.watcher = None
            gdb.write("allocview: check-each off\n")
        return
    if w is not None:
        w.off()
    prog = symbols_at_guest("alloc check-each")
    funcs = a.funcs or entry_points(prog)
    missing = [f for f in funcs if f not in prog.symbols]
    if missing:
        raise gdb.GdbError(f"allocview: no such entry point(s): {', '.join(missing)}")
    _CheckEach.watcher = CheckEach(funcs, a.full_every, STATE.format)
    gdb.write(f"allocview: checking after each call of {', '.join(funcs)}; `continue` to run\n")


class AllocPrefix(gdb.Command):
    """Inspect and check the kvm-unit-tests page allocator (allocview).

Commands: areas, lists, page, check, stats, why, map, snapshot, diff, report,
vmalloc, phys, format, color, save, trace, drive, check-each. `help alloc COMMAND` for each. Read-only: no
command writes guest memory or resumes the guest."""

    def __init__(self):
        super().__init__("alloc", gdb.COMMAND_DATA, gdb.COMPLETE_COMMAND, prefix=True)


def register() -> None:
    AllocPrefix()
    for cmd in _COMMANDS:
        cmd()
    for ev in ("stop", "cont", "memory_changed", "inferior_call", "exited"):
        if hasattr(gdb.events, ev):
            getattr(gdb.events, ev).connect(invalidate)
    gdb.events.new_objfile.connect(lambda *_: (target.forget(), invalidate()))
    if hasattr(gdb.events, "clear_objfiles"):
        gdb.events.clear_objfiles.connect(lambda *_: (target.forget(), invalidate()))
