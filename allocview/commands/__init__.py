"""Every command, declared once for both front ends.

A `Command` is its name, a one-sentence summary, details, its arguments
(`Arg`: spellings, type, help, default, completion kind) and `run(ctx,
args) -> Result`: the result as data (what `--json` prints, the same from
gdb and the CLI) and as a `render.Doc` (the text). allocview/cli.py and
gdbext/frontend.py build their parsers, help and completion from these
declarations; neither declares a command of its own that the other has.

The context a command runs in (`Context`) is the front end's: where the
snapshot comes from (gdb's stop, the CLI's source), saved snapshots, the
program's placement. Importing this package imports no gdb, rich, or
qemu.qmp.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from allocview.model.errors import AllocviewError

__all__ = ["Arg", "Command", "Result", "Context", "COMMANDS", "command", "commands_for",
           "build_parser", "CommandError", "int_value", "unchecked_json", "COMPLETIONS"]

# completion kinds an Arg may name (gdb completes them per argument position)
COMPLETIONS = ("slot", "area", "order", "expression", "file", "code", "entry-point", None)


class CommandError(AllocviewError):
    """A command cannot do what was asked (one line)."""


@dataclass(frozen=True)
class Arg:
    """One argument: `names` ("slot" for a positional, "--limit" or ("-n",
    "--limit") for an option) and argparse's keywords; `complete` names
    what gdb offers for it."""
    names: tuple[str, ...]
    help: str
    complete: str | None = None
    kw: dict = field(default_factory=dict)

    @property
    def positional(self) -> bool:
        return not self.names[0].startswith("-")


def arg(*names: str, help: str, complete: str | None = None, **kw) -> Arg:
    return Arg(tuple(names), help, complete, kw)


@dataclass
class Result:
    """What a command produced: `data` for --json, `doc` for the text,
    `status` for the CLI's exit status (1: error findings, a divergence)."""
    data: Any
    doc: Any                           # allocview.render.Doc
    status: int = 0


class Context(Protocol):
    """What a command may ask of the front end it runs in."""

    def snapshot(self, require: bool = True): ...          # model.snapshot.Snapshot

    def placement(self): ...                                # model.placement.Placement | None

    def resolve(self, ref: str, load_offset: int | None = None): ...  # saved snapshot, dump

    def recorded(self): ...                                 # (Snapshot, [(addr, bytes)])

    def arch(self) -> str: ...

    def program(self): ...                                  # model.program.Program, unplaced

    def load_offset(self) -> int | None: ...                # the user's, if given

    def trace_in_progress(self) -> str | None: ...          # gdb: the trace being recorded

    def phys_offset(self) -> int: ...

    def width(self) -> int: ...

    def confirm(self, question: str) -> bool: ...

    def progress(self, line: str) -> None: ...


@dataclass(frozen=True)
class Command:
    name: str
    summary: str                       # one short sentence: the first help line
    details: str
    args: tuple[Arg, ...]
    run: Callable[[Context, argparse.Namespace], Result]
    writes: bool = False               # has side effects: gdb does not repeat it on Enter
    costly: bool = False               # gdb does not repeat it on Enter either
    json: bool = True                  # takes --json
    only: str | None = None            # "gdb" or "cli": a command one front end cannot offer

    @property
    def help(self) -> str:
        return f"{self.summary}\n\n{self.details}".rstrip()


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, details: str = "", *args: Arg, writes: bool = False,
            costly: bool = False, json: bool = True, only: str | None = None):
    """Declare a command: the decorated function is its run(ctx, args)."""
    assert len(summary) <= 80 and "\n" not in summary, f"{name}: one short sentence"
    def wrap(fn):
        COMMANDS[name] = Command(name, summary, " ".join(details.split()), tuple(args), fn,
                                 writes, costly, json, only)
        return fn
    return wrap


def commands_for(front: str) -> list[Command]:
    """The commands a front end ("gdb" or "cli") offers, by name."""
    return [c for _, c in sorted(COMMANDS.items()) if c.only in (None, front)]


def unchecked_json(e) -> dict:
    """The JSON a command gives when nothing could be checked
    (allocview.inspect.NothingToCheck): what the report schema allows."""
    from allocview.model.report import SCHEMA_VERSION
    doc = {"schema": SCHEMA_VERSION, "unchecked": e.unchecked.to_json()}
    if e.placement is not None:
        doc["program"] = e.placement.to_json()
    return doc


def int_value(text: str) -> int:
    """An integer in any base Python reads (0x1000, 4096, 0o10)."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser(cmd: Command, parser: argparse.ArgumentParser,
                 value: Callable[[str], int] = int_value,
                 tag: Callable[[Arg, argparse.Action], None] | None = None
                 ) -> argparse.ArgumentParser:
    """Add cmd's arguments to `parser`; `value` turns an address argument
    into an int (gdb evaluates expressions); `tag(arg, action)` lets a
    front end mark each action (shell completion)."""
    for a in cmd.args:
        kw = dict(a.kw)
        if kw.get("type") == "address":
            kw["type"] = value
        action = parser.add_argument(*a.names, help=a.help + _default(kw), **kw)
        if tag is not None:
            tag(a, action)
    if cmd.json:
        parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                            help="the result as JSON, to FILE (default: standard output)")
    return parser


def _default(kw: dict) -> str:
    d = kw.get("default")
    if d in (None, False, [], argparse.SUPPRESS) or kw.get("action") == "store_true":
        return ""
    return f" (default {d})"


from . import driving, inspection, offline, ownership  # noqa: E402,F401  (declare the commands)
