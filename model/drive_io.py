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


def read_known(path: str | None) -> frozenset[str]:
    """A `--known` file: accepted difference kinds, one per line, # comments."""
    from .errors import AllocviewError
    from .replay import DIFFERENCE_KINDS
    if not path:
        return frozenset()
    try:
        with open(path) as f:
            kinds = frozenset(w for w in (ln.split("#")[0].strip() for ln in f) if w)
    except OSError as e:
        raise AllocviewError(f"{path}: cannot open ({e.strerror or e})") from None
    bad = kinds - set(DIFFERENCE_KINDS)
    if bad:
        raise AllocviewError(f"{path}: unknown difference kind(s) {', '.join(sorted(bad))} "
                             f"(known: {', '.join(DIFFERENCE_KINDS)})")
    return kinds


def drive_session(guest, start, image, ops, *, mode: str, accepted: frozenset[str],
                  shrink_it: bool, prefix: str, header: dict, write_dump, decode_end,
                  keep: bool = False, progress=None) -> dict:
    """The whole of `drive` after the start state is read: run, and on a
    divergence shrink it, replay the minimal sequence once more from the
    restored start, read the guest's end state and write the reproducer;
    restore the start state at the end unless `keep`. A JSON-ready summary."""
    from .drive import Driver, restore
    driver = Driver(guest, start, mode=mode, accepted=accepted)
    try:
        out = _session(driver, guest, start, image, ops, shrink_it=shrink_it, prefix=prefix,
                       header=header, write_dump=write_dump, decode_end=decode_end,
                       progress=progress)
    except KeyboardInterrupt:
        raise _interrupted(guest, start, image, keep) from None
    except BaseException:
        if not keep:
            restore(guest, start, image)
        raise
    if not keep:
        restore(guest, start, image)
    return out


def _interrupted(guest, start, image, keep: bool):
    """A Ctrl-C: restore unless --keep, and say what became of the state."""
    from .drive import DriveInterrupted, restore
    if keep:
        return DriveInterrupted("drive interrupted; the guest keeps the state it reached (--keep)")
    try:
        restore(guest, start, image)
    except Exception as e:  # noqa: BLE001 - say so, whatever it was
        return DriveInterrupted(f"drive interrupted; restoring the allocator's start state "
                                f"failed ({e}): its state in the guest is unknown")
    return DriveInterrupted("drive interrupted; the allocator's start state was restored "
                            "(every byte of it the start decode read)")


def _session(driver, guest, start, image, ops, *, shrink_it, prefix, header, write_dump,
             decode_end, progress) -> dict:
    from .drive import restore, shrink
    res = driver.run(ops, progress)
    out = {"ops": res.ops, "calls": len(res.calls), "seconds": round(res.seconds, 2),
           "ops_per_s": round(res.ops / res.seconds, 1) if res.seconds else None,
           "divergence": None}
    if res.divergence:
        k, call, diffs = res.divergence
        failing = shrink(driver, ops[:k + 1], image) if shrink_it else ops[:k + 1]
        restore(guest, start, image)
        final = driver.run(failing)
        paths = write_reproducer(prefix, final, start.layout, image, header, write_dump,
                                 decode_end())
        out["divergence"] = {"after_op": k, "call": call.to_json(),
                             "differences": [d.to_json() for d in diffs],
                             "shrunk": [c.to_json() for c in final.calls],
                             "shrunk_c": [c.c() for c in final.calls], "files": paths}
    return out


def drive_words(out: dict) -> list[str]:
    """The summary in words, for gdb and the CLI."""
    lines = [f"{out['ops']} operations, {out['calls']} calls in {out['seconds']} s "
             f"({out['ops_per_s']} ops/s)"]
    d = out["divergence"]
    if d is None:
        return lines + ["no divergence: the guest follows the design"]
    c = d["call"]
    lines.append(f"DIVERGENCE after operation {d['after_op']}: {c['func']}"
                 f"({', '.join(hex(a) for a in c['args'])}) -> "
                 f"{'void' if c['result'] is None else hex(c['result'])}")
    lines += [f"  {x['kind']}: {x['detail']}" for x in d["differences"][:10]]
    lines.append(f"shrunk to {len(d['shrunk'])} operation(s):")
    lines += [f"    {c}" for c in d["shrunk_c"]]
    lines.append(f"reproducer: {', '.join(d['files'])}")
    return lines
