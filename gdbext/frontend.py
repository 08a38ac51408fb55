"""The `alloc` commands and `set/show alloc` settings, generated from the
declarations in allocview.commands (and gdbext.gdb_commands).

gdb's conventions: `help alloc` lists one short sentence per command and
`help alloc CMD` gives the details and arguments; Enter does not repeat a
command that writes or costs; completion follows argument position;
settings are parameters; colour follows `set style enabled`; questions
honour `set confirm`.
"""

from __future__ import annotations

import argparse
import json
import os
import re

import gdb  # type: ignore[import-not-found]

from allocview import render
from allocview.commands import Arg, Command, build_parser, commands_for, unchecked_json
from allocview.inspect import NothingToCheck
from allocview.model.errors import AllocviewError

from . import gdb_commands  # noqa: F401  (declares the gdb-only commands)
from . import target
from .context import GdbContext
from .session import drop, session

__all__ = ["register"]

# JSON longer than this goes to a file rather than the terminal
BIG_JSON = 1 << 20


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise gdb.GdbError(f"{self.prog}: {message} (`help {self.prog}`)")

    def exit(self, status=0, message=None):
        if message:
            gdb.write(message)
        raise _Done()


class _Done(Exception):
    """--help printed its text: nothing more to do."""


def _value(text: str) -> int:
    """An integer or any gdb expression (`ptr`, `$rdi`, `&areas[1]`)."""
    try:
        return int(text, 0)
    except ValueError:
        try:
            return int(gdb.parse_and_eval(text))
        except gdb.error as e:
            raise argparse.ArgumentTypeError(str(e)) from None


_OPTION = re.compile(r"(?:^|\s)(--[a-z][\w-]*|-h)(?=\s|=|$)")


def _argv(cmd: Command, text: str) -> list[str]:
    """The words of an argument string. A leading expression argument is
    the whole text up to the first option, as `x` takes it, so spaces and
    quotes ('file.c'::var) reach gdb untouched."""
    first = next((a for a in cmd.args if a.positional), None)
    if first is not None and first.complete == "expression" and not text.lstrip().startswith("-"):
        m = _OPTION.search(text)
        expr = (text[:m.start()] if m else text).strip()
        return ([expr] if expr else []) + gdb.string_to_argv(text[m.start():] if m else "")
    return gdb.string_to_argv(text)


def color() -> bool:
    """`set alloc color auto` follows gdb: styling enabled and a terminal
    gdb itself would style."""
    mode = session().color
    if mode != "auto":
        return mode == "on"
    try:
        styled = bool(gdb.parameter("style enabled"))
    except (gdb.error, RuntimeError):
        return False
    return styled and os.isatty(1) and os.environ.get("TERM", "") not in ("", "dumb")


def _show_json(cmd: Command, data, where: str) -> None:
    text = json.dumps(data, indent=1) + "\n"
    if where == "-" and len(text) > BIG_JSON:
        where = f"alloc-{cmd.name}.json"
    if where == "-":
        gdb.write(text)
        return
    with open(where, "w") as f:
        f.write(text)
    gdb.write(f"allocview: JSON ({len(text)} bytes) written to {where}\n")


def _make(cmd: Command):
    parser = build_parser(cmd, _Parser(prog=f"alloc {cmd.name}", add_help=True,
                                       formatter_class=argparse.RawDescriptionHelpFormatter),
                          value=_value)
    usage = parser.format_help()

    class AllocCommand(gdb.Command):
        def __init__(self):
            super().__init__(f"alloc {cmd.name}", gdb.COMMAND_DATA)

        def invoke(self, arg, from_tty):
            if cmd.writes or cmd.costly:
                self.dont_repeat()
            try:
                args = parser.parse_args(_argv(cmd, arg))
            except _Done:
                return
            except argparse.ArgumentTypeError as e:
                raise gdb.GdbError(f"alloc {cmd.name}: {e}") from None
            json_to = getattr(args, "json", None)
            try:
                result = cmd.run(GdbContext(from_tty), args)
                if json_to:
                    _show_json(cmd, result.data, json_to)
                else:
                    gdb.write(render.to_text(result.doc, color=color(),
                                             width=GdbContext().width()))
            except NothingToCheck as e:
                if json_to:
                    _show_json(cmd, unchecked_json(e), json_to)
                raise gdb.GdbError(f"allocview: {e}") from None
            except AllocviewError as e:
                raise gdb.GdbError(f"allocview: {e}") from None
            except OSError as e:          # a file the user named: --json FILE, save
                raise gdb.GdbError(f"allocview: {e.filename or ''}: "
                                   f"{e.strerror or e}") from None
            except KeyboardInterrupt:
                raise gdb.GdbError("allocview: interrupted") from None

        def complete(self, text, word):
            return complete(cmd, text, word)

    # gdb shows the first line in `help alloc` and `apropos`, all of it in `help alloc CMD`
    AllocCommand.__doc__ = f"{cmd.summary}\n\n{_wrap(cmd.details)}\n\n{usage}".rstrip()
    return AllocCommand


