"""`pip install` of the wheel built here gives the whole tool: the CLI, the
QEMU wrapper and the gdb extension, nothing under a generic top-level
name; gdb sources the extension the documented way (`allocview gdb-init`)
and `alloc check` works on the fixture guest, from outside the checkout."""

import subprocess
import sys
import venv

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          **kw)


def test_the_wheel_installs_the_whole_tool(make_guest, tmp_path):
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ROOT, "-w",
                tmp_path / "dist")
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("allocview-*.whl"))
    venv.create(tmp_path / "v", with_pip=True)
    py, bindir = tmp_path / "v/bin/python", tmp_path / "v/bin"
    installed = run(py, "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr[-2000:]
    # nothing outside the allocview package (and its metadata and scripts)
    files = run(py, "-m", "pip", "show", "-f", "allocview").stdout.split("Files:")[1].split()
    tops = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert tops == {"allocview", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert any(f == "allocview/gdbext/alloc.py" for f in files)
    assert any(f.startswith("allocview/model/") for f in files)
    for script in ("allocview", "allocview-qemu"):
        assert (bindir / script).exists(), script
    assert run(bindir / "allocview", "--version").stdout.startswith("allocview 0.")
    line = run(bindir / "allocview", "gdb-init", cwd=tmp_path).stdout.strip()
    assert line.startswith("source ") and str(tmp_path / "v") in line, line

    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(2)
    g.gdb.disconnect()                       # the stub takes one client; the guest stays paused
    out = run("gdb", "-nx", "-batch", g.elf, "-ex", f"target remote 127.0.0.1:{g.gdb_port}",
              "-ex", line, "-ex", "alloc check",
              "-ex", "python import allocview; print('from', allocview.__file__)",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no findings" in out.stdout, out.stdout + out.stderr
    assert f"from {tmp_path / 'v'}" in out.stdout         # the installed copy, not the checkout
    assert "Traceback" not in out.stderr
