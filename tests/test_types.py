"""`mypy` over model/ (settings in pyproject.toml): the decoded state and the
reference allocator stay typed; CI runs it with the tests."""

import subprocess
import sys

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_mypy_model_is_clean():
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert r.returncode == 0 and not errors, "\n".join(errors or [r.stdout, r.stderr])
