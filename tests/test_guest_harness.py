"""The harness itself: nothing survives a failing test or a killed test
process, gdb timeouts interrupt the guest, and the figures for the
benchmarks can be taken."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from harness import ARCHES, GdbTimeout, Variant, fixture_args, time_to_checkpoint

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent

TAGGED = '''
import os

def tagged():
    """pids (but ours) whose environment carries our ALLOCVIEW_TAG."""
    want = ("ALLOCVIEW_TAG=" + os.environ["ALLOCVIEW_TAG"]).encode()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
        except OSError:
            continue
        if want in env:
            out.append(int(pid))
    return out
'''

INNER_FAILING = TAGGED + '''
from conftest import guest_build, make_guest  # noqa: F401 - the fixtures under test


def test_fails_with_qemu_and_gdb_running(make_guest):
    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(2)
    assert len(tagged()) >= 2          # QEMU and gdb
    assert False, "deliberate failure"


def test_errors_while_attached(make_guest):
    g = make_guest("i386-2020", paused=False)
    g.gdb.cli("print 1")
    raise RuntimeError("deliberate error")


def test_nothing_left_after_the_failures():
    assert tagged() == []
'''

INNER_KILLED = '''
import time
from conftest import guest_build, make_guest  # noqa: F401


def test_sleeps_with_a_guest(make_guest):
    g = make_guest("x86_64-2021")
    g.stop_at_checkpoint(1)
    print("READY", flush=True)
    time.sleep(120)
'''


def _tagged(tag: str) -> list[int]:
    want = f"ALLOCVIEW_TAG={tag}".encode()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in env:
            out.append(int(pid))
    return out


def _wait_gone(tag: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _inner(tmp_path: Path, source: str, tag: str, tmpdir: str) -> subprocess.Popen:
    """pytest on `source` in a child process whose descendants carry `tag`
    and keep their temporary files in `tmpdir`."""
    (tmp_path / "test_inner.py").write_text(source)
    env = dict(os.environ, ALLOCVIEW_TAG=tag, TMPDIR=tmpdir,
               PYTHONPATH=os.pathsep.join([str(TESTS_DIR), str(REPO)]))
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def short_tmp():
    """A short temporary directory (unix socket paths must stay short)."""
    d = tempfile.mkdtemp(prefix="av-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_no_process_survives_failing_tests(guest_build, tmp_path, short_tmp):
    tag = uuid.uuid4().hex
    p = _inner(tmp_path, INNER_FAILING, tag, short_tmp)
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 1, out
    assert "2 failed, 1 passed" in out, out
    assert "deliberate failure" in out and "deliberate error" in out
    assert _wait_gone(tag) == []
    assert os.listdir(short_tmp) == []       # work directories removed too


def test_no_process_survives_a_killed_test_process(guest_build, tmp_path, short_tmp):
    tag = uuid.uuid4().hex
    p = _inner(tmp_path, INNER_KILLED, tag, short_tmp)
    try:
        assert p.stdout is not None
        deadline = time.monotonic() + 120
        for line in p.stdout:
            if "READY" in line or time.monotonic() > deadline:
                break
        assert len(_tagged(tag)) >= 3        # pytest, QEMU, gdb
        os.kill(p.pid, signal.SIGKILL)       # no teardown, no atexit
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    assert _wait_gone(tag) == []             # PR_SET_PDEATHSIG did it


def test_gdb_timeout_interrupts_the_guest_and_gdb_stays_usable(make_guest):
    g = make_guest("x86_64-2021", mode="hang", paused=False)
    g.wait_checkpoint(2)
    gdb = g.gdb
    with pytest.raises(GdbTimeout):
        gdb.cont(timeout=1.0)
    assert gdb.print_int("current_checkpoint") == 2
    assert g.running


def test_missing_elf_fails_loudly(guest_build, tmp_path):
    from harness import Gdb, GdbError

    from harness import procs

    before = {p.pid for p in procs.live_children()}
    with pytest.raises(GdbError, match="nothing.elf"):
        Gdb(tmp_path / "nothing.elf", "i386:x86-64").close()
    assert {p.pid for p in procs.live_children()} <= before


@pytest.mark.parametrize("arch", ARCHES)
def test_boot_to_checkpoint_1_is_quick(guest_build, arch):
    assert time_to_checkpoint(f"{arch}-2021", 1) < 10.0


@pytest.mark.parametrize("arch", ARCHES)
def test_variant_images_follow_the_arch_table(guest_build, arch):
    """What each build is, against model.arch: ELF machine, class and
    byte order; ET_DYN linked at 0 when relocatable (with only RELATIVE
    relocations, DWARF, and an entry gdb can use); what QEMU boots."""
    from elftools.elf.elffile import ELFFile

    v = Variant.parse(f"{arch}-2021")
    info = v.info
    with open(v.elf, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == info.elf_machine
        assert elf.elfclass == info.ptr_size * 8
        assert elf.little_endian == (info.endian == "little")
        assert elf.has_dwarf_info()
        assert elf["e_type"] == ("ET_DYN" if info.boot.relocatable else "ET_EXEC")
        if info.boot.relocatable:
            assert min(s["p_vaddr"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD") == 0
            rela = elf.get_section_by_name(".rela.dyn")
            assert rela is not None and rela.num_relocations() > 0
            assert {r["r_info_type"] for r in rela.iter_relocations()} == \
                {{"aarch64": 1027, "ppc64": 22, "riscv64": 3}[arch]}
            assert v.load_offset == info.boot.load_addresses[0]
        else:
            assert v.load_offset == 0
        # gdb's inferior calls return to the entry point: 0 is "unknown" to gdb on ppc64
        assert elf["e_entry"] != 0 or arch != "ppc64"
    flat = v.flat.read_bytes()
    if arch in ("x86_64", "i386"):
        assert flat[:5] == b"\x7fELF\x01"          # ELF32 for the multiboot loader
    elif arch in ("s390x", "ppc64"):
        assert flat == v.elf.read_bytes()           # the ELF itself
    else:
        assert flat[:4] != b"\x7fELF"               # raw image
    if arch == "aarch64":                           # arm64 Image header
        text_offset, image_size = struct.unpack_from("<QQ", flat, 8)
        assert flat[0x38:0x3C] == b"ARM\x64" and text_offset == 0x80000
        assert image_size >= len(flat)
        assert info.boot.ram_start + text_offset == v.load_offset


@pytest.mark.parametrize("arch", ARCHES)
def test_qemu_arguments_per_arch(arch, tmp_path):
    v = Variant.parse(f"{arch}-2021")
    args = fixture_args(v, tmp_path / "console.log")
    boot = v.info.boot
    if arch not in ("x86_64", "i386"):
        assert args[args.index("-machine") + 1].split(",")[0] == boot.machine
    if boot.cpu:
        assert args[args.index("-cpu") + 1] == boot.cpu
    assert v.gdb in v.info.debuggers or os.environ.get("ALLOCVIEW_GDB")
    assert any(str(tmp_path / "console.log") in a for a in args)
