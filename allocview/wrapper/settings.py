"""allocview-qemu's own settings. They come from the environment only: the
command line belongs to QEMU, byte for byte.

    ALLOCVIEW_REPORT_DIR  write <test>.json and append to summary.txt there
    ALLOCVIEW_FAIL_ON     "error": exit EXIT_FINDINGS when error findings
                          exist (unset or "never": QEMU's status, always)
    ALLOCVIEW_ELF         the ELF with the kernel's symbols (else foo.elf
                          beside foo.flat, else the kernel)
    ALLOCVIEW_QEMU        the real QEMU (else qemu-system-<arch of the ELF>)
    ALLOCVIEW_GDB         gdb (else the first of the program's arch's debuggers on
                          PATH: gdb for x86, gdb-multiarch for the others)
    ALLOCVIEW_TEST_NAME   the report's name (else the runner's TESTNAME, else
                          the kernel's file name)
    ALLOCVIEW_SUMMARY     where else the one-line summary goes: a file
                          (appended), "fd:N" (an open descriptor), or
                          "stderr" (as a warning line, which kvm-unit-tests'
                          runner does not count against a test); unset:
                          nowhere else
    ALLOCVIEW_STDERR      "1": same as ALLOCVIEW_SUMMARY=stderr; "0": nothing
                          on stderr, not even the line of a test that
                          ALLOCVIEW_FAIL_ON fails
    ALLOCVIEW_TIMEOUT     seconds for attaching and for the check (default 30)
    ALLOCVIEW_SOURCE      "auto" (default): read guest RAM from the QEMU child
                          itself (/proc/PID/mem), the stub checking the first
                          read; "stub": every read through the gdb stub
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Settings", "from_env", "SettingsError", "EXIT_FINDINGS"]

# An even status: QEMU's isa-debug-exit only makes odd ones ((code << 1) | 1),
# QEMU itself 0 or 1, kvm-unit-tests' scripts 2 (run script failed), 77
# (SKIP) and 124 (timeout), signals 128 + n. The runner calls 4 FAIL.
EXIT_FINDINGS = 4
FAIL_ON = ("never", "error", "warning")


class SettingsError(ValueError):
    """An ALLOCVIEW_* variable with a value allocview does not know."""


@dataclass(frozen=True)
class Settings:
    report_dir: str | None = None
    fail_on: str = "never"
    elf: str | None = None
    qemu: str | None = None
    gdb: str | None = None          # None: by the program's arch
    test_name: str | None = None
    summary: str | None = None      # None, "stderr", "fd:N" or a path
    quiet: bool = False             # ALLOCVIEW_STDERR=0
    timeout: float = 30.0
    source: str = "auto"

    def failure_to_stderr(self, failing: bool) -> bool:
        """Whether the summary goes to stderr as a failure line: only when
        ALLOCVIEW_FAIL_ON failed the test (kvm-unit-tests' runner turns a
        passing QEMU status 1 into FAIL when stderr holds anything but
        warnings, so nothing else of allocview's is ever an error line)."""
        return failing and not self.quiet


def from_env(env: dict[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    fail_on = (env.get("ALLOCVIEW_FAIL_ON") or "never").strip().lower()
    if fail_on not in FAIL_ON:
        raise SettingsError(f"ALLOCVIEW_FAIL_ON={fail_on}: expected one of {', '.join(FAIL_ON)}")
    stderr = env.get("ALLOCVIEW_STDERR")
    if stderr not in (None, "", "0", "1"):
        raise SettingsError(f"ALLOCVIEW_STDERR={stderr}: expected 0 or 1")
    summary = env.get("ALLOCVIEW_SUMMARY") or ("stderr" if stderr == "1" else None)
    if summary and summary.startswith("fd:") and not summary[3:].isdigit():
        raise SettingsError(f"ALLOCVIEW_SUMMARY={summary}: expected stderr, fd:N or a file")
    try:
        timeout = float(env.get("ALLOCVIEW_TIMEOUT") or 30.0)
    except ValueError:
        raise SettingsError(f"ALLOCVIEW_TIMEOUT={env['ALLOCVIEW_TIMEOUT']}: not a number") \
            from None
    source = (env.get("ALLOCVIEW_SOURCE") or "auto").strip().lower()
    if source not in ("auto", "stub"):
        raise SettingsError(f"ALLOCVIEW_SOURCE={source}: expected auto or stub")
    return Settings(source=source, report_dir=env.get("ALLOCVIEW_REPORT_DIR") or None, fail_on=fail_on,
                    elf=env.get("ALLOCVIEW_ELF") or None, qemu=env.get("ALLOCVIEW_QEMU") or None,
                    gdb=env.get("ALLOCVIEW_GDB") or None,
                    test_name=env.get("ALLOCVIEW_TEST_NAME") or None,
                    summary=summary, quiet=stderr == "0", timeout=max(1.0, timeout))
