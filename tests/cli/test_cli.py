"""`allocview`, the standalone client, against the fixture guest: the same
JSON report from every source, the guest's run state kept, and bad inputs
ending in exit 2 with one line."""

import json
import socket
import subprocess
import threading
import time

import pytest

from .helpers import ALLOCVIEW, ROOT, av, one_line_error  # noqa: F401

VARIANTS = ["x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020"]


@pytest.mark.parametrize("variant,checkpoint", [(v, 2) for v in VARIANTS] + [("x86_64-2021", 5)])
def test_json_report_is_identical_from_every_source(guest_with_sources, variant, checkpoint,
                                                    tmp_path):
    g, sock = guest_with_sources(variant, checkpoint)
    gdb = g.gdb
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    ref = tmp_path / "gdb.json"
    gdb.cli(f"alloc report --json {ref}")
    want = json.loads(ref.read_text())
    elf = g.elf
    docs = {}
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    docs["dump"] = av("--dump", dump, "--elf", elf, "report", "--json")
    ram = int(g.memory.rstrip("M")) << 20
    raw = g.pmemsave(0, ram, tmp_path / "ram.raw")
    docs["raw"] = av("--dump", raw, "--base", "0", "--elf", elf, "report", "--json")
    docs["memfile"] = av("--memfile", g.mem_path, "--elf", elf, "report", "--json")
    docs["qmp"] = av("--qmp", sock, "--elf", elf, "report", "--json")
    docs["qmp-pmemsave"] = av("--qmp", sock, "--pmemsave", "--elf", elf, "report", "--json")
    gdb.disconnect()                       # the stub takes one client; the guest stays paused
    docs["gdb"] = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", elf, "report", "--json")
    docs["gdb-stub-only"] = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--stub-only", "--elf", elf,
                               "report", "--json")
    for name, r in docs.items():
        assert r.returncode == 0, (name, r.stderr)
        assert json.loads(r.stdout) == want, name
    assert g.query_status() != "running"


def test_running_guest_stays_running_and_paused_stays_paused(make_guest, tmp_path):
    sock = tmp_path / "av.sock"
    g = make_guest("x86_64-2021", paused=False,
                   qemu_args=["-qmp", f"unix:{sock},server=on,wait=off"])
    g.wait_checkpoint(5)
    assert g.query_status() == "running"
    av("--qmp", sock, "--elf", g.elf, "check", check_code=0)
    assert g.query_status() == "running"
    g.qmp.cmd("stop")
    av("--qmp", sock, "--elf", g.elf, "areas", check_code=0)
    assert g.query_status() == "paused"


