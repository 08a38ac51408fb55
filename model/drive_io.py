"""What drive needs around the Driver, shared by gdb and the CLI: the
start image (to restore and to write as a reproducer), the C prototype of
each entry point for inferior calls, and the files a divergence leaves."""

from __future__ import annotations

import os
import time

from .drive import DEAD_KINDS, CallDied, DriveResult, c_reproducer, group, write_trace
from .entry_points import DEATH_PATHS
from .layout import Layout
from .trace import SIGNATURES

__all__ = ["call_expression", "parse_int", "write_reproducer", "ConsoleTail", "start_image",
           "STOPPED_IN_CALL", "GUEST_GONE_WORDS", "call_words", "hung", "aborted",
           "outside_death_paths",
           "lock_held",
           "drive_session", "drive_words"]

_C_TYPES = {1: "unsigned char", 4: "unsigned int", 8: "unsigned long long", 0: "unsigned long"}


def call_expression(func: str, args: tuple[int, ...]) -> str:
    """A C expression gdb can evaluate to call func with exactly the
    prototype's types, with or without DWARF."""
    sizes, returns = SIGNATURES[func]
    ret = "int" if func == "reserve_pages" else "unsigned long" if returns else "void"
    params = ", ".join(_C_TYPES[s] for s in sizes) or "void"
    return f"(({ret} (*)({params})){func})({', '.join(hex(a) for a in args)})"


# gdb's words for how an inferior call ended, the same through its Python
# API and through MI: stopped at a breakpoint (the abort/exit path), or the
# guest is gone with it
STOPPED_IN_CALL = "stopped while in a function called from GDB"
GUEST_GONE_WORDS = ("Remote connection closed", "The program is not being run",
                    "Remote communication error", "Couldn't get registers",
                    "exited while in a function called from GDB")


def call_words(func: str, args: tuple[int, ...]) -> str:
    return f"{func}({', '.join(hex(a) for a in args)})"


def hung(what: str, timeout: float, where: str | None, console: str | None) -> CallDied:
    """A call interrupted after `timeout` s; `where` the function it spun in."""
    return CallDied("hang", f"{what} did not return in {timeout:g} s: the guest hangs in "
                    f"{where or 'it'}() (interrupted; the call was unwound)", console, where)


def aborted(what: str, death: str, caller: str | None, console: str | None) -> CallDied:
    """A call stopped in the abort/exit path `death`, called from `caller`."""
    return CallDied("abort", f"{what} reached {death}() from {caller or '?'}() in the guest "
                    f"(the call was unwound)", console, caller)


def outside_death_paths(names) -> str | None:
    """The first of a stopped call's function names, innermost first, that
    is not the test's abort/exit path: where it died."""
    return next((n for n in names if n and n not in DEATH_PATHS), None)


def parse_int(text: str) -> int:
    """gdb's printed value of an integer expression: `42`, `-1`, `0x1000`."""
    return int(text.split()[0], 0)


def write_reproducer(prefix: str, result: DriveResult, layout: Layout,
                     start_image: list[tuple[int, bytes]], header: dict,
                     write_dump, end_state=None) -> list[str]:
    """PREFIX.jsonl (a trace `allocview replay` takes: with the guest's
    state after the last call, or the call that died marked, so replay
    shows the departure), its start state PREFIX.jsonl.start.elf, and
    PREFIX.c (the calls for a test)."""
    paths = [prefix + ".jsonl", prefix + ".jsonl.start.elf", prefix + ".c"]
    died = next(((d.call.i, f"{d.kind}: {d.differences[0].detail}")
                 for d in result.departures if d.kind in DEAD_KINDS), None)
    write_trace(paths[0], result.calls, header, None if died else end_state, died)
    write_dump(paths[1], start_image)
    with open(paths[2], "w") as f:
        f.write(c_reproducer(result.calls, layout))
    return paths


