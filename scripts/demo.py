"""scripts/demo's body: boot the fixture guest, run allocview on it."""

import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Guest  # noqa: E402


def run(*args: str) -> int:
    cmd = [sys.executable, "-m", "allocview.cli", *args]
    print(f"\n$ allocview {' '.join(args)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main() -> int:
    variant = sys.argv[1] if len(sys.argv) > 1 else "x86_64-2021"
    with tempfile.TemporaryDirectory(prefix="allocview-demo-") as tmp:
        sock = f"{tmp}/qmp.sock"
        print(f"Booting the fixture guest ({variant}, 256 MiB) to its fragmented checkpoint 3 ...")
        with Guest(variant, memory="256M", paused=False,
                   qemu_args=["-qmp", f"unix:{sock},server=on,wait=off"]) as g:
            g.stop_at_checkpoint(3)
            g.gdb.disconnect()                 # leave the guest paused at checkpoint 3
            elf = str(g.elf)
            codes = [run("--qmp", sock, "--elf", elf, "report"),
                     run("--qmp", sock, "--elf", elf, "map", "--rows", "4"),
                     run("--qmp", sock, "--elf", elf, "why", "6"),
                     run("--qmp", sock, "--elf", elf, "why", "0", "--area", "LOWEST")]
            dump = g.dump_guest_memory(f"{tmp}/core.elf")
            codes.append(run("--dump", str(dump), "--elf", elf, "check"))
        print("\nGuest shut down.")
    return 0 if all(c == 0 for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
