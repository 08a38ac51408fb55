"""`allocview`: the allocator's views and checks from every source QEMU
offers, outside gdb.

    allocview SOURCE --elf TEST.elf COMMAND [ARGS] [--json [FILE]]

The commands are the gdb `alloc` commands (allocview.commands), with the
same arguments and the same JSON; a few need no gdb (watch, suite,
sources, gdb-init). Exit status: 0 no error findings, 1 error findings (or
a divergence), 2 nothing could be checked or inspected (usage, unreadable
source, wrong ELF, allocator not initialised); always one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import time
from contextlib import ExitStack, contextmanager

from allocview.model.arch import ARCHES
from allocview.model.errors import AllocviewError
from allocview.model.drive_io import start_image
from allocview.model.memory import CachedMemory

from . import render
from .commands import (Command, CommandError, Result, arg, build_parser as add_arguments,
                       command, commands_for, int_value, unchecked_json)
from .errors import SymbolError
from .progress import ReadProgress

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT = 0, 1, 2

SOURCES_HELP = """\
Where the guest's memory comes from (one of them), and what the program is:

  --dump FILE        a dump-guest-memory ELF (QMP dump-guest-memory, gdb's
                     `alloc save`), or a raw pmemsave file with --base ADDR
  --memfile PATH     guest RAM shared through memory-backend-file,share=on
                     (the guest keeps running: add --qmp to pause it)
  --qmp SOCKET       QEMU's QMP socket: the guest is paused only while read,
                     from the QEMU process when it runs here as you, else
                     through pmemsave (--pmemsave forces that)
  --gdb HOST:PORT    a QEMU gdb stub (qemu -s: localhost:1234); RAM from the
                     QEMU process when local (--stub-only: never); the guest
                     is resumed as QMP said it was, or --resume/--no-resume

  --elf TEST.elf     the test's ELF: symbols, struct layout (DWARF), and the
                     code that locates it in the guest
  --arch, --areas, --mask   without an ELF: the arch and the addresses
  --format 2020|2021|auto   the metadata byte encoding (default: detect)
  --load-offset OFF  where a relocatable test sits (default: found)
  --phys-offset OFF  virtual minus physical address of guest RAM

