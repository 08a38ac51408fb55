"""allocview-qemu under the real kvm-unit-tests runner, on a tree built
outside this repository and named by KUT_DIR (ALLOCATOR.md, "How to see
the real thing"): `QEMU=allocview-qemu ./run_tests.sh` gives the same
verdicts as plain QEMU and a report per test. Skipped, saying so, when
KUT_DIR is not set."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from .helpers import leftovers

KUT_DIR = os.environ.get("KUT_DIR")
TESTS = ["smap", "setjmp", "tsc"]   # quick under TCG; smap uses the page allocator


def _verdicts(out: str) -> dict[str, str]:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    return {m[2]: m[1] for m in re.finditer(r"^(PASS|FAIL|SKIP) (\S+)", plain, re.M)}


@pytest.mark.skipif(not KUT_DIR, reason="KUT_DIR (a built kvm-unit-tests tree) is not set")
def test_run_tests_sh_gives_the_same_verdicts_with_allocview_qemu(work):
    kut = work.path / "kut"
    shutil.copytree(KUT_DIR, kut, ignore=shutil.ignore_patterns(".git", "*.o", "*.d", "logs"),
                    symlinks=True)
    if not all((kut / "x86" / f"{t}.flat").exists() for t in TESTS):
        pytest.fail(f"KUT_DIR={KUT_DIR} lacks x86/{{{','.join(TESTS)}}}.flat: build it for x86_64")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCVIEW_")}
    env.update(ACCEL="tcg", ALLOCVIEW_GDB=str(work.gdb))

    def run(**extra):
        r = subprocess.run(["./run_tests.sh"] + TESTS, cwd=kut, env={**env, **extra},
                           capture_output=True, text=True, timeout=600)
        return r.returncode, _verdicts(r.stdout)

    plain = run()
    wrapped = run(QEMU=str(work.wrapper), ALLOCVIEW_REPORT_DIR=str(work.reports))
    assert plain[1] == {t: "PASS" for t in TESTS}, plain
    assert wrapped == plain
    # without a report directory too: nothing on stderr turns a PASS to FAIL
    assert run(QEMU=str(work.wrapper)) == plain
    for t in TESTS:
        doc = json.loads((work.reports / f"{t}.json").read_text())
        assert doc["test"]["name"] == t and doc["test"]["qemu_status"] == 1   # runner's TESTNAME
        assert doc["test"]["ended"] == "exit(0)" or doc["test"]["ended"].startswith("no check")
    assert json.loads((work.reports / "smap.json").read_text())["test"]["checked"]
    assert leftovers(work.marker) == []
