"""`allocview suite REPORT_DIR`: every test that allocview-qemu reported on,
in one table (or JSON, or JUnit XML for CI).

    allocview suite reports [--json] [--junit FILE] [--no-color]

Exit status: 0 no test has error findings, 1 some test has, 2 no reports
(no such directory, nothing readable in it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
import xml.etree.ElementTree as ET

from . import render
from .schema import report_problem
from .wrapper.results import report_facts

__all__ = ["add_arguments", "run", "main", "load_reports", "suite_rows", "junit_xml"]

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("report_dir", metavar="REPORT_DIR",
                   help="ALLOCVIEW_REPORT_DIR of an allocview-qemu run")
    p.add_argument("--json", action="store_true", help="the rows and totals as JSON on stdout")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase a test)")
    p.add_argument("--no-color", action="store_true", help="plain text")


# ---------------------------------------------------------------- reading
def load_reports(report_dir: str) -> tuple[list[dict], list[str]]:
    """The per-test report documents (sorted by test name) and one line per
    file that is not one."""
    docs, bad = [], []
    for name in sorted(os.listdir(report_dir)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(report_dir, name)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            bad.append(f"{name}: not readable JSON ({e})")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("test"), dict):
            bad.append(f"{name}: not an allocview-qemu report (no \"test\" object)")
            continue
        problem = report_problem(doc)
        if problem is not None:
            bad.append(f"{name}: not a valid allocview report ({problem[:200]})")
            continue
        docs.append(doc)
    docs.sort(key=lambda d: str(d["test"].get("name")))
    return docs, bad


def suite_rows(docs: list[dict]) -> list[dict]:
    """One flat row per test: what the table, the JSON and JUnit show."""
    rows = []
    for doc in docs:
        t, facts = doc["test"], report_facts(doc)
        rows.append({"test": t.get("name"), "status": t.get("status"),
                     "qemu_status": t.get("qemu_status"), "ended": t.get("ended"),
                     "checked": bool(t.get("checked")), "findings": facts["by_code"],
                     "serious": facts["serious_by_code"],
                     "errors": facts["by_severity"].get("error", 0),
                     "warnings": facts["by_severity"].get("warning", 0),
                     "free_pages": facts["free_pages"], "largest_order": facts["largest_order"],
                     "largest_bytes": facts["largest_bytes"], "wall_time": t.get("wall_time")})
    return rows


def totals(rows: list[dict]) -> dict:
    return {"tests": len(rows), "checked": sum(r["checked"] for r in rows),
            "with_errors": sum(1 for r in rows if r["errors"]),
            "not_checked": sum(1 for r in rows if not r["checked"])}


# --------------------------------------------------------------- rendering
def _findings_cell(r: dict) -> str | tuple[str, str]:
    if not r["checked"]:
        return "-"
    if not r["serious"]:                  # info findings are normal states
        return ("none", "green")
    text = ", ".join(f"{c} {n}" for c, n in sorted(r["serious"].items()))
    return (text, "bold red") if r["errors"] else (text, "yellow")


def suite_view(rows: list[dict]) -> render.Doc:
    t = render.Table(["test", "status", "ended", "findings", "free pages", "largest block"],
                     right={1, 4})
    for r in rows:
        ended = r["ended"] or "?"
        if len(ended) > 64:           # the report has it whole
            ended = ended[:63] + "…"
        largest = "-" if r["largest_order"] is None else \
            f"order {r['largest_order']} ({render.human_size(r['largest_bytes'])})"
        t.add(str(r["test"]), str(r["status"]),
              (ended, "yellow") if ended.startswith("no check") else ended,
              _findings_cell(r), "-" if r["free_pages"] is None else str(r["free_pages"]),
              largest)
    s = totals(rows)
    doc = render.Doc().table(t)
    doc.line(f"{s['tests']} tests: {s['checked']} checked, {s['with_errors']} with errors, "
             f"{s['not_checked']} not checked")
    return doc


def _finding_text(f: dict) -> str:
    where = "" if f.get("slot") is None else f" (area {f['slot']})"
    addr = "" if f.get("address") is None else f" at {f['address']:#x}"
    return f"{f.get('severity')}: {f.get('code')}{where}{addr}: {f.get('message')}"


def junit_xml(docs: list[dict]) -> bytes:
    """JUnit XML: one testsuite "allocview", one testcase per test; error
    findings are <failure>s, a test without a check is <skipped>; the
    "test" object goes in <properties>, the summary and every finding in
    <system-out>."""
    from .wrapper.results import summary_line

    rows = suite_rows(docs)
    s = totals(rows)
    wall = sum(r["wall_time"] or 0 for r in rows)
    counts = {"tests": str(s["tests"]), "failures": str(s["with_errors"]), "errors": "0",
              "skipped": str(s["not_checked"]), "time": f"{wall:.3f}"}
    root = ET.Element("testsuites", name="allocview", **counts)
    suite = ET.SubElement(root, "testsuite", name="allocview", **counts,
                          timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname())
    for doc, r in zip(docs, rows):
        t = doc["test"]
        case = ET.SubElement(suite, "testcase", name=str(r["test"]), classname="allocview",
                             time=f"{r['wall_time'] or 0:.3f}")
        props = ET.SubElement(case, "properties")
        for k in ("ended", "status", "qemu_status", "kernel", "elf", "qemu", "check_time"):
            if t.get(k) is not None:
                ET.SubElement(props, "property", name=k, value=str(t[k]))
        findings = doc.get("findings") or []
        errors = [f for f in findings if f.get("severity") == "error"]
        if errors:
            counts: dict[str, int] = {}
            for f in errors:
                counts[f.get("code", "?")] = counts.get(f.get("code", "?"), 0) + 1
            codes = ", ".join(f"{c} {n}" for c, n in sorted(counts.items()))
            fail = ET.SubElement(case, "failure", type=errors[0].get("code", "error"),
                                 message=f"{len(errors)} error findings: {codes}")
            fail.text = "\n".join(_finding_text(f) for f in errors[:200])
        elif not r["checked"]:
            ET.SubElement(case, "skipped", message=str(r["ended"]))
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join([summary_line(doc)] + [_finding_text(f) for f in findings[:1000]])
    _xml_safe(root)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# Characters XML 1.0 does not allow, whatever the escaping: a test's
# console or a finding may carry any byte.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(root: ET.Element) -> None:
    """Every text and attribute value with characters XML cannot hold
    written as \\xNN / \\uNNNN instead."""
    def clean(s: str) -> str:
        return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], s)
    for el in root.iter():
        if el.text:
            el.text = clean(el.text)
        for k, v in el.attrib.items():
            el.attrib[k] = clean(v)


# ---------------------------------------------------------------- command
def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.report_dir):
        print(f"allocview: {args.report_dir}: no such report directory", file=sys.stderr)
        return EXIT_CANNOT
    docs, bad = load_reports(args.report_dir)
    for line in bad:
        print(f"allocview: {line}", file=sys.stderr)
    if not docs:
        print(f"allocview: {args.report_dir}: no allocview-qemu reports", file=sys.stderr)
        return EXIT_CANNOT
    rows = suite_rows(docs)
    if args.junit:
        with open(args.junit, "wb") as f:
            f.write(junit_xml(docs))
    if args.json:
        sys.stdout.write(json.dumps({"tests": rows, "totals": totals(rows)}, indent=1) + "\n")
    else:
        color = not args.no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        sys.stdout.write(render.to_text(suite_view(rows), color=color, width=_width()))
    return EXIT_FINDINGS if any(r["errors"] for r in rows) else EXIT_OK


def _width() -> int:
    try:
        return max(60, min(os.get_terminal_size().columns, 200))
    except OSError:
        return 120


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="allocview suite", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        print(f"allocview: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_CANNOT


run_suite = run

if __name__ == "__main__":
    sys.exit(main())
