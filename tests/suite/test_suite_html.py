"""The suite's page (allocview.suite.suite_html) and its JUnit XML
(junit_xml), over reports built the way allocview-qemu writes them, from
states of the reference model: every test a row linked to its HTML report,
JUnit that a maintained reader (junitparser) takes, whatever the content."""

from __future__ import annotations

import xml.dom.minidom
from html.parser import HTMLParser
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped

from allocview.htmlreport import report_html
from allocview.suite import junit_xml, load_reports, suite_html
from allocview.wrapper.outcome import Outcome
from allocview.wrapper.results import document, summary_line, write
from harness.browser import chromium, pages
from allocview.model.check import check
from allocview.model.inject import inject, scenario
from allocview.model.layout import layout_for
from allocview.model.report import report
from allocview.model.snapshot import decode
from allocview.model.stats import stats, why

HOSTILE = "ctl \x00\x01\x07\x1b[31m\x7f, surrogate \ud800, non-chars \ufffe\uffff, ]]> <b>&amp;'\""


def checked_state(defect: str | None = None):
    al = scenario(layout_for("x86_64", "2021"))
    if defect:
        assert inject(al, defect) is not None
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr, format="2021")
    return snap, check(snap)


def write_test(report_dir: Path, name: str, state=None, *, html: bool = True,
               ended: str = "exit(0)", status: int = 1) -> dict:
    """A test's report as allocview-qemu leaves it (and its HTML page)."""
    out = Outcome(name, kernel=f"{name}.flat", elf=f"{name}.elf", qemu="qemu-system-x86_64",
                  qemu_status=status, ended=ended, wall_time=1.25, check_time=0.1)
    if state is None:
        out.no_check("gdb not found (/nonexistent)")
    else:
        snap, found = state
        out.report = report(snap, found)
    doc = document(out, status)
    write(str(report_dir), doc, summary_line(doc))
    if html and state is not None:
        snap, found = state
        whys = {k: why(snap, k, None, 0) for k in range(snap.layout.nlists)}
        (report_dir / f"{name}.html").write_text(report_html(snap, found, stats(snap), whys))
    return doc


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    healthy, broken = checked_state(), checked_state("unmerged-buddies")
    write_test(d, "healthy", healthy)
    write_test(d, "nomerge", broken)
    write_test(d, "no html", healthy, html=False)
    write_test(d, "nogdb", None, ended="no check: gdb not found (/nonexistent)")
    write_test(d, "odd #1 <x>&?", broken)
    return d


