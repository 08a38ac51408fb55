"""One command surface: every command the two front ends share takes the
same arguments in gdb and on the command line and gives the same JSON on
the same stop of the fixture guest; gdb's own conventions (help, settings,
completion, a bare `alloc`)."""

import json
import re
import subprocess
import sys

import pytest

from allocview.commands import commands_for

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
ALLOCVIEW = [sys.executable, "-m", "allocview.cli"]

# Every shared command with arguments worth holding equal; {page}: a free
# block's address, {early}: a dump of an earlier stop, {trace}: a trace file.
CASES = [
    "areas", "lists", "lists 2", "lists LOW 0 --limit 3", "check",
    "check --code unmerged-buddies", "check --area LOWEST --from 0x400000 --to 0x800000 --limit 2",
    "stats", "why 0", "why 2 --area LOWEST", "why 1 --fresh --align 3", "why 0 --flags 0x4",
    "map", "map LOW --from 0x2000000 --to 0x2400000 --rows 2", "report", "report --area 2",
    "page {page}", "diff {early}", "replay {trace} --start {early} --against {early}",
    "owner {owned} --trace {owners}", "live --trace {owners} --limit 1",
]
NO_JSON = {"save", "drive"}        # save writes a file (compared below); drive writes the guest


def av(*args):
    r = subprocess.run(ALLOCVIEW + [str(a) for a in args], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    return r


def test_every_shared_command_is_covered_here():
    shared = {c.name for c in commands_for("gdb")} & {c.name for c in commands_for("cli")}
    covered = {c.split()[0] for c in CASES} | NO_JSON
    assert shared == covered, shared ^ covered


def test_same_json_from_gdb_and_the_cli_on_the_same_stop(make_guest, tmp_path):
    g = make_guest("x86_64-2021")
    gdb = g.stop_at_checkpoint(2)
    early = g.dump_guest_memory(tmp_path / "early.elf")
    gdb.run_to_checkpoint(3)
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    now = g.dump_guest_memory(tmp_path / "now.elf")
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"trace": 1, "arch": "x86_64", "format": "2021"}) + "\n")
    why = json.loads(gdb.cli("alloc why 0 --json"))
    # a trace whose calls were made from real code (callers named through DWARF)
    owners = tmp_path / "owners.jsonl"
    code = gdb.print_int("(unsigned long)&workload_run")
    owners.write_text("\n".join(json.dumps(x) for x in [
        {"trace": 1, "arch": "x86_64", "format": "2021", "page_size": 4096, "callers": True},
        {"i": 0, "func": "alloc_pages_flags", "args": [1, 0], "result": why["block"],
         "ra": code + 16},
        {"i": 1, "func": "free_pages", "args": [why["block"]], "result": None, "ra": code + 32},
        {"i": 2, "func": "alloc_pages_flags", "args": [0, 0], "result": why["block"],
         "ra": code + 48}]) + "\n")
    values = {"page": hex(why["block"] + 8), "early": early, "trace": trace,
              "owned": hex(why["block"] + 8), "owners": owners}
    for case in CASES:
        words = case.format(**values)
        out = tmp_path / "gdb.json"
        gdb.cli(f"alloc {words} --json {out}")
        from_gdb = json.loads(out.read_text())
        r = av("--dump", now, "--elf", g.elf, *words.split(), "--json")
        assert r.returncode in (0, 1), (case, r.stderr)
        from_cli = json.loads(r.stdout)
        if case.startswith("replay"):
            from_gdb.pop("seconds"), from_cli.pop("seconds")
        assert from_gdb == from_cli, case
        assert from_cli not in ([], {}) or case.startswith(("check", "diff")), case
    # save: both write the state that reports the same
    gdb.cli(f"alloc save {tmp_path}/gdb.elf")
    assert av("--dump", now, "--elf", g.elf, "save", tmp_path / "cli.elf").returncode == 0
    reports = [json.loads(av("--dump", tmp_path / f"{n}.elf", "--elf", g.elf, "report",
                             "--json").stdout) for n in ("gdb", "cli")]
    assert reports[0] == reports[1] and reports[0]["areas"]


def test_same_arguments_in_gdb_and_the_cli(make_guest):
    """The usage gdb's help shows is the CLI's, word for word."""
    g = make_guest("x86_64-2021")
    gdb = g.gdb
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    for cmd in commands_for("gdb"):
        text = gdb.cli(f"help alloc {cmd.name}")
        first = text.splitlines()[0]
        assert first == cmd.summary and len(first) <= 80, first
        if cmd.only:
            continue
        usage = re.search(r"usage: (.*?)\n\n", text, re.S).group(1)
        cli = av(cmd.name, "--help").stdout
        cli_usage = re.search(r"usage: (.*?)\n\n", cli, re.S).group(1)
        assert " ".join(usage.split()).replace("alloc ", "", 1) == \
            " ".join(cli_usage.split()).replace("allocview ", "", 1), cmd.name


def test_gdb_conventions(make_guest, tmp_path):
    g = make_guest("x86_64-2021")
    gdb = g.stop_at_checkpoint(2)
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    # a bare `alloc` lists the subcommands, one short line each
    listing = gdb.cli("alloc")
    for cmd in commands_for("gdb"):
        assert f"alloc {cmd.name} -- {cmd.summary}" in listing
    with pytest.raises(Exception, match='Undefined alloc command: "nosuch"'):
        gdb.cli("alloc nosuch")
    # settings are parameters
    assert "is auto" in gdb.cli("show alloc color")
    gdb.cli("set alloc color off")
    assert "is off." in gdb.cli("show alloc color")
    gdb.cli("set alloc color on")
    assert "\x1b[" in gdb.cli("alloc stats")
    gdb.cli("set alloc color off")
    assert "\x1b[" not in gdb.cli("alloc stats")
    # completion per argument position
    def complete(line):
        return gdb.cli(f"complete {line}").split("\n")
    assert {"alloc lists 2", "alloc lists 3", "alloc lists LOW", "alloc lists LOWEST"} <= \
        set(complete("alloc lists "))
    assert "alloc lists 2 10" in complete("alloc lists 2 1")           # then an order
    assert complete("alloc check --co") == ["alloc check --code", ""] or \
        "alloc check --code" in complete("alloc check --co")
    assert "alloc check --code unmerged-buddies" in complete("alloc check --code unm")
    assert "alloc trace start" in complete("alloc trace st")
    assert "alloc check-each alloc_pages_flags" in complete("alloc check-each alloc_pages_f") or \
        any(c.startswith("alloc check-each alloc_pages") for c in complete("alloc check-each alloc_p"))
    # a large JSON document is never paged to the terminal: it goes to a file
    gdb.cli(f"cd {tmp_path}")
    gdb.python("from allocview.gdbext import frontend; frontend.BIG_JSON = 1000")
    said = gdb.cli("alloc report --json")
    assert "written to alloc-report.json" in said and len(said) < 200, said
    assert json.loads((tmp_path / "alloc-report.json").read_text())["areas"]
    gdb.python("from allocview.gdbext import frontend; frontend.BIG_JSON = 1 << 20")
    # areas by number or name everywhere
    assert json.loads(gdb.cli("alloc lists LOW --json")) == \
        json.loads(gdb.cli("alloc lists 2 --json"))