def start_image(mem, prog) -> list[tuple[int, bytes]]:
    """What drive restores: every range the start decode read through the
    recording memory `mem`, and the allocator's lock (a call that dies
    inside the allocator leaves it held: the next call would spin)."""
    lock = prog.symbols.get("lock")
    if lock is not None:
        mem.read(lock, 4)
    return mem.ranges()


def lock_held(image: list[tuple[int, bytes]], prog) -> bool:
    """Whether the allocator's lock is taken in the start image: the guest
    stopped inside the allocator, where any call would spin."""
    lock = prog.symbols.get("lock")
    for addr, data in image:
        if lock is not None and addr <= lock and lock + 4 <= addr + len(data):
            return any(data[lock - addr:lock - addr + 4])
    return False


class ConsoleTail:
    """What the guest printed during a call: the bytes appended to its
    console file (QEMU's -serial file:, -chardev ...,logfile=) since mark()."""

    LIMIT = 4096

    def __init__(self, path: str | None):
        self.path = path
        self.at = 0

    def mark(self) -> None:
        if self.path:
            try:
                self.at = os.path.getsize(self.path)
            except OSError:
                self.at = 0

    def since(self) -> str | None:
        """The text printed since mark() (its last LIMIT bytes), or None
        when there is no console file to read."""
        if not self.path:
            return None
        try:
            with open(self.path, "rb") as f:
                f.seek(self.at)
                data = f.read()
        except OSError:
            return None
        return data[-self.LIMIT:].decode(errors="replace")


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
                  keep: bool = False, first: bool = False, progress=None,
                  say=None) -> dict:
    """The whole of `drive` after the start state is read: run (past every
    departure unless `first`), shrink each distinct defect, replay its
    minimal sequence once more from the restored start, read the guest's
    end state and write its reproducer; restore the start state at the end
    unless `keep`. A JSON-ready summary."""
    from .drive import Driver, restore
    driver = Driver(guest, start, image=image, mode=mode, accepted=accepted)
    try:
        out = _session(driver, ops, shrink_it=shrink_it, prefix=prefix, header=header,
                       write_dump=write_dump, decode_end=decode_end, first=first,
                       progress=progress, say=say or (lambda _text: None))
    except KeyboardInterrupt:
        raise _interrupted(guest, start, image, keep) from None
    except BaseException:
        if not keep:
            try:
                restore(guest, start, image)
            except Exception:  # noqa: BLE001 - the first error is the one to tell
                pass
        raise
    if not keep and not out.get("gone"):
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


def _session(driver, ops, *, shrink_it, prefix, header, write_dump, decode_end, first,
             progress, say) -> dict:
    from .drive import GuestGone, shrink
    res = driver.run(ops, progress, go_on=not first)
    gone = res.gone
    defects = group(res.departures)
    out = {"ops": res.ops, "calls": len(res.calls), "seconds": round(res.seconds, 2),
           "ops_per_s": round(res.ops / res.seconds, 1) if res.seconds else None,
           "skipped": res.skipped, "adopted": res.adopted,
           "recoveries": len(res.recoveries),
           "recovery_s": round(max(res.recoveries), 3) if res.recoveries else None,
           "divergence": None, "defects": []}
    t = time.perf_counter()
    for n, d in enumerate(defects, 1):
        k = d.first.op
        if gone:                  # nothing to shrink or reproduce with: list it as found
            out["defects"].append(_found(d, []))
            continue
        say(f"  shrinking defect {n} of {len(defects)}: {d.signature} ({d.hits} hits, first "
            f"after operation {k})")
        t_shrink = time.perf_counter()
        try:
            failing = shrink(driver, ops[:k + 1], d.signature, deadly=res.deadly) \
                if shrink_it else ops[:k + 1]
            driver.restore()
            avoid = frozenset(key for key, s in res.deadly.items() if s != d.signature)
            final = driver.run(failing, go_on=True, want=d.signature, avoid=avoid)
            dead = any(x.kind in DEAD_KINDS for x in final.departures)
            end = None if dead else decode_end()
        except GuestGone as e:
            gone = str(e)
            out["defects"].append(_found(d, []))
            continue
        path_prefix = prefix if first else f"{prefix}-{n}"
        paths = write_reproducer(path_prefix, final, driver.layout, driver.image, header,
                                 write_dump, end)
        shown = any(x.signature == d.signature for x in final.departures)
        out["defects"].append(_found(d, paths, final.calls, shown))
        out["defects"][-1]["shrink_s"] = round(time.perf_counter() - t_shrink, 2)
    out["shrink_seconds"] = round(time.perf_counter() - t, 2)
    if gone:
        out["gone"] = gone
    if out["defects"]:
        first_d = out["defects"][0]
        out["divergence"] = {**first_d["first"], "shrunk": first_d["shrunk"],
                             "shrunk_c": first_d["shrunk_c"], "files": first_d["files"]}
    return out