class Rows(HTMLParser):
    """The suite table's rows: [cells' text], and each row's link."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str | None] = []
        self.in_body = False

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append([])
            self.links.append(None)
        elif tag == "td" and self.in_body:
            self.rows[-1].append("")
        elif tag == "a" and self.in_body:
            self.links[-1] = dict(attrs)["href"]

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.in_body = False

    def handle_data(self, data):
        if self.in_body and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def test_the_suite_page_has_a_row_per_test_linked_to_each_html_report(report_dir):
    docs, bad = load_reports(str(report_dir))
    assert bad == [] and len(docs) == 5
    page = suite_html(docs, str(report_dir))
    (report_dir / "index.html").write_text(page)
    rows = Rows()
    rows.feed(page)
    by_name = {r[0]: (r, link) for r, link in zip(rows.rows, rows.links)}
    assert sorted(by_name) == sorted(["healthy", "nomerge", "no html", "nogdb", "odd #1 <x>&?"])
    for name, (cells, link) in by_name.items():
        has_html = (report_dir / f"{name}.html").is_file()
        assert (link is not None) == has_html, name
        if link:
            from urllib.parse import unquote
            assert (report_dir / unquote(link)).resolve() == (report_dir / f"{name}.html").resolve()
    assert by_name["nomerge"][0][1] == "1 error" and "unmerged-buddies 1" in by_name["nomerge"][0][4]
    # the scenario's max_order is below a non-empty list: a warning, no error
    assert by_name["healthy"][0][1] == "1 warning" and by_name["healthy"][0][4] == "max-order-low 1"
    assert by_name["nogdb"][0][1] == "not checked" and by_name["nogdb"][0][5] == "-"
    healthy = next(d for d in docs if d["test"]["name"] == "healthy")
    free = sum(a["pages"]["free"] + a["pages"]["fresh"] for a in healthy["areas"] if "pages" in a)
    assert by_name["healthy"][0][5] == str(free)
    assert by_name["healthy"][0][6].startswith(f"order {max(a['largest_order'] for a in healthy['areas'] if 'pages' in a)} (")
    assert "<x>" not in page and "odd #1 &lt;x&gt;&amp;?" in page


def test_every_link_of_the_suite_page_opens_its_report_in_a_browser(report_dir):
    docs, _ = load_reports(str(report_dir))
    index = report_dir / "index.html"
    index.write_text(suite_html(docs, str(report_dir)))
    with chromium() as b, pages(b) as load:
        p = load(index)
        links = p.page.eval_on_selector_all("tbody a", "els => els.map(e => e.href)")
        assert len(links) == 3 and p.errors == []
        for href in links:
            p.page.goto(href)
            p.page.wait_for_selector("section.area .map svg rect.c")
            assert p.page.title().startswith("allocview report")
        assert p.errors == [] and p.requests == []


def test_junit_has_one_failure_per_test_with_errors_and_each_finding_once(report_dir):
    docs, _ = load_reports(str(report_dir))
    xml_bytes = junit_xml(docs)
    suites = list(JUnitXml.fromstring(xml_bytes))
    assert len(suites) == 1
    s = suites[0]
    assert (s.tests, s.failures, s.errors, s.skipped) == (5, 2, 0, 1)
    cases = {c.name: c for c in s}
    for name in ("nomerge", "odd #1 <x>&?"):
        c = cases[name]
        assert len(c.result) == 1 and isinstance(c.result[0], Failure)
        f = c.result[0]
        doc = next(d for d in docs if d["test"]["name"] == name)
        errors = [x for x in doc["findings"] if x["severity"] == "error"]
        assert f.message == f"{len(errors)} error findings: unmerged-buddies {len(errors)}"
        assert f.type == "unmerged-buddies"
        lines = f.text.splitlines()
        assert len(lines) == len(errors) and all(x["message"] in f.text for x in errors)
        # the details are not written again in system-out
        assert c.system_out.splitlines()[0] == summary_line(doc)
        assert not any(x["message"] in c.system_out for x in errors)
    healthy = cases["healthy"]
    assert healthy.is_passed and healthy.system_out.splitlines()[0].startswith(
        "allocview: healthy: exit(0)")
    assert healthy.system_out.splitlines()[1].startswith("warning: max-order-low (area ")
    assert len(cases["nogdb"].result) == 1 and isinstance(cases["nogdb"].result[0], Skipped)
    assert cases["nogdb"].result[0].message == "no check: gdb not found (/nonexistent)"


def test_any_content_makes_valid_junit_and_an_escaped_page(report_dir):
    docs, _ = load_reports(str(report_dir))
    bad = [dict(d) for d in docs if d["test"]["name"] == "nomerge"][0]
    bad["test"] = dict(bad["test"], name="noisy " + HOSTILE, ended="exit(0) " + HOSTILE)
    bad["findings"] = [dict(f, message=HOSTILE, code="unmerged-buddies")
                       for f in bad["findings"]] + \
        [{"code": "max-order-low", "severity": "warning", "slot": 2, "address": 4096,
          "message": "warn " + HOSTILE}]
    xml_bytes = junit_xml([bad])
    xml.dom.minidom.parseString(xml_bytes)                     # strictly well formed
    case = next(iter(next(iter(JUnitXml.fromstring(xml_bytes)))))
    assert case.name.startswith("noisy ctl \\x00\\x01\\x07\\x1b[31m")
    assert "\\ud800" in case.name and "\\ufffe\\uffff" in case.name
    assert case.name.endswith("]]> <b>&amp;'\"")              # escaped, and read back as is
    fail = case.result[0]
    assert HOSTILE.replace("\x00", "\\x00")[:5] in fail.text and "]]> <b>&amp;'\"" in fail.text
    assert "warn ctl" in case.system_out and "warn ctl" not in fail.text
    page = suite_html([bad], str(report_dir))
    assert "<b>" not in page and "&lt;b&gt;&amp;amp;" in page
