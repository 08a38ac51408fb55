"""`allocview suite REPORT_DIR`: every test that allocview-qemu reported on,
in one table (or JSON, or JUnit XML for CI).

    allocview suite reports [--json] [--junit FILE] [--no-color]

Exit status: 0 no test has error findings, 1 some test has, 2 no reports
(no such directory, nothing readable in it).
"""

from __future__ import annotations

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

__all__ = ["run", "main", "load_reports", "suite_rows", "junit_xml", "suite_html"]

EXIT_OK, EXIT_FINDINGS = 0, 1


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
    """JUnit XML: one testsuite "allocview", one testcase per test. A test
    with error findings has one <failure>: the summary of its findings in
    the message, each error finding once in its text; a test without a
    check is <skipped>. The "test" object goes in <properties>; <system-out>
    holds the test's summary line and the findings that are not errors,
    so no finding is written twice. Any text is made valid XML 1.0
    (_xml_safe): tests/suite/test_suite_html.py parses hostile content
    back with junitparser."""
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
        findings = [f for f in doc.get("findings") or [] if isinstance(f, dict)]
        errors = [f for f in findings if f.get("severity") == "error"]
        others = [f for f in findings if f.get("severity") != "error"]
        if errors:
            codes = ", ".join(f"{c} {n}" for c, n in sorted(_by_code(errors).items()))
            fail = ET.SubElement(case, "failure", type=str(errors[0].get("code", "error")),
                                 message=f"{len(errors)} error findings: {codes}")
            fail.text = _finding_lines(errors, JUNIT_FINDINGS)
        elif not r["checked"]:
            ET.SubElement(case, "skipped", message=str(r["ended"]))
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join([summary_line(doc)] + ([_finding_lines(others, JUNIT_FINDINGS)]
                                                     if others else []))
    _xml_safe(root)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# Findings written per test and kind (errors, others): a guest can have
# tens of thousands; the test's JSON report has them all.
JUNIT_FINDINGS = 1000


def _by_code(findings: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        code = str(f.get("code", "?"))
        out[code] = out.get(code, 0) + 1
    return out


def _finding_lines(findings: list[dict], limit: int) -> str:
    lines = [_finding_text(f) for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... {len(findings) - limit} more in the test's JSON report")
    return "\n".join(lines)


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


# ------------------------------------------------------------ the suite page
def suite_html(docs: list[dict], report_dir: str) -> str:
    """The suite's page: one self-contained HTML table, one row per test
    (verdict, how it ended, findings by code, free pages, largest block),
    the test's name linked to <test>.html when that report exists in
    report_dir beside <test>.json. Links are relative: write the page into
    report_dir (`allocview suite DIR --html DIR/index.html`)."""
    from html import escape
    from urllib.parse import quote

    rows = suite_rows(docs)
    s = totals(rows)
    body = []
    for r in rows:
        name = str(r["test"])
        page = f"{name}.html"
        linked = os.path.isfile(os.path.join(report_dir, page)) and os.sep not in name
        cell = f"<a href=\"{escape(quote(page))}\">{escape(name)}</a>" if linked else escape(name)
        verdict, cls = _verdict(r)
        codes = "".join(f"<li><span class=\"{'error' if r['errors'] else 'warning'}\">"
                        f"{escape(str(c))}</span> {n}" for c, n in sorted(r["serious"].items()))
        findings = f"<ul>{codes}</ul>" if codes else ("none" if r["checked"] else "-")
        largest = "-" if r["largest_order"] is None else \
            f"order {r['largest_order']} ({render.human_size(r['largest_bytes'])})"
        free = "-" if r["free_pages"] is None else str(r["free_pages"])
        body.append(f"<tr class={cls}><td class=name>{cell}<td><span class=\"v {cls}\">"
                    f"{verdict}</span><td>{escape(str(r['status']))}<td>{escape(str(r['ended']))}"
                    f"<td>{findings}<td class=n>{free}<td>{largest}")
    summary = (f"{s['tests']} tests: {s['checked']} checked, {s['with_errors']} with errors, "
               f"{s['not_checked']} not checked")
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
            f"<title>allocview suite: {escape(summary)}</title><style>{_SUITE_CSS}</style>"
            f"</head><body><h1>allocview suite</h1><p>{escape(summary)}</p>"
            "<div class=scroll><table><thead><tr><th>test<th>verdict<th>status<th>ended"
            "<th>findings<th>free pages<th>largest block</thead><tbody>"
            + "".join(body) + "</tbody></table></div></body></html>\n")


def _verdict(r: dict) -> tuple[str, str]:
    """(what the row says, its class): errors, warnings, clean, not checked."""
    if not r["checked"]:
        return "not checked", "unchecked"
    if r["errors"]:
        return f"{r['errors']} error{'s' if r['errors'] != 1 else ''}", "error"
    if r["warnings"]:
        return f"{r['warnings']} warning{'s' if r['warnings'] != 1 else ''}", "warning"
    return "clean", "clean"


_SUITE_CSS = (
    ":root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--line:#d6dbe0;--muted:#5b6673;"
    "--error:#c62828;--warning:#a35c00;--clean:#2e7d32;--link:#0b62c4}"
    "@media (prefers-color-scheme:dark){:root{--fg:#e4e9ee;--bg:#0f1318;--line:#2f363e;"
    "--muted:#9aa6b2;--error:#ff7b72;--warning:#e3b341;--clean:#56d364;--link:#6cb0ff}}"
    "body{margin:0 clamp(.6rem,3vw,2rem);background:var(--bg);color:var(--fg);"
    "font:15px/1.45 system-ui,sans-serif}a{color:var(--link)}.scroll{overflow-x:auto}"
    "table{border-collapse:collapse;font-size:.9rem}th,td{text-align:left;vertical-align:top;"
    "padding:.25rem .6rem;border-bottom:1px solid var(--line)}td.n{text-align:right;"
    "font-variant-numeric:tabular-nums}ul{margin:0;padding-left:1rem}.v{font-weight:600}"
    ".error .v,span.error{color:var(--error)}.warning .v,span.warning{color:var(--warning)}"
    ".clean .v{color:var(--clean)}.unchecked .v{color:var(--muted)}")


# ---------------------------------------------------------------- command
def run(report_dir: str, junit: str | None = None, html: str | None = None):
    """`allocview suite`: the table as a commands.Result; JUnit XML and the
    HTML page written when asked."""
    from .commands import CommandError, Result
    if not os.path.isdir(report_dir):
        raise CommandError(f"{report_dir}: no such report directory")
    docs, bad = load_reports(report_dir)
    for line in bad:
        print(f"allocview: {line}", file=sys.stderr)
    if not docs:
        raise CommandError(f"{report_dir}: no allocview-qemu reports")
    rows = suite_rows(docs)
    if junit:
        with open(junit, "wb") as f:
            f.write(junit_xml(docs))
    if html:
        with open(html, "w") as f:
            f.write(suite_html(docs, report_dir))
    return Result({"tests": rows, "totals": totals(rows)}, suite_view(rows),
                  EXIT_FINDINGS if any(r["errors"] for r in rows) else EXIT_OK)


def main(argv: list[str] | None = None) -> int:
    """`python -m allocview.suite ...` is `allocview suite ...`."""
    from .cli import main as cli_main
    return cli_main(["suite", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
