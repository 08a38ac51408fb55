"""What allocview-qemu leaves of a test: the JSON report (model.report's
document plus a "test" object, or the "test" object alone when no check
was made) and its one-line summary.

`report_facts` reads a report back for `allocview suite` too, so the line
and the suite's table say the same thing.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile

from allocview.model.report import SCHEMA_VERSION

from .outcome import Outcome

__all__ = ["shell_status", "test_object", "document", "report_facts", "summary_line", "write"]


def shell_status(returncode: int | None) -> int | None:
    """A Popen returncode as a shell reports it: 128 + n for signal n."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return str(n)


def test_object(out: Outcome, status: int | None) -> dict:
    """The report's "test" object; `status` is the wrapper's exit status."""
    doc = {"name": out.name, "kernel": out.kernel, "elf": out.elf, "qemu": out.qemu,
           "qemu_status": shell_status(out.qemu_status), "status": status,
           "ended": out.ended, "checked": out.checked,
           "reason": None if out.checked else out.ended.removeprefix("no check: "),
           "wall_time": None if out.wall_time is None else round(out.wall_time, 3),
           "check_time": None if out.check_time is None else round(out.check_time, 3),
           "read_via": out.read_via}
    if out.qemu_status is not None and out.qemu_status < 0:
        doc["qemu_signal"] = _signame(-out.qemu_status)
    if out.signals:
        doc["signals"] = [_signame(s) for s in out.signals]
    if out.notes:
        doc["notes"] = list(out.notes)
    return doc


def document(out: Outcome, status: int | None) -> dict:
    doc = dict(out.report) if out.report is not None else {"schema": SCHEMA_VERSION}
    doc["test"] = test_object(out, status)
    return doc


def report_facts(doc: dict) -> dict:
    """Counts a summary needs from a report document: findings by severity
    and by code, free pages, the largest free block's order and bytes."""
    findings = doc.get("findings") or []
    by_sev: dict[str, int] = {}
    by_code: dict[str, int] = {}
    serious: dict[str, int] = {}         # error and warning codes only
    for f in findings:
        sev, code = f.get("severity", "?"), f.get("code", "?")
        by_sev[sev] = by_sev.get(sev, 0) + 1
        by_code[code] = by_code.get(code, 0) + 1
        if sev in ("error", "warning"):
            serious[code] = serious.get(code, 0) + 1
    areas = [a for a in doc.get("areas") or [] if "pages" in a]
    free = sum(a["pages"].get("free", 0) + a["pages"].get("fresh", 0) for a in areas)
    orders = [a["largest_order"] for a in areas if a.get("largest_order") is not None]
    largest = max(orders) if orders else None
    page = doc.get("page_size") or 4096
    return {"checked": "findings" in doc, "by_severity": by_sev, "by_code": by_code,
            "serious_by_code": serious,
            "areas": len(areas), "free_pages": free if areas else None,
            "largest_order": largest,
            "largest_bytes": None if largest is None else page << largest}


def _findings_text(facts: dict) -> str:
    sev = facts["by_severity"]
    if not sev.get("error") and not sev.get("warning"):
        return "clean"
    parts = [f"{sev[s]} {s}{'s' if sev[s] > 1 else ''}" for s in ("error", "warning", "info")
             if sev.get(s)]
    codes = ", ".join(f"{c} {n}" for c, n in sorted(facts["serious_by_code"].items()))
    return f"{', '.join(parts)} ({codes})"


def summary_line(doc: dict) -> str:
    t = doc["test"]
    head = f"allocview: {t['name']}: {t['ended']}, QEMU status {t['qemu_status']}"
    if t.get("status") != t.get("qemu_status"):
        head += f", exit status {t['status']}"
    if not t["checked"]:
        return head
    f = report_facts(doc)
    free = f"{f['free_pages']} free pages" if f["free_pages"] is not None else "no areas"
    largest = "" if f["largest_order"] is None else \
        f", largest block order {f['largest_order']}"
    return f"{head}: {_findings_text(f)}; {f['areas']} areas, {free}{largest}"


def write(report_dir: str, doc: dict, line: str, state: tuple[str, list] | None = None,
          page: str | None = None) -> str:
    """<dir>/<test>.json (replaced whole, never half written) and the line
    appended to <dir>/summary.txt (one write: parallel tests do not
    interleave); with findings, <test>.elf (the state: `allocview --dump
    <test>.elf --elf TEST.elf ...`) and <test>.html beside it. The report's
    path."""
    os.makedirs(report_dir, exist_ok=True)
    name = doc["test"]["name"]
    path = os.path.join(report_dir, f"{name}.json")
    _replace(path, lambda f: (json.dump(doc, f, indent=1), f.write("\n")))
    if state is not None:
        from ..dumpwrite import write_elf_dump
        arch, ranges = state
        elf = os.path.join(report_dir, f"{name}.elf")
        fd, tmp = tempfile.mkstemp(prefix=".allocview-", suffix=".elf", dir=report_dir)
        os.close(fd)
        try:
            write_elf_dump(tmp, ranges, arch=arch, partial=True)
            os.replace(tmp, elf)
        except BaseException:
            os.unlink(tmp)
            raise
    if page is not None:
        _replace(os.path.join(report_dir, f"{name}.html"), lambda f: f.write(page))
    fd = os.open(os.path.join(report_dir, "summary.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return path


def _replace(path: str, fill) -> None:
    """Write a text file whole or not at all (a temporary file renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=".allocview-", suffix=os.path.splitext(path)[1],
                               dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
