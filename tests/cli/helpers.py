"""Running `allocview` as a user does, for the CLI tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOCVIEW = [sys.executable, "-m", "allocview.cli"]


def av(*args, check_code=None):
    r = subprocess.run(ALLOCVIEW + [str(a) for a in args], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    if check_code is not None:
        assert r.returncode == check_code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


def one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("allocview: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]
