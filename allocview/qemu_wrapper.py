"""allocview-qemu: a QEMU binary for test runners that checks the page
allocator of every kvm-unit-tests guest it boots, where the test ends.

    QEMU=$(command -v allocview-qemu) ALLOCVIEW_REPORT_DIR=reports ./run_tests.sh
    allocview suite reports

It runs the real QEMU with the command line unchanged, adding only a gdb
stub on a loopback port, -S and a QMP socket. gdb attaches, stops the guest
in exit() or abort(), allocview checks the allocator, and the test runs on
to its end. QEMU's console and its exit status pass through untouched.
Settings come from ALLOCVIEW_* variables (allocview.wrapper.settings);
probes (--help, -h, -version, -device '?', ... help) and runs without
-kernel go straight to QEMU.

Exit status: QEMU's (death by signal n re-raised, else 128 + n), except
EXIT_FINDINGS (4) when ALLOCVIEW_FAIL_ON=error and the check found errors;
127/126 when QEMU cannot be started, as a shell would say.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

from .wrapper.qemu_argv import analyse, elf_for, qemu_for, name_for_test
from .wrapper.settings import EXIT_FINDINGS, Settings, SettingsError, from_env

__all__ = ["main", "EXIT_FINDINGS"]

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_SEVERITY = {"error": ("error",), "warning": ("error", "warning")}


def _say(line: str, *, failure: bool = False) -> None:
    """One line of allocview's own on stderr (the test's, shared). Unless
    it fails the test on purpose, it is a warning line: kvm-unit-tests'
    runner keeps a test's PASS when stderr holds only lines with
    "warning" in them."""
    text = f"allocview: {line}" if failure else f"allocview: warning: {line}"
    try:
        os.write(2, (text + "\n").encode(errors="replace"))
    except OSError:
        pass


def _exec_qemu(argv: list[str], settings: Settings | None) -> int:
    """Become the real QEMU: a probe must see QEMU itself."""
    kernel = analyse(argv).kernel
    qemu = (settings.qemu if settings else os.environ.get("ALLOCVIEW_QEMU")) or \
        (qemu_for(kernel, elf_for(kernel, settings.elf if settings else None))
         if kernel and os.path.isfile(kernel) else None) or qemu_for(None, None, argv=argv)
    try:
        os.execvp(qemu, [qemu] + argv)
    except OSError as e:
        _say(f"cannot run {qemu}: {e.strerror or e}")
        return 127 if isinstance(e, FileNotFoundError) else 126


def _status(out, settings: Settings) -> tuple[int, bool]:
    """(exit status, whether allocview's findings decided it)."""
    from .wrapper.results import shell_status

    status = shell_status(out.qemu_status)
    if status is None:
        status = 127
    bad = _SEVERITY.get(settings.fail_on, ())
    if out.report is not None and any(f.get("severity") in bad
                                      for f in out.report.get("findings", [])):
        return EXIT_FINDINGS, True
    return status, False


def _reraise(returncode: int | None) -> None:
    """Die of QEMU's signal, as a parent waiting on QEMU would have seen
    it (no core file of the wrapper's own)."""
    if returncode is None or returncode >= 0:
        return
    sig = -returncode
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass
    if sig not in (signal.SIGKILL, signal.SIGSTOP):     # those take no handler
        try:
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        except (OSError, ValueError):
            return
    os.kill(os.getpid(), sig)


def run(argv: list[str], settings: Settings) -> int:
    """One test under allocview; the wrapper's exit status."""
    from .wrapper.outcome import Outcome
    from .wrapper.supervise import Supervisor

    inv = analyse(argv)
    elf = elf_for(inv.kernel, settings.elf)
    qemu = settings.qemu or qemu_for(inv.kernel, elf)
    out = Outcome(name=name_for_test(inv.kernel, dict(os.environ)),
                  kernel=inv.kernel, elf=elf, qemu=qemu)
    if qemu is None:
        out.qemu_status = 127
        out.no_check(f"cannot tell which qemu-system-* boots {inv.kernel} (set ALLOCVIEW_QEMU)")
    else:
        sup = Supervisor(qemu, argv, out, gdb=settings.gdb, timeout=settings.timeout,
                         source=settings.source)
        for sig in FORWARDED:
            # a signal ignored from the start stays ignored, for QEMU too, as
            # without the wrapper; the handlers stay until the wrapper exits
            # (restoring Python's SIGINT one would let a late ^C print a
            # traceback)
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, lambda n, _f: sup.signal(n))
        sup.run()
    status, failing = _status(out, settings)
    try:
        _leave_report(out, settings, status, failing)
    except Exception as e:  # noqa: BLE001 - the test's status matters more
        _say(f"cannot report on {out.name}: {type(e).__name__}: {e}")
    if not failing:
        _reraise(out.qemu_status)
    return status


def _leave_report(out, settings: Settings, status: int, failing: bool) -> None:
    from .wrapper import results

    doc = results.document(out, status)
    line = results.summary_line(doc)
    if settings.report_dir:
        try:
            results.write(settings.report_dir, doc, line, out.state, out.page)
        except OSError as e:
            _say(f"cannot write the report to {settings.report_dir}: {e.strerror or e}")
    if settings.failure_to_stderr(failing):
        _say(line.removeprefix("allocview: "), failure=True)
    elif settings.summary == "stderr":
        _say(line.removeprefix("allocview: "))
    elif settings.summary:
        _write_summary(settings.summary, line)


def _write_summary(where: str, line: str) -> None:
    """The line to "fd:N" or appended to a file, in one write."""
    data = (line + "\n").encode(errors="replace")
    try:
        if where.startswith("fd:"):
            os.write(int(where[3:]), data)
            return
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        _say(f"cannot write the summary to {where}: {e.strerror or e}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        settings = from_env()
    except SettingsError as e:
        _say(f"{e}; running QEMU without allocview")
        return _exec_qemu(argv, None)
    if analyse(argv).passthrough:
        return _exec_qemu(argv, settings)
    return run(argv, settings)


if __name__ == "__main__":
    sys.exit(main())