def _found(d, paths: list[str], calls=(), reproduced: bool = False) -> dict:
    """One distinct defect, JSON-ready."""
    return {"signature": d.signature, "kind": d.first.kind, "hits": d.hits,
            "last_op": d.last_op,
            "by_call": dict(d.by_call.most_common()), "first": d.first.to_json(),
            "reproduced": reproduced, "shrunk": [c.to_json() for c in calls],
            "shrunk_c": [c.c() for c in calls], "files": paths}


def drive_words(out: dict) -> list[str]:
    """The summary in words, for gdb and the CLI: a table of the distinct
    defects, then each one's minimal sequence and files."""
    lines = [f"{out['ops']} operations, {out['calls']} calls in {out['seconds']} s "
             f"({out['ops_per_s']} ops/s)"]
    if out.get("recoveries"):
        lines.append(f"{out['recoveries']} recoveries from the start state (slowest "
                     f"{out['recovery_s']} s); {out['skipped']} calls not sent again "
                     f"(they repeat one that killed the guest)")
    defects = out["defects"]
    if out.get("gone"):
        lines.append(f"the guest cannot be brought back: {out['gone']} (what was found "
                     f"before is below)")
    if not defects:
        return lines + ["no divergence: the guest follows the design"]
    lines.append(f"DIVERGENCE: {len(defects)} distinct defect(s)")
    lines.append(f"  {'#':>2}  {'defect':<28} {'hits':>5}  minimal sequence")
    for n, d in enumerate(defects, 1):
        seq = "; ".join(d["shrunk_c"]) or "(none)"
        if len(seq) > 60:
            seq = seq[:57] + "..."
        lines.append(f"  {n:>2}  {d['signature']:<28} {d['hits']:>5}  {seq}")
    for n, d in enumerate(defects, 1):
        c = d["first"]["call"]
        res = "void" if c["result"] is None else hex(c["result"])
        lines.append(f"#{n} {d['signature']}: first after operation {d['first']['after_op']}: "
                     f"{c['func']}({', '.join(hex(a) for a in c['args'])}) -> {res}")
        lines += [f"    {x['kind']}: {x['detail']}" for x in d["first"]["differences"][:6]]
        if d["first"].get("console"):
            lines += [f"    console: {ln}" for ln in d["first"]["console"].splitlines()[-4:]]
        hits = list(d["by_call"].items())
        more = f", and {len(hits) - 4} more" if len(hits) > 4 else ""
        lines.append("    hit by: " + ", ".join(f"{k} x{v}" for k, v in hits[:4]) + more)
        if not d["files"]:
            lines.append("    not shrunk: the guest was gone")
            continue
        lines.append(f"    shrunk to {len(d['shrunk'])} call(s)"
                     + ("" if d["reproduced"] else " (did NOT reproduce from the start state)")
                     + ":")
        lines += [f"      {c}" for c in d["shrunk_c"]]
        lines.append(f"    reproducer: {', '.join(d['files'])}")
    return lines
