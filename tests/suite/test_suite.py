"""`allocview suite REPORT_DIR` over the reports of real allocview-qemu runs:
the table, the JSON and JUnit XML that a JUnit reader takes."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from harness import Variant

from .helpers import ROOT, Workdir, guest_args, leftovers

RUNS = {  # test name: (variant, guest command line, extra env)
    "healthy": ("x86_64-2021", "seed=1 exit=1", {}),
    "nomerge": ("x86_64-2021-nomerge", "seed=1 exit=1", {}),
    "aborts": ("i386-2021", "seed=2 exit=1 mode=abort", {}),
    "nogdb": ("x86_64-2021", "seed=1 exit=1", {"ALLOCVIEW_GDB": "/nonexistent"}),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory, guest_build):
    w = Workdir(tmp_path_factory.mktemp("suite"))
    for name, (variant, append, env) in RUNS.items():
        r = w.run(w.wrapper, guest_args(Variant.parse(variant), append, w.marker),
                  env=w.env(ALLOCVIEW_TEST_NAME=name, **env))
        assert r.status is not None
    (w.reports / "notes.json").write_text('{"not": "a report"}')
    assert leftovers(w.marker) == []
    return w.reports


def suite(*args):
    return subprocess.run([sys.executable, "-m", "allocview.suite", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_table_has_one_row_per_test(reports):
    r = suite(reports, "--no-color")
    assert r.returncode == 1, r.stderr          # a test has error findings
    assert r.stderr.strip() == ('allocview: notes.json: not an allocview-qemu report '
                                '(no "test" object)')
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["test", "status", "ended", "findings", "free", "pages",
                                "largest", "block"]
    rows = {ln.split()[0]: ln for ln in lines[2:6]}
    assert list(rows) == ["aborts", "healthy", "nogdb", "nomerge"]
    assert rows["healthy"].split()[1:4] == ["1", "exit(0)", "none"]
    assert rows["aborts"].split()[1:4] == ["129", "abort", "none"]
    assert "unmerged-buddies" in rows["nomerge"]
    assert "no check: gdb not found (/nonexistent)" in rows["nogdb"]
    assert lines[6] == "4 tests: 3 checked, 1 with errors, 1 not checked"


def test_the_json_has_rows_and_totals(reports):
    r = suite(reports, "--json")
    doc = json.loads(r.stdout)
    assert doc["totals"] == {"tests": 4, "checked": 3, "with_errors": 1, "not_checked": 1}
    rows = {row["test"]: row for row in doc["tests"]}
    healthy = json.loads((reports / "healthy.json").read_text())
    assert rows["healthy"]["free_pages"] == sum(
        a["pages"]["free"] + a["pages"]["fresh"] for a in healthy["areas"] if "pages" in a)
    assert rows["healthy"]["largest_bytes"] == 4096 << rows["healthy"]["largest_order"]
    assert rows["nomerge"]["errors"] == rows["nomerge"]["findings"]["unmerged-buddies"] > 0
    assert rows["nogdb"]["checked"] is False and rows["nogdb"]["free_pages"] is None
    assert rows["aborts"]["status"] == rows["aborts"]["qemu_status"] == 129


def test_junit_xml_has_what_a_junit_reader_requires(reports, tmp_path):
    out = tmp_path / "junit.xml"
    r = suite(reports, "--junit", out)
    assert r.returncode == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    s = suites[0]
    for attr in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert attr in s.attrib, attr
    assert (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) == \
        ("4", "1", "0", "1")
    cases = {c.get("name"): c for c in s.findall("testcase")}
    assert sorted(cases) == ["aborts", "healthy", "nogdb", "nomerge"]
    for c in cases.values():
        assert c.get("classname") == "allocview" and float(c.get("time")) >= 0
        props = {p.get("name"): p.get("value") for p in c.find("properties")}
        assert "ended" in props and "qemu_status" in props
        assert c.find("system-out").text.startswith(f"allocview: {c.get('name')}: ")
    fail = cases["nomerge"].find("failure")
    assert fail is not None and fail.get("type") == "unmerged-buddies"
    assert fail.get("message").endswith("error findings: unmerged-buddies "
                                        + fail.get("message").split()[0])
    assert fail.text.startswith("error: unmerged-buddies (area ")
    assert cases["nogdb"].find("skipped").get("message") == \
        "no check: gdb not found (/nonexistent)"
    for name in ("healthy", "aborts"):
        assert cases[name].find("failure") is None and cases[name].find("skipped") is None


def test_no_reports_is_exit_2(tmp_path):
    r = suite(tmp_path / "nowhere")
    assert r.returncode == 2 and r.stderr.startswith("allocview: ") and "no such" in r.stderr
    r = suite(tmp_path)
    assert r.returncode == 2 and "no allocview-qemu reports" in r.stderr


def test_every_real_report_is_valid_against_the_shipped_schema(reports):
    from allocview.schema import report_problem
    docs = [json.loads(p.read_text()) for p in sorted(reports.glob("*.json"))
            if p.name != "notes.json"]
    assert len(docs) == 4 and all(report_problem(d) is None for d in docs), \
        [report_problem(d) for d in docs]


def test_a_malformed_report_is_one_line_and_control_characters_make_valid_xml(reports, tmp_path):
    import shutil
    d = tmp_path / "r"
    shutil.copytree(reports, d)
    good = json.loads((d / "healthy.json").read_text())
    broken = dict(good, test={k: v for k, v in good["test"].items() if k != "name"})
    (d / "broken.json").write_text(json.dumps(broken))
    wrong = dict(good, findings=[{"code": "x", "severity": "fatal", "slot": None,
                                  "address": None, "message": "m"}])
    (d / "wrong.json").write_text(json.dumps(wrong))
    noisy = dict(good)
    noisy["test"] = dict(good["test"], name="noisy", ended="exit(0) \x1b[31m\x00\x07 \ufffe")
    noisy["findings"] = [{"code": "bad-byte", "severity": "error", "slot": 2, "address": 4096,
                          "message": "console said \x01\x02\x1b[0m"}]
    (d / "noisy.json").write_text(json.dumps(noisy))
    junit = tmp_path / "j.xml"
    r = suite(d, "--no-color", "--junit", junit)
    assert "Traceback" not in r.stderr
    lines = sorted(r.stderr.strip().splitlines())
    assert lines[0].startswith("allocview: broken.json: not a valid allocview report (test: "
                               "'name' is a required property")
    assert lines[2].startswith("allocview: wrong.json: not a valid allocview report "
                               "(findings.0.severity: 'fatal' is not one of")
    root = ET.fromstring(junit.read_bytes())              # well-formed XML
    case = next(c for c in root.iter("testcase") if c.get("name") == "noisy")
    assert "\\x1b[31m\\x00\\x07" in case.find("properties/property[@name='ended']").get("value")
    assert "console said \\x01\\x02" in case.find("failure").text


def test_suite_html_links_the_pages_the_wrapper_left(reports):
    """`allocview suite DIR --html DIR/index.html`: the nomerge test (error
    findings) left its own page and state beside its JSON; the index links
    the page."""
    assert (reports / "nomerge.html").exists() and (reports / "nomerge.elf").exists()
    assert not (reports / "healthy.html").exists()
    index = reports / "index.html"
    r = suite(reports, "--html", index)
    assert r.returncode == 1, r.stderr
    assert 'href="nomerge.html"' in index.read_text()