def test_watch_keeps_one_connection_and_pauses_only_to_read(make_guest, tmp_path):
    """A running guest under `watch --qmp`: refreshes keep coming, the
    guest runs between them (seen through the harness's own QMP socket)
    and still runs after."""
    sock = tmp_path / "av.sock"
    g = make_guest("x86_64-2021", paused=False,
                   qemu_args=["-qmp", f"unix:{sock},server=on,wait=off"])
    g.wait_checkpoint(5)
    proc = subprocess.Popen(ALLOCVIEW + ["--qmp", str(sock), "--elf", str(g.elf), "watch",
                                         "--count", "3", "--interval", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen = []
    while proc.poll() is None:
        seen.append(g.query_status())
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.count("allocview watch:") == 3 and "guest paused only while reading" in out
    assert "read from QEMU's memory in" in out or "read from pmemsave in" in out
    assert seen.count("running") > len(seen) // 2, seen
    assert g.query_status() == "running"


def test_check_exit_codes_follow_findings(make_guest, tmp_path):
    g = make_guest("x86_64-2021-nomerge")
    g.stop_at_checkpoint(2)
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    r = av("--dump", dump, "--elf", g.elf, "check", check_code=1)
    assert "unmerged-buddies" in r.stdout
    found = json.loads(av("--dump", dump, "--elf", g.elf, "check", "--json").stdout)
    assert {f["code"] for f in found if f["severity"] == "error"} == {"unmerged-buddies"}


def test_every_command_on_a_dump(make_guest, tmp_path):
    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(3)
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    base = ["--dump", dump, "--elf", g.elf]
    assert "LOWEST" in av(*base, "areas", check_code=0).stdout
    lists = av(*base, "lists", "2", check_code=0).stdout
    assert "free lists from head.next" in lists and "back at the head" in lists
    # areas by name as well as slot number, everywhere
    assert json.loads(av(*base, "lists", "LOW", "--json", check_code=0).stdout).keys() == \
        json.loads(av(*base, "lists", "2", "--json", check_code=0).stdout).keys() == {"2"}
    stats = json.loads(av(*base, "stats", "--json", check_code=0).stdout)
    assert {s["name"] for s in stats} == {"LOW", "LOWEST"}
    why = json.loads(av(*base, "why", "2", "--area", "LOWEST", "--json", check_code=0).stdout)
    assert why["ok"] and why["slot"] == 3
    page = json.loads(av(*base, "page", hex(why["block"]), "--json", check_code=0).stdout)
    assert page["block"] == why["block"] and page["list"] is not None
    assert "legend:" in av(*base, "map", check_code=0).stdout
    av(*base, "map", "--svg", tmp_path / "m.svg", "--html", tmp_path / "m.html", check_code=0)
    av(*base, "report", "--html", tmp_path / "r.html", check_code=0)
    assert (tmp_path / "r.html").read_text().lower().startswith("<!doctype html")
    assert (tmp_path / "m.svg").read_text().startswith("<svg") and "<rect" in (tmp_path / "m.svg").read_text()
    saved = tmp_path / "saved.elf"
    av(*base, "save", saved, check_code=0)
    assert saved.stat().st_size < dump.stat().st_size // 10
    assert json.loads(av("--dump", saved, "--elf", g.elf, "report", "--json").stdout) == \
        json.loads(av(*base, "report", "--json").stdout)
    gdb = g.gdb
    gdb.run_to_checkpoint(4)
    later = g.dump_guest_memory(tmp_path / "later.elf")
    changes = json.loads(av("--elf", g.elf, "diff", saved, later, "--json", check_code=0).stdout)
    assert changes and {c["kind"] for c in changes} & {"allocated", "split"}


def not_qmp_server(path):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def serve():
        try:
            conn, _ = srv.accept()
            conn.sendall(b"hello, I am not QMP\n")
            time.sleep(10)
        except OSError:
            pass
    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_bad_inputs_exit_2_with_one_line(tmp_path, guest_build):
    elf = ROOT / "tests/guest/build/x86_64-2021/guest.elf"
    i386 = ROOT / "tests/guest/build/i386-2021/guest.elf"
    assert "does-not-exist" in one_line_error(av("--qmp", tmp_path / "does-not-exist", "--elf",
                                                 elf, "report"))
    srv = not_qmp_server(tmp_path / "notqmp.sock")
    t = time.monotonic()
    one_line_error(av("--qmp", tmp_path / "notqmp.sock", "--elf", elf, "report"))
    assert time.monotonic() - t < 30
    srv.close()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a dump" * 10)
    assert "junk.bin" in one_line_error(av("--dump", junk, "--elf", elf, "check"))
    trunc = tmp_path / "trunc.elf"
    trunc.write_bytes(elf.read_bytes()[:40])
    one_line_error(av("--dump", trunc, "--elf", elf, "check"))
    one_line_error(av("--dump", junk, "--elf", i386, "--arch", "x86_64", "check"))
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["strip", "-o", stripped, elf], check=True)
    one_line_error(av("--dump", junk, "--base", "0", "--elf", stripped, "check"))
    one_line_error(av("--dump", junk, "--base", "0", "check"))
    r = av("report")
    assert r.returncode == 2
    # a read-path flag without the source it belongs to
    assert "--pmemsave" in one_line_error(av("--dump", junk, "--base", "0", "--pmemsave",
                                             "--elf", elf, "check"))
    assert "--stub-only" in one_line_error(av("--qmp", tmp_path / "x.sock", "--stub-only",
                                              "--elf", elf, "check"))


def test_an_unwritable_output_file_is_one_line(make_guest, tmp_path):
    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(1)
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    base = ["--dump", dump, "--elf", g.elf]
    line = one_line_error(av(*base, "map", "--svg", tmp_path / "no/such/dir/m.svg"))
    assert "No such file or directory" in line
    one_line_error(av(*base, "save", tmp_path / "no/such/dir/s.elf"))
    gdb = g.gdb
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    with pytest.raises(Exception, match=r"allocview: .*No such file or directory"):
        gdb.cli(f"alloc report --json {tmp_path}/no/such/dir/r.json")
    assert gdb.print_int("2 + 2") == 4


def test_gdb_leaves_a_running_guest_running_and_a_paused_one_paused(guest_with_sources):
    """Attaching gdb stops the guest; --gdb asks QEMU's QMP (found on its
    command line) before attaching, and resumes only a guest that ran."""
    g, _sock = guest_with_sources("x86_64-2021", 2)
    g.gdb.disconnect()                                  # stopped at checkpoint 2
    assert g.query_status() != "running"
    r = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "check", check_code=0)
    assert "the guest was left paused (QMP " in r.stderr and "said it was paused" in r.stderr
    assert g.query_status() != "running"
    g.qmp.cmd("cont")
    assert g.query_status() == "running"
    r = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "check", check_code=0)
    assert "the guest was resumed (QMP " in r.stderr and "said it was running" in r.stderr
    assert g.query_status() == "running"
    r = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "--no-resume", "check",
           check_code=0)
    assert "the guest was" not in r.stderr and g.query_status() != "running"
    av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "--resume", "areas", check_code=0)
    assert g.query_status() == "running"


