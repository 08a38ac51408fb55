"""Who owns a page, on the fixture workload traced from boot: `owner` names
the source line that allocated a block and the one that freed it (found by
searching workload.c's text, never by a line number written here), and
`live` at a checkpoint lists exactly the blocks the decoded allocator holds
allocated and reserved. x86_64, and aarch64: relocatable, so the callers'
addresses must be moved back to the ELF's before the DWARF lookup."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from allocview.model.owner import Owners
from allocview.model.trace import read_trace

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = ROOT / "tests" / "guest" / "workload.c"


def line_of(marker: str) -> int:
    """The one line of workload.c holding `marker`."""
    found = [n for n, text in enumerate(WORKLOAD.read_text().splitlines(), 1) if marker in text]
    assert len(found) == 1, (marker, found)
    return found[0]


def allocview(*args):
    return subprocess.run([sys.executable, "-m", "allocview.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


# the allocator's blocks at this stop, decoded in gdb: (start, end, kind)
HELD = """
import json
from allocview.gdbext.context import current
snap = current()
ps, out = snap.layout.page_size, []
for a in snap.areas:
    if not a.decoded:
        continue
    i = 0
    while i < len(a.metadata):
        b = a.metadata[i]
        start = snap.virt(a.base + i)
        if b & 0xC0 == 0x80:
            out.append((start, start + (ps << (b & 0x3F)), "allocated"))
            i += 1 << (b & 0x3F)
            continue
        if b == 0xC0:
            out.append((start, start + ps, "reserved"))
        i += 1
print("HELD", json.dumps(out))
"""


@pytest.mark.parametrize("variant", ["x86_64-2021", "aarch64-2021"])
def test_owner_names_the_source_line_and_live_is_the_allocators(make_guest, variant, tmp_path):
    g = make_guest(variant, ops=300)
    gdb = g.gdb                                # attached at boot: the trace sees every call
    gdb.cli(f"source {ROOT}/gdbext/alloc.py")
    trace = tmp_path / "t.jsonl"
    gdb.cli(f"alloc trace start {trace} --no-footprint")
    gdb.run_to_checkpoint(3, timeout=120)
    # while the trace runs: gdb answers from it, no --trace needed
    live = json.loads(gdb.cli("alloc live --json"))
    assert live["callers"] and live["from_boot"] and not live["notes"], live
    assert live["load_offset"] == g.variant.load_offset

    # live: exactly the blocks the allocator holds now (reserved pages one by one)
    out = gdb.python(HELD)
    held = sorted(tuple(x) for x in json.loads(out.split("HELD ", 1)[1]))
    blocks = [b for s in live["sites"] for b in s["list"]]
    traced = sorted((b["start"], b["end"], b["kind"]) for b in blocks if b["kind"] == "allocated")
    traced += [(p, p + g.variant.page_size, "reserved") for b in blocks if b["kind"] == "reserved"
               for p in range(b["start"], b["end"], g.variant.page_size)]
    assert sorted(traced) == held and len(held) > 20
    assert [s["bytes"] for s in live["sites"]] == sorted((s["bytes"] for s in live["sites"]),
                                                         reverse=True)

    # owner of a block memalign gave: the line in workload.c that called it
    site = next(s for s in live["sites"] if s["caller"][0]["function"] == "wl_memalign")
    block = site["list"][0]
    got = json.loads(gdb.cli(f"alloc owner {block['start'] + 8:#x} --json"))
    call = got["block"]["call"]
    assert call["func"] == "memalign_pages_flags" and call["result"] == block["start"]
    caller = call["caller"][0]
    assert Path(caller["file"]).name == "workload.c"
    assert caller["line"] == line_of("p = memalign_pages_flags(alignment, size, flags);")
    assert got["block"]["freed_by"] is None
    # gdb's own DWARF reading agrees on the line (its symbols are at the guest's addresses)
    assert f"Line {caller['line']} of" in gdb.cli(f"info line *{call['ra'] - 1:#x}")
    gdb.cli("alloc trace stop")

    # a block that was freed and never covered again: the free's line too
    calls = read_trace(str(trace)).calls
    owners = Owners(calls, g.variant.page_size)
    freed = next(c.args[0] for c in reversed(calls) if c.func == "free_pages" and c.args[0]
                 and owners.owner(c.args[0]).block.freed_by == c)
    r = allocview("--elf", g.elf, "owner", hex(freed), "--trace", trace, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    made = doc["block"]["call"]
    assert made["caller"][0]["line"] == line_of(
        "p = alloc_pages_flags(order, flags);" if made["func"] == "alloc_pages_flags" else
        "p = memalign_pages_flags(alignment, size, flags);")
    gone = doc["block"]["freed_by"]
    assert gone["func"] == "free_pages" and gone["args"] == [freed]
    assert gone["caller"][0]["line"] == line_of("\tfree_pages(p);")
    assert Path(gone["caller"][0]["file"]).name == "workload.c"
    # the CLI and gdb agree, whole documents
    cli_live = json.loads(allocview("--elf", g.elf, "live", "--trace", trace, "--json").stdout)
    gdb_live = json.loads(gdb.cli(f"alloc live --trace {trace} --json"))
    assert cli_live == gdb_live
    # after `alloc trace stop` the trace just recorded stays the default
    assert json.loads(gdb.cli("alloc live --json")) == gdb_live
    # an address no block held: one line, exit 2
    r = allocview("--elf", g.elf, "owner", "0x10", "--trace", trace)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "0x10 is in no block the trace saw" in r.stderr