def _wrap(text: str) -> str:
    import textwrap
    return textwrap.fill(text, 78)


# -------------------------------------------------------------- completion
def complete(cmd: Command, text: str, word: str | None):
    """What fits at the cursor: an option name, an option's value, or the
    positional argument at this position."""
    words = text.split(" ")
    cur = words[-1]                         # the argument being typed, whole
    words = [w for w in words[:-1] if w]
    # gdb replaces only `word` (it breaks words at '-'): strip what precedes it
    cut = len(cur) - len(word or "")
    found = _complete_at(cmd, words, cur)
    if isinstance(found, int):
        return found
    return [c[cut:] for c in found]


def _complete_at(cmd: Command, words: list[str], cur: str):
    if cur.startswith("-"):
        names = [n for a in cmd.args for n in a.names if n.startswith("-")]
        return sorted(n for n in names + (["--json"] if cmd.json else []) if n.startswith(cur))
    options = {n: a for a in cmd.args for n in a.names if n.startswith("-")}
    prev = words[-1] if words else None
    if prev in options and _takes_value(options[prev]):
        return _candidates(options[prev], cur)
    # which positional: count the words that are not options or their values
    n, skip = 0, False
    for w in words:
        if skip:
            skip = False
        elif w.startswith("-"):
            skip = w in options and _takes_value(options[w])
        else:
            n += 1
    for a in (a for a in cmd.args if a.positional):
        if n == 0 or a.kw.get("nargs") in ("+", "*"):
            return _candidates(a, cur)
        n -= 1
    return []


def _takes_value(a: Arg) -> bool:
    return a.kw.get("action") not in ("store_true", "store_false")


def _candidates(a: Arg, word: str):
    if a.complete == "expression":
        return gdb.COMPLETE_EXPRESSION
    if a.complete == "file":
        return gdb.COMPLETE_FILENAME
    if a.kw.get("choices"):
        options = [str(c) for c in a.kw["choices"]]
    else:
        options = _kind(a.complete)
    if a.complete == "entry-point" and a.names == ("funcs",):
        options = options + ["off", "status"]
    return [o for o in options if o.startswith(word)]


def _kind(kind: str | None) -> list[str]:
    try:
        if kind in ("slot", "area"):
            slots = target.program().layout.slots
            return [str(s.number) for s in slots] + [s.name for s in slots]
        if kind == "order":
            return [str(k) for k in range(target.program().layout.nlists)]
        if kind == "entry-point":
            from allocview.model.entry_points import SIGNATURES
            syms = target.program().symbols
            return [f for f in SIGNATURES if f in syms]
        if kind == "code":
            from allocview.model.findings import CODES
            return sorted(CODES)
    except (gdb.error, gdb.GdbError, AllocviewError):
        return []
    return []


# ----------------------------------------------------------------- `alloc`
class AllocPrefix(gdb.Command):
    """Inspect, check and drive the kvm-unit-tests page allocator (allocview).

Every command reads the guest at this stop; `drive` (which asks first),
`trace` and `check-each` are the ones that call into the guest or plant
breakpoints. Settings: `set alloc color|format|source`. Each command takes
--json [FILE] for its result as JSON, the same as the allocview CLI gives."""

    def __init__(self):
        super().__init__("alloc", gdb.COMMAND_DATA, gdb.COMPLETE_COMMAND, prefix=True)

    def invoke(self, arg, from_tty):
        if arg.strip():
            raise gdb.GdbError(f"Undefined alloc command: \"{arg.split()[0]}\".  "
                               "Try \"help alloc\".")
        gdb.execute("help alloc", from_tty)


