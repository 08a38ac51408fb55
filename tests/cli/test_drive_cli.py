"""`allocview drive --gdb`: the same drive through gdb/MI."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def allocview(*args):
    return subprocess.run([sys.executable, "-m", "allocview.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_drive_over_mi_healthy_and_defect(make_guest, tmp_path):
    for variant, diverges in (("i386-2021", False), ("x86_64-2021-nomerge", True)):
        g = make_guest(variant)
        g.stop_at_checkpoint(1)
        g.gdb.disconnect()
        target = f"127.0.0.1:{g.gdb_port}"
        r = allocview("--gdb", target, "--elf", g.elf, "drive", "--ops", "5")
        assert r.returncode == 2 and "--yes" in r.stderr
        r = allocview("--gdb", target, "--elf", g.elf, "drive", "--ops", "400", "--yes",
                      "--json", "--out", tmp_path / variant)
        doc = json.loads(r.stdout)
        assert r.returncode == (1 if diverges else 0), r.stderr
        if diverges:
            assert 1 <= len(doc["divergence"]["shrunk"]) <= 6
            assert Path(doc["divergence"]["files"][0]).exists()
        else:
            assert doc["divergence"] is None and doc["ops"] == 400
        # the start state is back
        again = allocview("--gdb", target, "--elf", g.elf, "check", "--json")
        assert again.returncode == 0, again.stderr


def test_drive_over_mi_recovers_from_dead_calls(make_guest, tmp_path):
    """Through gdb/MI too: the call that aborts stops at abort() and is
    unwound, the call that hangs is interrupted, and both are named by
    where the guest was, as in gdb."""
    g = make_guest("x86_64-2021-multi")
    g.stop_at_checkpoint(2)
    g.gdb.disconnect()
    r = allocview("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "drive", "--ops", "400",
                  "--seed", "4", "--yes", "--json", "--console", g.console_path,
                  "--out", tmp_path / "m")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    sigs = {d["signature"] for d in doc["defects"]}
    assert {"abort:reserve", "hang:cpu_relax"} <= sigs, sigs
    again = allocview("--gdb", f"127.0.0.1:{g.gdb_port}", "--elf", g.elf, "check", "--json")
    assert again.returncode == 0, again.stderr
