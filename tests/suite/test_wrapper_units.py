"""allocview-qemu's decisions that need no QEMU: which command lines go
straight to QEMU, which QEMU boots which kernel, the settings."""

from __future__ import annotations

import pytest

from allocview.wrapper.qemu_argv import analyse, elf_for, qemu_for, name_for_test
from allocview.wrapper.settings import EXIT_FINDINGS, SettingsError, from_env

from harness import Variant


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["-help"], ["-version"], ["--version"], ["-device", "?"],
    ["-device", "help"], ["-machine", "help"], ["-M", "?"], ["-cpu", "help"],
    ["-device", "e1000,help"], [],
    ["-nodefaults", "-serial", "stdio"],                     # no -kernel
    ["-kernel", "_NO_FILE_4Uhere_"],                         # the runner's load probe
])
def test_probes_and_runs_without_a_kernel_pass_through(argv):
    assert analyse(argv).passthrough


@pytest.mark.parametrize("extra", [["-s"], ["-gdb", "tcp::1234"], ["-S"],
                                   ["-incoming", "defer"], ["-daemonize"]])
def test_a_run_that_drives_qemu_itself_passes_through(extra):
    flat = str(Variant.parse("x86_64-2021").flat)
    assert analyse(["-kernel", flat] + extra).passthrough


def test_a_test_command_line_is_wrapped_and_its_kernel_found():
    flat = str(Variant.parse("x86_64-2021").flat)
    argv = ["-nodefaults", "-no-reboot", "-append", "-S -s help", "-m", "256M",
            "--kernel", flat, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4"]
    inv = analyse(argv)
    assert inv.passthrough is None and inv.kernel == flat and inv.argv == tuple(argv)


def test_the_option_table_keeps_arguments_that_look_like_options():
    # -name's argument "-S" is not the -S flag; -S (no argument) does not
    # swallow the -kernel after it
    flat = str(Variant.parse("x86_64-2021").flat)
    assert analyse(["-name", "-S", "-kernel", flat]).passthrough is None
    assert analyse(["-snapshot", "-kernel", flat]).kernel == flat


@pytest.mark.parametrize("variant,qemu", [
    ("x86_64-2021", "qemu-system-x86_64"), ("x86_64-2020", "qemu-system-x86_64"),
    ("i386-2021", "qemu-system-i386"), ("i386-2020", "qemu-system-i386")])
def test_the_qemu_follows_the_programs_elf_not_the_flat(guest_build, variant, qemu):
    v = Variant.parse(variant)
    elf = elf_for(str(v.flat))
    assert elf == str(v.elf)
    assert qemu_for(str(v.flat), elf) == qemu == v.qemu


def test_a_flat_without_its_elf_boots_on_x86_64(guest_build, tmp_path):
    flat = tmp_path / "lonely.flat"
    flat.write_bytes(Variant.parse("i386-2021").flat.read_bytes())
    assert elf_for(str(flat)) == str(flat)
    assert qemu_for(str(flat), str(flat)) == "qemu-system-x86_64"
    assert qemu_for(str(tmp_path / "not-elf.bin"), None) is None


def test_the_test_name_prefers_allocview_then_the_runner_then_the_file():
    assert name_for_test("x86/vmx.flat", {"ALLOCVIEW_TEST_NAME": "a", "TESTNAME": "b"}) == "a"
    assert name_for_test("x86/vmx.flat", {"TESTNAME": "vmx_pf_exception_test"}) == \
        "vmx_pf_exception_test"
    assert name_for_test("x86/vmx.flat", {}) == "vmx"
    assert name_for_test("x", {"TESTNAME": "../evil/name"}) == "_evil_name"


def test_settings_come_from_the_environment_and_are_checked():
    s = from_env({"ALLOCVIEW_FAIL_ON": "error", "ALLOCVIEW_REPORT_DIR": "/r"})
    assert (s.fail_on, s.report_dir, s.gdb) == ("error", "/r", None)   # None: by arch
    # an error line on stderr only when the check fails the test; the
    # summary elsewhere only where the user says
    assert not s.failure_to_stderr(failing=False) and s.failure_to_stderr(failing=True)
    assert from_env({}).summary is None
    assert from_env({"ALLOCVIEW_STDERR": "1"}).summary == "stderr"
    assert from_env({"ALLOCVIEW_SUMMARY": "fd:3"}).summary == "fd:3"
    assert not from_env({"ALLOCVIEW_STDERR": "0"}).failure_to_stderr(failing=True)
    for bad in ({"ALLOCVIEW_FAIL_ON": "sometimes"}, {"ALLOCVIEW_STDERR": "yes"},
                {"ALLOCVIEW_SUMMARY": "fd:x"},
                {"ALLOCVIEW_TIMEOUT": "soon"}, {"ALLOCVIEW_SOURCE": "proc"}):
        with pytest.raises(SettingsError):
            from_env(bad)


def test_the_findings_status_is_one_the_runner_calls_fail():
    # not 0/1 (QEMU), not odd (isa-debug-exit), not 2, 77 (SKIP), 124 (timeout)
    assert EXIT_FINDINGS % 2 == 0 and EXIT_FINDINGS not in (0, 2, 77, 124) \
        and 1 < EXIT_FINDINGS < 128