def test_cli_conventions():
    """--version, python -m allocview, one-line usage errors, the source
    options described once, every option with help."""
    import sys as _sys
    r = subprocess.run([_sys.executable, "-m", "allocview", "--version"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("allocview ")
    r = av("check", "--nosuch")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--help" in r.stderr
    top = av("--help").stdout
    assert "--dump FILE" in top and "--gdb HOST:PORT" in top
    for name in ("check", "lists", "drive", "suite", "replay"):
        sub = av(name, "--help").stdout
        assert "dump-guest-memory" not in sub and "allocview sources" in sub, name
    assert "--dump FILE" in av("sources").stdout
    # every option has help; a default, when there is one, is shown
    import argparse

    from allocview.cli import build_parser
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            default = action.default
            if default not in (None, False, [], argparse.SUPPRESS) and \
                    not isinstance(action, argparse._StoreTrueAction):
                assert "default" in action.help, (name, action.dest)


def test_narrowing_filters_exactly(make_guest, tmp_path):
    """check/report --code, --area, --from/--to keep exactly the findings
    they name; --limit folds the text, --all shows it whole."""
    g = make_guest("x86_64-2021-nomerge", ops=400)
    g.stop_at_checkpoint(3)
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    base = ["--dump", dump, "--elf", g.elf]
    every = json.loads(av(*base, "check", "--json").stdout)
    codes = {f["code"] for f in every}
    assert "unmerged-buddies" in codes and len(every) > 3
    for code in codes:
        got = json.loads(av(*base, "check", "--code", code, "--json").stdout)
        assert got == [f for f in every if f["code"] == code]
    slots = {f["slot"] for f in every if f["slot"] is not None}
    for slot in slots:
        got = json.loads(av(*base, "check", "--area", str(slot), "--json").stdout)
        assert got == [f for f in every if f["slot"] == slot]
    addrs = sorted(f["address"] for f in every if f["address"] is not None)
    lo, hi = addrs[len(addrs) // 3], addrs[2 * len(addrs) // 3]
    got = json.loads(av(*base, "check", "--from", hex(lo), "--to", hex(hi), "--json").stdout)
    assert got == [f for f in every if f["address"] is not None
                   and f.get("last", f["address"]) >= lo and f["address"] < hi]
    report = json.loads(av(*base, "report", "--code", "unmerged-buddies", "--json").stdout)
    assert report["findings"] == [f for f in every if f["code"] == "unmerged-buddies"]
    many = [c for c in codes if sum(f["code"] == c for f in every) > 1]
    assert many
    text = av(*base, "check", "--code", many[0], "--limit", "1").stdout
    assert "more (--all" in text
    assert "more (--all" not in av(*base, "check", "--code", many[0], "--all").stdout
