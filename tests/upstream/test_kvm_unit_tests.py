"""allocview on a real kvm-unit-tests build (never committed, never built
here): set KUT_DIR to an x86_64 tree built with ./configure && make.

    KUT_DIR=/path/to/kvm-unit-tests scripts/test tests/upstream

Skipped when KUT_DIR is not set (CI has no upstream tree).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUT = os.environ.get("KUT_DIR")
pytestmark = pytest.mark.skipif(not KUT, reason="KUT_DIR names no kvm-unit-tests build")

# What upstream trees are known to break (ALLOCATOR.md's design vs their
# code): master's coalesce() compares the whole byte with the order, so it
# never merges FREE blocks; both trees leave reserved pages on list 0.
KNOWN_UPSTREAM = {"unmerged-buddies", "list-node-not-free", "max-order-low",
                  "max-order-unreached", "area-slot-range"}


def test_sieve_end_state_decodes_and_checks(tmp_path):
    from harness.qemu import free_port
    tree = Path(KUT)
    flat, elf = tree / "x86/sieve.flat", tree / "x86/sieve.elf"
    assert flat.exists() and elf.exists(), f"{KUT} has no built x86/sieve"
    port = free_port()
    accel = "tcg"             # a gdb stub under nested KVM may never see the breakpoint
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "--no-reboot", "-nodefaults", "-device", "pc-testdev",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-display", "none",
         "-serial", f"file:{tmp_path}/console", "-machine", f"accel={accel}", "-m", "256M",
         "-kernel", str(flat), "-gdb", f"tcp:127.0.0.1:{port}", "-S"])
    try:
        out = tmp_path / "gdb.json"
        gdb = subprocess.run(["gdb", "-nx", "--batch", "-ex", f"file {elf}",
                            "-ex", "set architecture i386:x86-64",
                            "-ex", f"target remote 127.0.0.1:{port}",
                            "-ex", f"source {ROOT}/gdbext/alloc.py", "-ex", "hbreak exit",
                            "-ex", "continue", "-ex", f"alloc report --json {out}",
                            "-ex", f"alloc save {tmp_path}/end.elf", "-ex", "kill"],
                           capture_output=True, text=True, timeout=900)
        assert out.exists(), gdb.stdout[-2000:] + gdb.stderr[-2000:]
        doc = json.loads(out.read_text())
    finally:
        qemu.kill()
        qemu.wait()
    symbols = subprocess.run(["nm", elf], capture_output=True, text=True).stdout
    assert doc["format"] == ("2021" if " alloc_pages_flags" in symbols else "2020")
    assert doc["areas"] and all("pages" in a for a in doc["areas"])
    codes = {f["code"] for f in doc["findings"]}
    assert codes <= KNOWN_UPSTREAM, codes
    cli = subprocess.run([sys.executable, "-m", "allocview.cli", "--dump", f"{tmp_path}/end.elf",
                          "--elf", str(elf), "report", "--json"], capture_output=True, text=True,
                         cwd=ROOT)
    assert json.loads(cli.stdout) == doc
    assert shutil.which("gdb")
