"""Every feature on every fixture arch beyond x86 (which keeps its fuller
suite): s390x (big-endian), aarch64 and riscv64 (relocatable), ppc64
(big-endian, 64 KiB pages, relocatable). Each test names the feature."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import NEW_ARCHES, Variant
from harness.replay import replay
from allocview.model.check import check
from allocview.model.placement import Placement
from allocview.model.report import report
from allocview.model.snapshot import decode

ROOT = Path(__file__).resolve().parents[2]
ALLOCVIEW = [sys.executable, "-m", "allocview.cli"]


def av(*args, code=None, timeout=300):
    r = subprocess.run(ALLOCVIEW + [str(a) for a in args], capture_output=True, text=True,
                       cwd=ROOT, timeout=timeout)
    if code is not None:
        assert r.returncode == code, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    return r


def sourced(gdb):
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    return gdb


def placement_of(v: Variant) -> Placement:
    """Where allocview must say the fixture program is."""
    if v.relocatable:
        return Placement(v.load_offset, True, f"loaded at {v.load_offset:#x} (the arch's usual "
                                              f"load address; its code is there)")
    return Placement(0, True, "at its link addresses")


def model_report(g, n: int) -> dict:
    al = replay(g, n).allocator
    snap = decode(al.memory, al.layout, al.areas_addr, al.mask_addr)
    return report(snap, check(snap), placement_of(g.variant))


@pytest.fixture
def guest_with_sources(make_guest, tmp_path):
    def start(variant, checkpoint, **kw):
        sock = tmp_path / "av.sock"
        g = make_guest(variant, shared_memory=True,
                       qemu_args=["-qmp", f"unix:{sock},server=on,wait=off"], **kw)
        g.stop_at_checkpoint(checkpoint)
        return g, sock
    return start


@pytest.mark.parametrize("arch", NEW_ARCHES)
def test_the_report_from_every_source_is_the_models(guest_with_sources, arch, tmp_path):
    g, sock = guest_with_sources(f"{arch}-2021", 2)
    want = model_report(g, 2)
    gdb = sourced(g.gdb)
    out = tmp_path / "gdb.json"
    gdb.cli(f"alloc report --json {out}")
    docs = {"gdb": json.loads(out.read_text())}
    elf = g.elf
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    runs = {"dump": ["--dump", dump],
            "memfile": ["--memfile", g.mem_path, "--qmp", sock],
            "qmp": ["--qmp", sock], "qmp-pmemsave": ["--qmp", sock, "--pmemsave"]}
    for name, src in runs.items():
        docs[name] = json.loads(av(*src, "--elf", elf, "report", "--json", code=0).stdout)
    gdb.disconnect()
    docs["gdb-mi"] = json.loads(av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", elf,
                                   "--no-resume", "report", "--json", code=0).stdout)
    for name, doc in docs.items():
        assert doc == want, name
    assert want["arch"] == arch and want["page_size"] == g.variant.page_size


@pytest.mark.parametrize("arch", NEW_ARCHES)
def test_every_gdb_command(guest_at, arch):
    g = guest_at(f"{arch}-2021", 3)
    gdb = sourced(g.gdb)
    pc = gdb.print_int("$pc")
    al = replay(g, 3).allocator
    slot = next(a.slot for a in al.areas if a)
    name = al.layout.slot(slot).name
    areas = gdb.cli("alloc areas")
    assert name in areas and f"arch {arch}" in areas and "format 2021" in areas
    assert not [f for f in json.loads(gdb.cli("alloc check --json")) if f["severity"] == "error"]
    assert re.search(rf"area {slot} {name}: \d+ free of \d+ pages", gdb.cli("alloc stats"))
    assert "free lists from head.next" in gdb.cli("alloc lists")
    assert "S" in gdb.cli("alloc map")                     # reserved pages at checkpoint 3
    assert "yes, from area" in gdb.cli("alloc why 0")
    k, node = next((k, n) for k in range(al.layout.nlists) for n in al.freelist(slot, k))
    page = gdb.cli(f"alloc page {node:#x} + 5")
    assert f"block {node:#x}, order {k}" in page and "on list" in page
    assert int(gdb.cli(f"print $alloc_order({node:#x})").split("=")[1]) == k
    assert "vmalloc" in gdb.cli("alloc vmalloc vm_ptrs[0]")
    assert "region(s) allocated" in gdb.cli("alloc phys")
    gdb.cli("alloc snapshot here")
    assert "no change between here and now" in gdb.cli("alloc diff here")
    assert gdb.print_int("$pc") == pc and g.query_status() != "running"


@pytest.mark.parametrize("arch", NEW_ARCHES)
def test_trace_then_replay_healthy_and_defect(make_guest, arch, tmp_path):
    for variant, diverges in ((f"{arch}-2021", False), (f"{arch}-2021-nomerge", True)):
        g = make_guest(variant, ops=300)
        gdb = sourced(g.gdb)                    # attached at boot: before init
        trace = tmp_path / f"{variant}.jsonl"
        gdb.cli(f"alloc trace start {trace}")
        gdb.run_to_checkpoint(5, timeout=300)
        assert "calls recorded" in gdb.cli("alloc trace stop")
        end = tmp_path / f"{variant}.end.elf"
        gdb.cli(f"alloc save {end}")
        calls = [json.loads(x) for x in trace.read_text().splitlines()[1:]]
        assert calls[0]["func"] == "page_alloc_init_area" and len(calls) > 300
        r = av("--elf", g.elf, "replay", trace, "--against", end, "--json",
               code=1 if diverges else 0)
        div = json.loads(r.stdout)["divergence"]
        # the defect build departs from the design (where it shows first:
        # a result, or the end state)
        assert (div is not None) == diverges, div
        g.close()


@pytest.mark.parametrize("arch", NEW_ARCHES)
def test_drive_2000_operations_on_a_healthy_guest(make_guest, arch, tmp_path):
    g = make_guest(f"{arch}-2021")
    gdb = sourced(g.stop_at_checkpoint(2))
    before = gdb.cli("alloc report --json")
    out = gdb.cli(f"alloc drive --ops 2000 --seed 7 --yes --out {tmp_path}/d", timeout=900)
    assert "2000 operations" in out and "no divergence" in out, out
    assert gdb.cli("alloc report --json") == before


@pytest.mark.parametrize("arch", NEW_ARCHES)
def test_check_each_stops_at_the_first_bad_call(make_guest, arch):
    from harness.replay import first_merging_call
    g = make_guest(f"{arch}-2021-nomerge", ops=2000)
    gdb = sourced(g.stop_at_checkpoint(1))
    gdb.cli("alloc check-each")
    gdb.cont(timeout=300)
    status = gdb.cli("alloc check-each status")
    m = re.search(r"call #(\d+) (\w+)\(", status)
    assert m and "unmerged-buddies" in status, status
    assert int(m.group(1)) == first_merging_call(g)
    assert re.search(rf"^0x[0-9a-f]+ in {m.group(2)} \(\) at \S*alloc_page\.c:\d+$", status, re.M)


@pytest.mark.parametrize("arch", ["aarch64", "riscv64", "ppc64"])
def test_a_relocatable_test_is_found_unaided(make_guest, arch, tmp_path):
    """gdb with the ELF as linked (what `gdb arm/sieve.elf` gives): reads at
    the right addresses and prints the command that moves gdb's symbols;
    the CLI finds the offset in a dump; a wrong --load-offset is a clear
    refusal, not a crash."""
    v = Variant.parse(f"{arch}-2021")
    g = make_guest(v)
    g.stop_at_checkpoint(2)
    dump = g.dump_guest_memory(tmp_path / "core.elf")
    g.gdb.disconnect()
    cmds = ["set pagination off", f"file {g.elf}", f"target remote 127.0.0.1:{g.gdb_port}",
            f"source {ROOT}/gdbext/alloc.py", "alloc check", "alloc trace start /tmp/x.jsonl"]
    r = subprocess.run([v.gdb, "-batch", "-nx"] + sum((["-ex", c] for c in cmds), []),
                       capture_output=True, text=True, timeout=120)
    cmd = f"symbol-file -o {v.load_offset:#x} {g.elf}"
    assert f"`{cmd}` moves them" in r.stdout and "no findings" in r.stdout, r.stdout + r.stderr
    assert "alloc trace needs gdb's symbols where the guest has guest.elf" in r.stderr
    doc = json.loads(av("--dump", dump, "--elf", g.elf, "report", "--json", code=0).stdout)
    assert doc["program"]["load_offset"] == v.load_offset
    assert not [f for f in doc["findings"] if f["severity"] == "error"]
    wrong = av("--dump", dump, "--elf", g.elf, "--load-offset", hex(v.load_offset + 0x10000),
               "check")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "--load-offset" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1, \
        wrong.stderr


def test_drive_recovers_from_dead_calls_on_s390x(make_guest, tmp_path):
    """The multi-defect build on a big-endian arch with its own gdb: a call
    that aborts stops at abort() and one that spins is interrupted; both are
    unwound, the allocator and its lock restored, and drive goes on."""
    g = make_guest("s390x-2021-multi")
    gdb = sourced(g.stop_at_checkpoint(2))
    before = gdb.cli("alloc report --json")
    out = gdb.cli(f"alloc drive --ops 300 --seed 4 --mix reserve --yes --json "
                  f"--console {g.console_path} --out {tmp_path}/m", timeout=900)
    doc = json.loads(out[out.index("{"):])
    kinds = [d["signature"].split(":")[0] for d in doc["defects"]]
    assert sorted(set(kinds)) == sorted(kinds), kinds          # each defect once
    assert "abort" in kinds and "hang" in kinds, kinds
    abort = next(d for d in doc["defects"] if d["kind"] == "abort")
    assert "bug: reserve of 11 pages" in abort["first"]["console"]
    assert all(d["reproduced"] for d in doc["defects"])
    assert max(d["last_op"] for d in doc["defects"]) > abort["first"]["after_op"]
    assert gdb.cli("alloc report --json") == before


def test_drive_over_mi_calls_a_relocated_program_where_the_guest_has_it(make_guest, tmp_path):
    """allocview's own gdb gets its symbols moved where the guest has the
    program (else every call jumps to the ELF's address and takes the
    guest down, which drive would report as the guest's defect)."""
    g = make_guest("aarch64-2021")
    g.stop_at_checkpoint(2)
    g.gdb.disconnect()
    r = av("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "drive", "--ops", "200",
           "--yes", "--json", "--out", tmp_path / "d", code=0)
    doc = json.loads(r.stdout)
    assert doc["defects"] == [] and doc["calls"] > 100


def test_callable_copy_of_a_dyn_elf_with_entry_zero(tmp_path):
    """kvm-unit-tests links arm64, riscv64 and ppc64 tests as DYN with entry
    0, where gdb knows no entry point and can call nothing: the copy
    differs in e_type only."""
    from elftools.construct import Container
    from elftools.elf.elffile import ELFFile

    from allocview.symbols import needs_callable_copy, write_callable_copy
    src = Variant.parse("aarch64-2021").dir() / "guest.elf"
    assert not needs_callable_copy(str(src))             # the fixture has entry 0x40
    data = bytearray(src.read_bytes())
    with open(src, "rb") as f:                           # the same ELF with entry 0
        elf = ELFFile(f)
        h = Container(**elf.header)
        h.e_ident = Container(**elf.header.e_ident)
        h["e_entry"] = 0
        raw = elf.structs.Elf_Ehdr.build(h)
    data[:len(raw)] = raw
    dyn = tmp_path / "dyn.elf"
    dyn.write_bytes(bytes(data))
    assert needs_callable_copy(str(dyn))
    r = av("--elf", dyn, "callable-elf", tmp_path / "copy.elf", code=0)
    assert "symbol-file -o" in r.stdout
    copy = (tmp_path / "copy.elf").read_bytes()
    assert [i for i in range(len(copy)) if copy[i] != data[i]] == [16]
    with open(tmp_path / "copy.elf", "rb") as f:
        assert ELFFile(f).header["e_type"] == "ET_EXEC"
    av("--elf", src, "callable-elf", tmp_path / "no.elf", code=2)