class _SetAlloc(gdb.Command):
    """Settings of the allocview `alloc` commands."""

    def __init__(self, verb: str):
        super().__init__(f"{verb} alloc", gdb.COMMAND_DATA, gdb.COMPLETE_COMMAND, prefix=True)


# ---------------------------------------------------------------- settings
class _Setting(gdb.Parameter):
    values: tuple[str, ...] = ()

    def __init__(self, name: str):
        super().__init__(f"alloc {name}", gdb.COMMAND_DATA, gdb.PARAM_ENUM, list(self.values))
        self.value = self.current()

    def current(self) -> str:
        raise NotImplementedError

    def apply(self, value: str) -> None:
        raise NotImplementedError

    def get_set_string(self):
        self.apply(self.value)
        return ""


class ColorSetting(_Setting):
    """Set colour in allocview's output.
on: always; off: never; auto (default): as gdb styles its own output
(`set style enabled`, on a terminal)."""
    set_doc = "Set colour in allocview's output."
    show_doc = "Show colour in allocview's output."
    values = ("auto", "on", "off")

    def current(self):
        return session().color

    def apply(self, value):
        session().color = value

    def get_show_string(self, svalue):
        now = " (on now)" if svalue == "auto" and color() else \
            " (off now)" if svalue == "auto" else ""
        return f"Colour in allocview's output is {svalue}{now}."


class FormatSetting(_Setting):
    """Set the metadata byte encoding allocview decodes.
2020 or 2021 forces one; auto (default) detects it from the guest's bytes
and the program's symbols."""
    set_doc = "Set the metadata byte encoding allocview decodes."
    show_doc = "Show the metadata byte encoding allocview decodes."
    values = ("auto", "2020", "2021")

    def current(self):
        return session().format or "auto"

    def apply(self, value):
        s = session()
        s.format = None if value == "auto" else value
        s.forget_program()

    def get_show_string(self, svalue):
        try:
            prog = target.program(session().format)
        except (gdb.error, gdb.GdbError, AllocviewError):
            return f"The metadata byte encoding is {svalue}; no program loaded yet."
        return (f"The metadata byte encoding is {svalue}; {prog.arch}, struct mem_area from "
                f"{prog.layout_source}; areas at {prog.areas_addr:#x}, areas_mask at "
                f"{prog.mask_addr:#x} (gdb's symbols).")


class SourceSetting(_Setting):
    """Set how allocview reads guest memory.
auto (default): straight from the QEMU process behind the stub when it
runs on this host as you (/proc/PID/mem, found through `monitor`, checked
against the stub on every snapshot), else the gdb stub; stub: always the
gdb stub."""
    set_doc = "Set how allocview reads guest memory."
    show_doc = "Show how allocview reads guest memory."
    values = ("auto", "stub")

    def current(self):
        return session().host.mode

    def apply(self, value):
        s = session()
        s.host.mode = value
        s.invalidate()

    def get_show_string(self, svalue):
        if gdb.selected_inferior().pid == 0:
            return f"allocview reads guest memory the {svalue} way; no target yet."
        if svalue == "stub":
            return ("allocview reads guest memory the stub way: through the gdb stub (off: "
                    "`set alloc source auto` reads QEMU's memory when it is local).")
        host = target.host_memory()
        if host is not None:
            return (f"allocview reads guest memory the {svalue} way: guest RAM from QEMU "
                    f"process {host.pid} (/proc/{host.pid}/mem, {len(host.ranges)} RAM "
                    f"ranges), the gdb stub for anything else.")
        return (f"allocview reads guest memory the {svalue} way: through the gdb stub "
                f"({session().host.why_not}).")


# ---------------------------------------------------------------- register
def register() -> None:
    AllocPrefix()
    for cmd in commands_for("gdb"):
        _make(cmd)()
    for verb in ("set", "show"):
        _SetAlloc(verb)
    ColorSetting("color")
    FormatSetting("format")
    SourceSetting("source")
    for ev in ("stop", "cont", "memory_changed", "inferior_call", "exited"):
        if hasattr(gdb.events, ev):
            getattr(gdb.events, ev).connect(lambda *_: session().invalidate())
    gdb.events.new_objfile.connect(lambda *_: session().forget_program())
    if hasattr(gdb.events, "clear_objfiles"):
        gdb.events.clear_objfiles.connect(lambda *_: drop())