Every option is described in `allocview --help`."""


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: give 0 < SECONDS <= 3600")
    return v


def _source_options(p: argparse.ArgumentParser, shown: bool) -> None:
    """The source, program and output options: documented at the top level;
    accepted after the command too, without repeating their help there."""
    def opt(group, *names, help, default=None, **kw):
        group.add_argument(*names, help=help if shown else argparse.SUPPRESS,
                           default=default if shown else argparse.SUPPRESS, **kw)

    g = p.add_argument_group("source (one of --dump, --memfile, --qmp, --gdb)") if shown else p
    opt(g, "--dump", metavar="FILE",
        help="a dump-guest-memory ELF, or a raw pmemsave file with --base")
    opt(g, "--base", metavar="ADDR", type=int_value,
        help="guest physical address of a raw dump's first byte")
    opt(g, "--memfile", metavar="PATH",
        help="guest RAM shared through memory-backend-file,share=on")
    opt(g, "--machine", choices=["pc", "q35"], default="pc",
        help="where --memfile RAM sits below/above 4 GiB (default pc); with --qmp QEMU's "
             "own memory map places it, on any machine")
    opt(g, "--qmp", metavar="SOCKET",
        help="QEMU's QMP socket: pauses the guest only while reading, reads from the QEMU "
             "process (/proc/PID/mem) when it runs here as you, else via pmemsave; or just "
             "pauses beside --memfile")
    opt(g, "--pmemsave", action="store_true", default=False,
        help="with --qmp: read only through pmemsave, never from /proc/PID/mem")
    opt(g, "--gdb", metavar="HOST:PORT",
        help="a QEMU gdb stub (guest RAM from the QEMU process when it is local)")
    opt(g, "--stub-only", action="store_true", default=False,
        help="with --gdb: read only through the stub, never from /proc/PID/mem")
    opt(g, "--timeout", metavar="SECONDS", type=_seconds, default=5.0,
        help="how long a QMP monitor or gdb stub may stay silent (default 5)")
    opt(g, "--resume", action=argparse.BooleanOptionalAction,
        help="with --gdb: let the guest run when done (attaching stops it). Default: as QMP "
             "said it was before (--qmp, or the QMP socket on QEMU's command line), else "
             "paused, and a line says which")
    s = p.add_argument_group("program") if shown else p
    opt(s, "--elf", metavar="TEST.elf",
        help="the test's ELF: symbols and the struct layout (DWARF)")
    opt(s, "--arch", choices=sorted(ARCHES),
        help="guest arch when the ELF has no DWARF (or none is given)")
    opt(s, "--format", choices=["2020", "2021", "auto"], default="auto",
        help="metadata byte encoding (default: detect)")
    opt(s, "--areas", metavar="ADDR", type=int_value, help="address of areas[] (without --elf)")
    opt(s, "--mask", metavar="ADDR", type=int_value,
        help="address of areas_mask (without --elf)")
    opt(s, "--phys-offset", metavar="OFF", type=int_value, default=0,
        help="virtual minus physical address of guest RAM (default 0, identity)")
    opt(s, "--load-offset", metavar="OFF", type=int_value,
        help="where a relocatable test is loaded, minus its link address (default: found "
             "from its code in guest memory)")
    o = p.add_argument_group("output") if shown else p
    opt(o, "--no-color", action="store_true", default=False,
        help="plain text (also when NO_COLOR is set or stdout is no terminal)")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (what is wrong, where help is), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_CANNOT, f"allocview: {message} (`{self.prog} --help` for usage)\n")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("allocview")
    except Exception:  # noqa: BLE001 - a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="allocview", description=__doc__.split("\n\n")[0].strip(),
                epilog="`allocview COMMAND --help` for a command; `allocview sources` for "
                       "where memory comes from. Exit status: 0 clean, 1 error findings, "
                       "2 nothing could be checked.")
    p.add_argument("--version", action="version", version=f"allocview {_version()}")
    shtab = _shtab()
    if shtab is not None:
        shtab.add_argument_to(p, ["--print-completion"],
                              help="print a shell completion script (bash, zsh, tcsh)")
    _source_options(p, shown=True)
    hidden = argparse.ArgumentParser(add_help=False)
    _source_options(hidden, shown=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True,
                           parser_class=_Parser)
    for cmd in commands_for("cli"):
        c = sub.add_parser(cmd.name, help=cmd.summary, parents=[hidden],
                           description=f"{cmd.summary}\n\n{textwrap.fill(cmd.details, 78)}",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="Source options (--dump, --qmp, --gdb, --elf, ...) go before "
                                  "or after the command: `allocview sources`.")
        add_arguments(cmd, c, tag=_completion_tag(shtab))
    return p


def _shtab():
    try:
        import shtab
        return shtab
    except ImportError:            # completion scripts are an extra, not a need
        return None


def _completion_tag(shtab):
    """Mark file arguments so the shell completes file names there."""
    def tag(a, action):
        if shtab is not None and a.complete == "file":
            action.complete = shtab.FILE
    return tag


# ------------------------------------------------------------- the program
def _program(args):
    """The guest program: from --elf, or a bare one from --arch/--areas/--mask
    (no code to locate it by)."""
    from dataclasses import replace

    from allocview.model.layout import layout_for
    from allocview.model.program import Program

    from .symbols import load_program
    fmt = _format(args)
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


def _format(args) -> str | None:
    return None if args.format == "auto" else args.format


def _open(args, dump=None, arch: str | None = None):
    """The source the arguments name (or the dump file `dump`); `arch`: the
    program's, for the gdb that debugs it."""
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


def inspection_from(args, src, program, keep: list | None = None, require: bool = True,
                    load_offset: int | None = None):
    """Locate the program, decode through an open source (progress shown
    when it is slow), and make sure there was something to check
    (NothingToCheck otherwise); `keep` gets every range read."""
    from .inspect import inspect
    shown = ReadProgress.on_stderr(src, src.name)
    mem = CachedMemory(shown, record=keep is not None)
    try:
        found = inspect(mem, program, format=_format(args), phys_offset=args.phys_offset,
                        load_offset=args.load_offset if load_offset is None else load_offset,
                        guest_machine=src.guest_machine(),
                        require=require)
    finally:
        shown.close()
    if keep is not None:
        keep.extend(mem.ranges())
    return found


