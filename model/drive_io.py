"""What drive needs around the Driver, shared by gdb and the CLI: the
start image (to restore and to write as a reproducer), the C prototype of
each entry point for inferior calls, and the files a divergence leaves."""

from __future__ import annotations

from .drive import DriveResult, c_reproducer, write_trace
from .layout import Layout
from .trace import SIGNATURES

__all__ = ["call_expression", "parse_int", "write_reproducer"]

_C_TYPES = {1: "unsigned char", 4: "unsigned int", 8: "unsigned long long", 0: "unsigned long"}


def call_expression(func: str, args: tuple[int, ...]) -> str:
    """A C expression gdb can evaluate to call func with exactly the
    prototype's types, with or without DWARF."""
    sizes, returns = SIGNATURES[func]
    ret = "int" if func == "reserve_pages" else "unsigned long" if returns else "void"
    params = ", ".join(_C_TYPES[s] for s in sizes) or "void"
    return f"(({ret} (*)({params})){func})({', '.join(hex(a) for a in args)})"


def parse_int(text: str) -> int:
    """gdb's printed value of an integer expression: `42`, `-1`, `0x1000`."""
    return int(text.split()[0], 0)


def write_reproducer(prefix: str, result: DriveResult, layout: Layout,
                     start_image: list[tuple[int, bytes]], header: dict,
                     write_dump, end_state=None) -> list[str]:
    """PREFIX.jsonl (a trace `allocview replay` takes, with the guest's
    state after the last call, so replay shows the divergence), its start
    state PREFIX.jsonl.start.elf, and PREFIX.c (the calls for a test)."""
    paths = [prefix + ".jsonl", prefix + ".jsonl.start.elf", prefix + ".c"]
    write_trace(paths[0], result.calls, header, end_state)
    write_dump(paths[1], start_image)
    with open(paths[2], "w") as f:
        f.write(c_reproducer(result.calls, layout))
    return paths
