"""Side by side: traces recorded in gdb replay into the model; drive finds
the deliberate defects and shrinks them; healthy guests never diverge."""

import json
import re
import time
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def allocview(*args):
    return subprocess.run([sys.executable, "-m", "allocview.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def sourced(gdb):
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    return gdb


@pytest.mark.parametrize("variant", ["x86_64-2021", "i386-2020"])
def test_trace_of_the_workload_replays_without_divergence(make_guest, variant, tmp_path):
    g = make_guest(variant, ops=300)
    gdb = sourced(g.gdb)                      # attached at boot: the trace starts before init
    trace = tmp_path / "t.jsonl"
    t0 = time.monotonic()
    gdb.cli(f"alloc trace start {trace} --snapshot-every 100")
    time.sleep(1.5)                           # the user at the prompt: not guest time
    gdb.run_to_checkpoint(5, timeout=300)
    stopped = gdb.cli("alloc trace stop")
    wall = time.monotonic() - t0
    m = re.search(r"calls recorded .*\(the guest ran ([\d.]+) s: (\d+) calls/s of guest time",
                  stopped)
    assert m and float(m.group(1)) <= wall - 1.4, (stopped, wall)
    lines = [json.loads(x) for x in trace.read_text().splitlines()]
    calls = [x for x in lines if "func" in x]
    assert calls[0]["func"] == "page_alloc_init_area" and len(calls) > 300
    assert any("after" in x for x in lines)
    end = tmp_path / "end.elf"
    gdb.cli(f"alloc save {end}")
    r = allocview("--elf", g.elf, "replay", trace, "--against", end, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["divergence"] is None and doc["calls"] == len(calls) and doc["compared"] >= 2

    # the same trace against a corrupted end state: replay reports it
    from allocview.model.inject import inject
    from allocview.model.reference import Allocator
    from allocview.model.snapshot import decode
    from allocview.sources import open_source
    from allocview.symbols import load_program
    from allocview.dumpwrite import write_elf_dump
    from allocview.model.memory import CachedMemory
    prog = load_program(str(g.elf))
    with open_source(dump=str(end)) as src:
        mem = CachedMemory(src, record=True)
        snap = decode(mem, prog.layout, prog.symbols["areas"], prog.symbols["areas_mask"])
        image = dict(mem.ranges())
    al = Allocator.from_state(snap.layout, list(snap.state()), snap.areas_mask,
                              areas_addr=snap.areas_addr, mask_addr=snap.mask_addr)
    log = []
    planted = inject(al, "bad-byte", log)
    assert planted is not None
    bad = tmp_path / "bad.elf"
    segments = sorted(image.items())
    patched = []
    for addr, data in segments:
        buf = bytearray(data)
        for waddr, _old, new in log:
            lo, hi = max(addr, waddr), min(addr + len(buf), waddr + len(new))
            if lo < hi:
                buf[lo - addr:hi - addr] = new[lo - waddr:hi - waddr]
        patched.append((addr, bytes(buf)))
    write_elf_dump(str(bad), patched, arch=prog.arch, partial=True)
    r = allocview("--elf", g.elf, "replay", trace, "--against", bad, "--json")
    assert r.returncode == 1
    div = json.loads(r.stdout)["divergence"]
    assert div["call"] is None and {d["kind"] for d in div["differences"]} & {"metadata", "list-set"}


# both pointer sizes and formats; tests/arches drives every other arch
def test_drive_5000_operations_of_each_mix_on_a_healthy_guest(make_guest, tmp_path):
    from allocview.model.mixes import MIXES
    g = make_guest("x86_64-2021")
    gdb = sourced(g.stop_at_checkpoint(2))
    before = gdb.cli("alloc report --json")
    for mix in MIXES:
        out = gdb.cli(f"alloc drive --ops 5000 --seed 7 --mix {mix} --yes --json "
                      f"--out {tmp_path}/d", timeout=900)
        doc = json.loads(out[out.index("{"):])
        assert doc["defects"] == [] and doc["ops"] >= 5000, (mix, doc["defects"][:1])
        assert doc["calls"] > 0.6 * doc["ops"]
    assert gdb.cli("alloc report --json") == before      # start state restored


def test_drive_2000_operations_on_a_healthy_2020_guest(make_guest, tmp_path):
    g = make_guest("i386-2020")
    gdb = sourced(g.stop_at_checkpoint(2))
    before = gdb.cli("alloc report --json")
    out = gdb.cli(f"alloc drive --ops 2000 --seed 7 --yes --out {tmp_path}/d", timeout=600)
    assert "no divergence" in out, out
    assert "2000 operations" in out
    assert gdb.cli("alloc report --json") == before


def drive_json(gdb, args: str) -> dict:
    out = gdb.cli(f"alloc drive --yes --json {args}", timeout=900)
    return json.loads(out[out.index("{"):])


def replays_to_its_last_call(g, jsonl) -> dict:
    """The reproducer, replayed from its start state, departs at its last call."""
    r = allocview("--elf", g.elf, "replay", jsonl, "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    div = json.loads(r.stdout)["divergence"]
    calls = [ln for ln in Path(jsonl).read_text().splitlines() if '"func"' in ln]
    assert div["call"] is not None and div["call"]["i"] == len(calls) - 1, div
    return div


@pytest.mark.parametrize("variant,signature", [("x86_64-2021-nomerge", "metadata:free->free"),
                                               ("x86_64-2021-splitend", "list-order")])
def test_drive_finds_and_shrinks_the_defect(make_guest, variant, signature, tmp_path):
    g = make_guest(variant)
    gdb = sourced(g.stop_at_checkpoint(1))
    doc = drive_json(gdb, f"--ops 500 --seed 3 --out {tmp_path}/d")
    assert [d["signature"] for d in doc["defects"]] == [signature]   # one defect, once
    d = doc["defects"][0]
    assert d["hits"] >= 1 and d["reproduced"] and 1 <= len(d["shrunk"]) <= 6
    c = Path(d["files"][2]).read_text()
    assert "allocview_repro" in c and c.count(";") >= len(d["shrunk"])
    jsonl = d["files"][0]
    assert jsonl == f"{tmp_path}/d-1.jsonl"
    div = replays_to_its_last_call(g, jsonl)
    kinds = {x["kind"] for x in div["differences"]}
    assert kinds & ({"list-order"} if signature == "list-order" else {"metadata", "list-set"})
    relaxed = allocview("--elf", g.elf, "replay", jsonl, "--mode", "relaxed")
    known = tmp_path / "known"
    known.write_text("list-order  # the defect we accept\nlist-set\nmetadata\nmax_order\n")
    accepted = allocview("--elf", g.elf, "replay", jsonl, "--known", known)
    assert accepted.returncode == 0, accepted.stdout
    if signature == "list-order":
        assert relaxed.returncode == 0, relaxed.stdout
    first = drive_json(gdb, f"--ops 500 --seed 3 --first --out {tmp_path}/f")
    assert len(first["defects"]) == 1 and first["ops"] == first["divergence"]["after_op"] + 1
    assert Path(f"{tmp_path}/f.jsonl").exists()


MULTI = {"metadata:free->reserved", "result:memalign_pages_flags", "hang:cpu_relax",
         "abort:reserve"}


def test_drive_lists_every_defect_of_the_multi_build_once(make_guest, tmp_path):
    """Four independent defects, two of which kill the guest inside a call
    (a FRESH order-3 allocation spins with the lock held; a reserve of 11
    pages aborts with it held): one run lists each once, recovers from the
    dead calls and finds defects after each, and every minimal sequence,
    replayed from its start state, shows its defect."""
    g = make_guest("x86_64-2021-multi")
    gdb = sourced(g.stop_at_checkpoint(2))
    before = gdb.cli("alloc report --json")
    doc = drive_json(gdb, f"--ops 1500 --seed 4 --out {tmp_path}/m --console {g.console_path}")
    by = {d["signature"]: d for d in doc["defects"]}
    assert set(by) == MULTI and len(doc["defects"]) == 4, list(by)
    for dead in ("hang:cpu_relax", "abort:reserve"):
        assert any(d["first"]["after_op"] > by[dead]["first"]["after_op"]
                   for d in doc["defects"]), dead         # found after it died
    assert "bug: reserve of 11 pages" in by["abort:reserve"]["first"]["console"]
    assert by["hang:cpu_relax"]["first"]["call"]["args"][0] == 3
    assert doc["recoveries"] >= 2 and doc["recovery_s"] < 5
    for sig, d in by.items():
        assert d["reproduced"] and len(d["shrunk"]) <= 4, (sig, d["shrunk_c"])
        if sig.split(":")[0] in ("hang", "abort"):
            r = allocview("--elf", g.elf, "replay", d["files"][0], "--json")
            assert r.returncode == 1
            div = json.loads(r.stdout)["divergence"]
            assert div["differences"][0]["kind"] == "died"
            assert div["call"]["i"] == len(d["shrunk"]) - 1
        else:
            replays_to_its_last_call(g, d["files"][0])
    assert gdb.cli("alloc report --json") == before      # lock and allocator restored
    assert gdb.print_int("'alloc_page.c'::lock.v") == 0


def test_drive_asks_as_gdb_does_and_a_hanging_call_is_reported(make_guest, tmp_path):
    """`set confirm on` in a script: refused (nobody to ask), never
    answered for the user; `set confirm off`, the user's choice: it runs."""
    g = make_guest("x86_64-2021")
    gdb = sourced(g.stop_at_checkpoint(1))
    gdb.cli("set confirm on")
    with pytest.raises(Exception, match="pass --yes, or `set confirm off`"):
        gdb.cli("alloc drive --ops 5")
    gdb.cli("set confirm off")
    assert "no divergence" in gdb.cli(f"alloc drive --ops 5 --out {tmp_path}/d", timeout=120)
    out = gdb.python(
        "from allocview.gdbext.drive import GdbGuest\n"
        "from allocview.model.drive import GuestCallError\n"
        "import allocview.model.trace as t\n"
        "t.SIGNATURES['idle'] = ((), False)\n"
        "try:\n"
        "    with GdbGuest(timeout=2) as guest:\n"
        "        guest.call('idle', ())\n"
        "except GuestCallError as e:\n"
        "    print('CAUGHT', e)\n"
        "del t.SIGNATURES['idle']\n", timeout=60)
    assert "CAUGHT idle() did not return in 2 s" in out, out
    assert "no findings" in gdb.cli("alloc check") or "info" in gdb.cli("alloc check")
    assert gdb.print_int("1 + 1") == 2


def test_drive_refuses_a_broken_state_before_asking(make_guest):
    """The refusal comes first: no question is put for a drive that cannot run."""
    g = make_guest("x86_64-2021-nomerge", ops=400)
    gdb = sourced(g.stop_at_checkpoint(2))
    assert "unmerged-buddies" in gdb.cli("alloc check")
    gdb.cli("set confirm on")
    with pytest.raises(Exception, match="already breaks the design") as e:
        gdb.cli("alloc drive --ops 5")              # no --yes, and not asked either
    assert "pass --yes" not in str(e.value)


def test_ctrl_c_in_drive_says_the_start_state_was_restored(make_guest, tmp_path):
    """A Ctrl-C that reaches gdb while the target runs a call goes to the
    target; one that lands as the call returns is lost (gdb's remote
    protocol: the stub is already stopped), so the user presses it again:
    SIGINT every 5 s until the command ends."""
    import os
    import signal
    import threading

    from harness.gdb import GdbError

    g = make_guest("x86_64-2021")
    gdb = sourced(g.stop_at_checkpoint(2))
    before = gdb.cli("alloc report --json")
    done = threading.Event()

    def press():
        delay = 1.5
        while not done.wait(delay):
            os.kill(gdb.proc.pid, signal.SIGINT)
            delay = 5.0
    presser = threading.Thread(target=press)
    presser.start()
    try:
        with pytest.raises(GdbError) as e:
            gdb.cli(f"alloc drive --ops 100000 --yes --no-shrink --out {tmp_path}/d",
                    timeout=120)
    finally:
        done.set()
        presser.join()
    assert "drive interrupted; the allocator's start state was restored" in str(e.value), \
        str(e.value)
    assert "signaled" not in str(e.value)
    assert gdb.cli("alloc report --json") == before
    assert gdb.print_int("1 + 1") == 2


@pytest.mark.parametrize("variant", ["x86_64-2021", "x86_64-2021-nomerge",
                                     "x86_64-2021-splitend"])
def test_replay_names_the_call_that_departed(make_guest, variant, tmp_path):
    """Each call's footprint (the bytes the design says it writes, read back
    from the guest) is in the trace: replay names the first call whose
    bytes are not the model's, the first free that should have merged,
    not the end of the trace."""
    from harness.replay import first_merging_call

    defect = variant.rsplit("-", 1)[1] if variant.count("-") == 2 else None
    g = make_guest(variant, ops=2000)
    gdb = sourced(g.stop_at_checkpoint(1))
    trace = tmp_path / "t.jsonl"
    assert "footprint" in gdb.cli(f"alloc trace start {trace}")
    gdb.run_to_checkpoint(2, timeout=300)
    gdb.cli("alloc trace stop")
    end = tmp_path / "end.elf"
    gdb.cli(f"alloc save {end}")
    calls = [json.loads(x) for x in trace.read_text().splitlines()[1:]]
    # every call has its footprint while the model can follow the guest
    # (past a departure the model may refuse a call the guest took)
    upto = first_merging_call(g) + 1 if defect == "nomerge" else 1 if defect else len(calls)
    assert calls and all("w" in c for c in calls[:upto])
    r = allocview("--elf", g.elf, "replay", trace, "--against", end, "--json")
    doc = json.loads(r.stdout)
    if not defect:
        assert r.returncode == 0 and doc["divergence"] is None, doc
        assert doc["footprints"] == doc["calls"] == len(calls)
        return
    assert r.returncode == 1, doc
    div = doc["divergence"]
    assert div["index"] < len(calls) - 1 and div["call"] is not None, (div, len(calls))
    if defect == "nomerge":            # the first free after which the design merged
        assert div["index"] == first_merging_call(g)
        assert div["call"]["func"] in ("free_pages", "unreserve_pages")
    else:                              # a call that split a block the wrong way round
        assert div["call"]["func"].startswith(("alloc", "memalign", "reserve"))
    assert {d["kind"] for d in div["differences"]} & {"metadata", "list-order"}
    assert "footprint" in div["differences"][0]["detail"]