class CliContext:
    """allocview.commands.Context on the command line: the source the
    options name, opened on first use and kept open until the command is
    done (a --gdb source then resumes the guest as it was)."""

    def __init__(self, args):
        self.args = args
        self._stack = ExitStack()
        self._src = None
        self._program = None
        self._inspection = None

    # the program and the source
    def program(self):
        if self._program is None:
            self._program = _program(self.args)     # a bad ELF fails before a guest is touched
        return self._program

    def source(self):
        if self._src is None:
            prog = self.program()
            self._src = self._stack.enter_context(_open(self.args, arch=prog.arch))
            self._stack.callback(self._say_run_state, self._src)
        return self._src

    def _say_run_state(self, src) -> None:
        """After --gdb without --resume/--no-resume: what was done with the
        guest that attaching stopped, and how allocview knew."""
        state = getattr(src, "run_state", None)
        if state and self.args.resume is None:
            print(f"allocview: the guest was {state}", file=sys.stderr)

    def close(self) -> None:
        self._stack.close()

    def inspection(self):
        if self._inspection is None:
            self._inspection = inspection_from(self.args, self.source(), self.program(),
                                               require=False)
        return self._inspection

    # Context
    def snapshot(self, require: bool = True):
        from .inspect import require_checkable
        found = self.inspection()
        if require:
            require_checkable(found, self.args.load_offset)
        return found.snapshot

    def placement(self):
        return self.inspection().placement

    def arch(self) -> str:
        return self.program().arch

    def load_offset(self) -> int | None:
        return self.args.load_offset

    def trace_in_progress(self) -> str | None:
        return None                 # only gdb records one

    def phys_offset(self) -> int:
        return self.args.phys_offset

    def resolve(self, ref: str, load_offset: int | None = None):
        """A dump file (the CLI keeps no named snapshots); `load_offset`:
        where the program sits in it, when known (a trace says)."""
        if not os.path.exists(ref):
            raise CommandError(f"{ref}: no such dump file")
        prog = self.program()
        with _open(self.args, dump=ref, arch=prog.arch) as src:
            return inspection_from(self.args, src, prog, require=False,
                                   load_offset=load_offset).snapshot

    def recorded(self):
        kept: list = []
        snap = inspection_from(self.args, self.source(), self.program(), keep=kept,
                               require=False).snapshot
        off = self.args.phys_offset
        return snap, sorted((addr - off, data) for addr, data in kept)

    def width(self) -> int:
        try:
            return max(60, min(os.get_terminal_size().columns, 200))
        except OSError:
            return 100

    def confirm(self, question: str) -> bool:
        if not sys.stdin.isatty():
            raise CommandError("this writes guest memory; pass --yes")
        try:
            return input(f"allocview: {question} [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False

    def progress(self, line: str) -> None:
        print(f"allocview: {line}" if not line.startswith(" ") else line, file=sys.stderr)

    # drive: a gdb stub kept open from the start state to the end
    def drive_start(self):
        from .inspect import inspect
        from .sources.gdbmi import GdbMiSource
        if not self.args.gdb:
            raise CommandError("drive needs a gdb stub: --gdb HOST:PORT")
        src = self.source()
        assert isinstance(src, GdbMiSource)
        mem = CachedMemory(src, record=True)
        found = inspect(mem, self.program(), format=_format(self.args),
                        phys_offset=self.args.phys_offset, load_offset=self.args.load_offset,
                        search=False, require=False)
        self._drive = found
        return found.snapshot, start_image(mem, found.program), found.program

    @contextmanager
    def drive_guest(self, timeout: float, console: str | None = None):
        from .drive_mi import MiGuest
        found = self._drive.program
        moved = found.symbols["areas"] - self.program().symbols["areas"]
        guest = MiGuest(self.source(), found, timeout, console, moved)
        try:
            yield guest
        finally:
            guest.close()

    def decode_now(self):
        from allocview.model.snapshot import decode
        start, _placement, prog = self._drive
        return decode(self.source(), prog.layout, prog.symbols["areas"],
                      prog.symbols["areas_mask"], format=start.layout.format,
                      phys_offset=self.args.phys_offset).state()


# -------------------------------------------------------- CLI-only commands
@command("watch", "Refresh the areas and the map of a running guest.",
         "Reads the guest every --interval seconds (QMP pauses it only while reading; a "
         "--memfile alone never pauses it) and redraws the areas and the map.",
         arg("--interval", type=float, default=2.0, metavar="SECONDS",
             help="seconds between refreshes"),
         arg("--count", type=int, default=0, metavar="N", help="stop after N refreshes (0: never)"),
         json=False, only="cli")
def run_watch(ctx, args) -> Result:
    from allocview.model.stats import stats
    if args.dump:
        raise CommandError("watch needs a live guest: --qmp or --memfile")
    if args.qmp and not args.memfile and not args.gdb:
        # one connection for every refresh; the guest paused per snapshot only
        from .sources.qmp import QmpSource
        src = ctx._stack.enter_context(
            QmpSource(args.qmp, phys_offset=args.phys_offset, host_memory=not args.pmemsave,
                      timeout=args.timeout, pause=False))
        how = "QEMU's memory" if src.host is not None else "pmemsave"

        def take():
            with src.paused():
                return inspection_from(args, src, ctx.program()).snapshot
    else:
        how = "the RAM file" if args.memfile else ""

        def take():
            with _open(args, arch=ctx.program().arch) as src:
                return inspection_from(args, src, ctx.program()).snapshot
    n = 0
    while True:
        t = time.perf_counter()
        snap = take()
        took = time.perf_counter() - t
        via = f" from {how}" if how else ""
        doc = render.Doc().line(f"allocview watch: {time.strftime('%H:%M:%S')}, read{via} in "
                                f"{took * 1000:.0f} ms (guest paused only while reading)")
        doc.extend(render.areas_view(snap, stats(snap)))
        doc.extend(render.map_view(snap, None, ctx.width(), 4))
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        _show(args, doc)
        sys.stdout.flush()
        n += 1
        if args.count and n >= args.count:
            return Result(None, render.Doc())
        time.sleep(args.interval)


@command("suite", "One table over the reports of an allocview-qemu run.",
         "Every test allocview-qemu reported on (ALLOCVIEW_REPORT_DIR): its verdict, error "
         "and warning counts and first finding; --junit FILE writes JUnit XML for CI (one "
         "testcase a test, a failure for error findings). Exit status 1 when some test has "
         "error findings, 2 when there are no reports.",
         arg("report_dir", metavar="REPORT_DIR", complete="file",
             help="ALLOCVIEW_REPORT_DIR of an allocview-qemu run"),
         arg("--junit", metavar="FILE", complete="file",
             help="also write JUnit XML (one testcase a test)"),
         arg("--html", metavar="FILE", complete="file",
             help="also write the suite as one HTML page, each test linked to its own page "
                  "(write it into REPORT_DIR: the links are relative)"),
         only="cli")
def run_suite(ctx, args) -> Result:
    from . import suite
    return suite.run(args.report_dir, args.junit, args.html)


@command("sources", "Explain where allocview reads guest memory from.",
         "The source and program options, which go before or after any command.",
         json=False, only="cli")
def run_sources(ctx, args) -> Result:
    doc = render.Doc()
    for line in SOURCES_HELP.splitlines():
        doc.line(line)
    return Result(None, doc)


@command("gdb-init", "Print the gdb command that loads allocview's `alloc` commands.",
         "Put its output in ~/.gdbinit, or run it in gdb: `source` of the extension this "
         "allocview installed (gdb's own Python loads it; see README for versions).",
         json=False, only="cli")
def run_gdb_init(ctx, args) -> Result:
    from . import gdb_script
    return Result({"source": gdb_script()}, render.Doc().line(f"source {gdb_script()}"))


@command("callable-elf", "Write a copy of TEST.elf that gdb can call functions in.",
         "gdb returns from a function it calls to the program's entry point; an ELF of type "
         "DYN with entry point 0 (kvm-unit-tests' arm64, riscv64 and ppc64 tests) gives it "
         "none, so `alloc drive` cannot call the allocator (`Entry point address is not "
         "known`). The copy differs only in its ELF type (EXEC): load it in gdb with `file "
         "COPY` and `symbol-file -o OFFSET COPY`. `allocview drive --gdb` does this by itself.",
         arg("out", metavar="COPY", complete="file", help="where to write the copy"),
         json=False, only="cli")
def run_callable_elf(ctx, args) -> Result:
    from .symbols import needs_callable_copy, write_callable_copy
    if not args.elf:
        raise CommandError("callable-elf needs --elf TEST.elf")
    ctx.program()                     # a file that is no test's ELF: its one-line error
    if not needs_callable_copy(args.elf):
        raise CommandError(f"{args.elf}: gdb already knows its entry point; no copy needed")
    try:
        write_callable_copy(args.elf, args.out)
    except OSError as e:
        raise CommandError(f"{args.out}: cannot write ({e.strerror or e})") from None
    return Result({"copy": args.out}, render.Doc().line(
        f"wrote {args.out}: in gdb, `file {args.out}` and `symbol-file -o OFFSET {args.out}`"))


# ---------------------------------------------------------------- output
def _color(args) -> bool:
    return not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _show(args, doc: render.Doc) -> None:
    try:
        width = max(60, min(os.get_terminal_size().columns, 200))
    except OSError:
        width = 100
    sys.stdout.write(render.to_text(doc, color=_color(args), width=width))


def _write_json(data, where: str) -> None:
    text = json.dumps(data, indent=1) + "\n"
    if where == "-":
        sys.stdout.write(text)
    else:
        with open(where, "w") as f:
            f.write(text)
        print(f"allocview: JSON written to {where}", file=sys.stderr)


def run(cmd: Command, args) -> int:
    """One command: its result as text or JSON, its exit status."""
    from .inspect import NothingToCheck
    ctx = CliContext(args)
    json_to = getattr(args, "json", None)
    try:
        try:
            result = cmd.run(ctx, args)
        finally:
            ctx.close()
    except NothingToCheck as e:
        if json_to:
            _write_json(unchecked_json(e), json_to)
        raise
    if json_to:
        _write_json(result.data, json_to)
    else:
        _show(args, result.doc)
    return result.status


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
    from .commands import COMMANDS
    parser = build_parser()
    try:
        args = parser.parse_args(_signed_values(sys.argv[1:] if argv is None else list(argv)))
    except BrokenPipeError:            # --help, --print-completion into `head`
        return EXIT_OK
    try:
        return run(COMMANDS[args.command], args)
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
