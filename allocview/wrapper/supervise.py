"""One test under allocview-qemu: QEMU started paused with a gdb stub, gdb
attached, the guest run at full speed to `exit` or `abort`, the allocator
checked there, gdb gone, QEMU left to finish the test.

Whatever goes wrong on allocview's side, the test runs as it would without
it and the `Outcome` says why no check was made: no allocator (QEMU runs
plainly), no gdb (plainly), gdb dying or stalling (killed; QMP `cont` lets
a guest it held run on), QEMU exiting or killed before the breakpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

from ..errors import SymbolError
from . import qmp
from .children import Listeners, kill, reap, spawn
from .ends import Ends, find_ends
from ..mi import Bus, MiError, MiSession, session_memory
from .outcome import Outcome

__all__ = ["Outcome", "Supervisor", "gdb_arch_for"]

MAX_STRAYS = 50       # stub stops that are no breakpoint of ours, before giving up

def gdb_arch_for(qemu: str, program_arch: str) -> str:
    """The stub's register set follows the QEMU binary, not the program: an
    x86_64 QEMU talks x86-64 even while the guest is still in 32-bit mode."""
    from allocview.model.arch import arch, by_qemu

    program, emulator = arch(program_arch), by_qemu(qemu)
    if emulator is not None and emulator.family == program.family and emulator.stub_follows_qemu:
        return emulator.gdb_arch
    return program.gdb_arch


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _qemu_end(returncode: int) -> str:
    if returncode < 0:
        return f"QEMU died of {_signame(-returncode)}"
    return f"QEMU exited (status {returncode})"


class Supervisor:
    """Runs `qemu argv...` for the test `outcome.name`. `signal(sig)` is
    for the wrapper's signal handler: it forwards to QEMU at once."""

    def __init__(self, qemu: str, argv: list[str], outcome: Outcome, *, gdb: str | None,
                 timeout: float, source: str = "auto"):
        self.qemu = qemu
        self.source = source
        self.argv = list(argv)
        self.out = outcome
        self.gdb = gdb
        self.timeout = timeout
        self.bus = Bus()
        self.proc: subprocess.Popen | None = None
        self.mi: MiSession | None = None
        self.listeners: Listeners | None = None
        self._monitor: qmp.Qmp | None = None
        self._strays = 0

    # ------------------------------------------------------------ signals
    def signal(self, sig: int) -> None:
        """Signal handler body: forward, then let the waits know."""
        kill(self.proc, sig)
        self.bus.put("signal", sig)

    # ---------------------------------------------------------------- run
    def run(self) -> Outcome:
        try:
            try:
                self._run()
            except Exception as e:  # noqa: BLE001 - allocview's bug must not be the test's
                self._rescue(f"allocview failed: {type(e).__name__}: {e}")
        finally:
            self._cleanup()
            self.out.qemu_status = self.proc.returncode if self.proc else self.out.qemu_status
            self.out.signals = list(self.bus.signals)
            self.out.wall_time = time.monotonic() - self.out.started
        return self.out

    def _run(self) -> None:
        elf = self.out.elf
        if elf is None:
            return self._plain(f"no ELF for {self.out.kernel} (set ALLOCVIEW_ELF)")
        gdb = self._debugger(elf)
        if gdb is None:
            return self._plain(f"gdb not found ({self.gdb or 'gdb or gdb-multiarch'})")
        try:
            # gdb starts while Python reads the ELF
            self.mi = MiSession(gdb, self.bus)
        except OSError as e:
            return self._plain(f"cannot start gdb ({e.strerror or e})")
        try:
            from ..symbols import load_program
            prog = load_program(elf)
        except SymbolError as e:
            self.out.notes.append(str(e))
            return self._plain("no allocator")
        if "exit" not in prog.symbols:
            return self._plain(f"no exit() in {os.path.basename(elf)} to stop at")
        ends = find_ends(elf, prog.arch, prog.symbols["exit"], prog.symbols.get("abort"))
        if self.bus.signals:
            return self._not_started()
        self.listeners = Listeners()
        if not self._start_qemu(self.listeners.qemu_args() + ["-S"], self.listeners.fds):
            return
        self.listeners.close_ours()
        try:
            self._connect(gdb_arch_for(self.qemu, prog.arch), prog.layout.endian)
            prog = self._placed(prog)
            if prog is None:
                return
            bkpts = self._plant(ends.moved(prog.load_offset).breakpoints())
        except MiError as e:
            if self._qemu_exited(0.5):
                self._drop_gdb()
                self.out.no_check(f"{_qemu_end(self.proc.returncode)} before allocview "
                                  "could attach")
                return self._wait_qemu_exit()
            return self._gdb_failed(f"attaching failed: {e}")
        ends = ends.moved(prog.load_offset)
        self._warm_up()
        while True:
            stop = self._wait_stop()
            if stop is None:
                return self._finish_plain()
            which = bkpts.get(stop.get("bkptno"))
            if stop.get("reason") == "breakpoint-hit" and which is not None:
                return self._at_end(prog, ends, which)
            if not self._stray_stop(stop):
                return self._finish_plain()

    def _debugger(self, elf: str) -> str | None:
        """ALLOCVIEW_GDB, else the first debugger of the program's arch on
        PATH (x86: gdb; the others: gdb-multiarch)."""
        from allocview.model.arch import by_elf

        from ..sources.gdbmi import debugger_for
        from .qemu_argv import _elf_header
        head = _elf_header(elf)
        found = by_elf(head[1], head[0] // 8) if head else None
        # an x86_64 .flat's ELF is ELF32 EM_386 too: gdb debugs both
        return shutil.which(debugger_for(found.name if found else None, self.gdb))

    def _placed(self, prog):
        """A relocatable program where QEMU loaded it (found by its code in
        guest memory before it runs); None, with the reason recorded and the
        test let go, when it cannot be found."""
        if not prog.relocatable:
            return prog                 # x86's multiboot copies its image in later
        from ..inspect import NothingToCheck, locate
        mem = session_memory(self.mi, f"127.0.0.1:{self.listeners.gdb_port}", self.timeout)
        try:
            placed, where = locate(self._host_first(mem), prog)
        except NothingToCheck as e:
            self._release(detach=True)
            self.out.no_check(f"cannot find the program in guest memory: {e.unchecked.reason}")
            self._wait_qemu_exit()
            return None
        self.out.notes.append(f"{os.path.basename(prog.path)} {where.how}")
        return placed

    def _rescue(self, reason: str) -> None:
        """After an unexpected error: the test runs on (or at all) without us."""
        if self.proc is None:
            return self._plain(reason)
        self._gdb_failed(reason)

    def _stray_stop(self, stop: dict) -> bool:
        """A stop that is not our breakpoint. The stub's own (a trap: QMP
        says "debug") is continued, True; one that paused the guest for
        someone else (QMP stop, a panic action) is left as it is, False."""
        try:
            status = self._qmp().status(min(5.0, self.timeout))
        except qmp.QmpError:
            status = "unknown"
        self._strays += 1
        if status == "debug" and self._strays > MAX_STRAYS:
            # a trap that comes back whatever gdb does (a breakpoint gdb
            # cannot match to its own): let the test run without us
            self._release(detach=True)
            self.out.no_check(f"the stub stopped the guest {self._strays} times for no "
                              f"breakpoint of allocview's ({stop.get('reason')} "
                              f"{stop.get('signal-name', '')}); let it run unchecked")
            return False
        if status == "debug":
            try:
                self.mi.command("-exec-continue", self.timeout)
                return True
            except MiError as e:
                self._gdb_failed(f"continuing after a stray stop failed: {e}")
                return False
        self._release(detach=False)
        self.out.no_check(f"the guest stopped ({stop.get('reason')} "
                          f"{stop.get('signal-name', '')}, QEMU {status}) before exit() "
                          "or abort()")
        return False

    # ------------------------------------------------------------ phases
    def _not_started(self) -> None:
        sig = self.bus.signals[0]
        self.out.no_check(f"killed by {_signame(sig)} before QEMU started")
        self.out.qemu_status = -sig

    def _start_qemu(self, extra: list[str], fds=()) -> bool:
        argv = [self.qemu] + self.argv + extra
        try:
            self.proc = spawn(argv, pass_fds=fds)
        except OSError as e:
            # a shell's statuses: 127 not found, 126 found but not runnable
            self.out.qemu_status = 127 if isinstance(e, FileNotFoundError) else 126
            self.out.no_check(f"cannot start QEMU {self.qemu} ({e.strerror or e})")
            return False
        threading.Thread(target=self._wait_qemu, name="allocview-qemu", daemon=True).start()
        return True

    def _qemu_exited(self, grace: float) -> bool:
        assert self.proc is not None
        try:
            self.proc.wait(grace)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _wait_qemu(self) -> None:
        assert self.proc is not None
        self.bus.put("qemu", self.proc.wait())

    def _plain(self, reason: str) -> None:
        """The test as if allocview were not there."""
        if self.mi is not None:
            self.mi.close(polite=False)
            self.mi = None
        self.out.no_check(reason)
        if self.bus.signals:
            return self._not_started()
        if self._start_qemu([]):
            self._wait_qemu_exit()

    def _connect(self, arch: str, endian: str) -> None:
        """gdb set up and attached to the stub (the guest stays stopped).
        gdb has no program loaded, so it is told the byte order too (else a
        big-endian stub's registers read byte-swapped)."""
        assert self.mi is not None and self.listeners is not None
        for rec in self.mi.batch(["-gdb-set confirm off", "-gdb-set pagination off",
                                  f"-gdb-set architecture {arch}",
                                  f"-gdb-set endian {endian}"], self.timeout):
            if rec.get("message") == "error":
                raise MiError(rec.get("payload", {}).get("msg", "refused a setting"))
        self.mi.command(f"-target-select remote 127.0.0.1:{self.listeners.gdb_port}",
                        self.timeout)
        self.mi.stops.clear()           # attaching reports the -S stop: not ours

    def _plant(self, ends: dict[str, int]) -> dict[str, str]:
        """Break on the ends, continue; {breakpoint number: name}."""
        assert self.mi is not None
        bkpts = {}
        for name, addr in ends.items():
            try:
                # hardware breakpoints: nothing written to guest memory, and
                # the same under TCG (and KVM has 4 of them)
                b = self.mi.command(f"-break-insert -h *{addr:#x}", self.timeout)
            except MiError:
                b = self.mi.command(f"-break-insert *{addr:#x}", self.timeout)
            bkpts[b["bkpt"]["number"]] = name
        self.mi.command("-exec-continue", self.timeout)
        return bkpts

    def _warm_up(self) -> None:
        """Import the checker while the guest runs, not while it waits."""
        import allocview.model.check  # noqa: F401
        import allocview.model.report  # noqa: F401
        import allocview.model.snapshot  # noqa: F401

    def _wait_stop(self) -> dict | None:
        """The `*stopped` payload, or None when QEMU ended (or gdb died,
        in which case the guest was let go) first."""
        assert self.mi is not None
        while True:
            if self.mi.stops:
                stop = self.mi.stops.pop(0)
                reason = str(stop.get("reason", ""))
                # no reason: the attach stop, late; exited: QEMU is ending
                if reason and not reason.startswith("exited"):
                    return stop
                continue
            if self.bus.qemu_status is not None:
                self._ended_early()
                return None
            if self.mi.dead:
                self._gdb_failed("gdb exited while the test ran")
                return None
            ev = self.bus.get(None)
            if ev is None:
                continue
            if ev[0] == "gdb-eof":
                self.mi.dead = True
            elif ev[0] == "gdb":
                rec = ev[1]
                if rec.get("type") == "notify" and rec.get("message") == "stopped":
                    self.mi.stops.append(rec.get("payload") or {})

    def _ended_early(self) -> None:
        self._drop_gdb()
        if self.bus.signals:
            self.out.no_check(f"killed by {_signame(self.bus.signals[0])} before exit() "
                              "or abort()")
        else:
            self.out.no_check(f"{_qemu_end(self.bus.qemu_status)} before the guest reached "
                              "exit() or abort()")

    def _how_it_ended(self, prog, ends: Ends, which: str) -> str:
        """"exit(N)", or "abort" (its breakpoint, or exit called from it)."""
        if which == "abort":
            return "abort"
        abi = prog.layout.arch.abi
        exprs = [f"(int){abi.arg_expr(0, prog.layout.ptr_size)}"]
        if ends.abort_range is not None:
            exprs.append(abi.return_address)
        recs = self.mi.batch([f'-data-evaluate-expression "{e}"' for e in exprs], self.timeout)
        values = []
        for rec in recs:
            if rec.get("message") != "done":
                raise MiError(f"cannot evaluate {exprs[len(values)]}: "
                              f"{(rec.get('payload') or {}).get('msg')}")
            values.append(int(rec["payload"]["value"].split()[0], 0))
        # a noreturn call is abort's last instruction: its return address
        # may be the first byte after abort
        if len(values) > 1 and ends.abort_range[0] < values[1] <= ends.abort_range[1]:
            return "abort"
        return f"exit({values[0]})"

    def _at_end(self, prog, ends: Ends, which: str) -> None:
        assert self.mi is not None
        t0 = time.monotonic()
        try:
            self.out.ended = self._how_it_ended(prog, ends, which)
            self._check(prog)
        except Exception as e:  # noqa: BLE001 - any failure is a reason, never a traceback
            if self.bus.signals:
                self._drop_gdb()
                self.out.no_check(f"killed by {_signame(self.bus.signals[0])} during the check")
                return self._wait_qemu_exit()
            if isinstance(e, MiError) or self.mi.dead:
                return self._gdb_failed(f"reading the guest failed: {e}")
            self.out.no_check(f"the check failed at {self.out.ended}: "
                              f"{type(e).__name__}: {e}")
        finally:
            self.out.check_time = time.monotonic() - t0
        if self.bus.hurry:
            self._drop_gdb()
            return self._wait_qemu_exit()
        self._release(detach=True)
        self._wait_qemu_exit()

    def _check(self, prog) -> None:
        from allocview.model.check import check
        from allocview.model.findings import Severity
        from allocview.model.memory import CachedMemory
        from allocview.model.report import report

        from ..inspect import NothingToCheck, inspect

        stub = session_memory(self.mi, f"127.0.0.1:{self.listeners.gdb_port}", self.timeout)
        mem = CachedMemory(self._host_first(stub), record=True)   # what a saved state holds
        try:
            found = inspect(mem, prog)
        except NothingToCheck as e:
            if self.bus.hurry:
                raise MiError("QEMU went away while allocview read it") from None
            if e.unchecked.kind == "uninitialised":
                self.out.no_check(f"{self.out.ended} before the allocator was initialised "
                                  "(areas_mask is 0)")
            else:
                self.out.no_check(f"{self.out.ended}, and nothing could be checked: "
                                  f"{e.unchecked.reason}")
            return
        if self.bus.hurry:
            raise MiError("QEMU went away while allocview read it")
        snap = found.snapshot
        findings = check(snap)
        self.out.report = report(snap, findings, found.placement)
        if any(f.severity >= Severity.WARNING for f in findings):
            self._keep_state(snap, findings, found.placement, mem.ranges())

    def _keep_state(self, snap, findings, placement, ranges) -> None:
        """A test with findings: its state as a small dump and its HTML report,
        for the report directory (any test reopened with --dump)."""
        from ..htmlreport import state_page
        self.out.state = (snap.layout.arch.name, ranges)
        try:
            self.out.page = state_page(snap, findings, placement)
        except Exception as e:  # noqa: BLE001 - the report's JSON matters more
            self.out.notes.append(f"no HTML report: {type(e).__name__}: {e}")

    def _host_first(self, stub):
        """Guest RAM straight from our QEMU child (its pid is ours to know,
        HMP over our QMP pair says where RAM lives), the stub checking the
        first read and serving the rest; the stub alone when that fails."""
        from ..sources.hostmem import HostFirst, HostMemory, HostMemoryUnavailable
        self.out.read_via = "gdb stub"
        if self.source == "stub" or self.proc is None:
            return stub
        try:
            host = HostMemory.open(self.proc.pid, lambda lines: self._qmp().hmp(lines, 5.0))
        except (HostMemoryUnavailable, qmp.QmpError) as e:
            self.out.notes.append(f"read through the gdb stub: {e}")
            return stub
        self.out.read_via = f"QEMU process memory (/proc/{host.pid}/mem)"

        def refused(why: str) -> None:
            self.out.read_via = "gdb stub"
            self.out.notes.append(f"read through the gdb stub: {why}")
        return HostFirst(host, stub, refused)

    # ------------------------------------------------------------ endings
    def _release(self, detach: bool) -> None:
        """Delete the breakpoints and leave: `detach` lets the guest run on,
        a disconnect leaves a guest someone else paused as it is."""
        assert self.mi is not None
        try:
            self.mi.command("-break-delete", self.timeout)
            self.mi.command("-target-detach" if detach else "-target-disconnect", self.timeout)
            self.mi.close(polite=True)
            self.mi = None
        except MiError as e:
            self._gdb_failed(f"leaving the guest failed: {e}", keep_report=True)

    def _drop_gdb(self) -> None:
        if self.mi is not None:
            self.mi.close(polite=False)
            self.mi = None

    def _gdb_failed(self, reason: str, keep_report: bool = False) -> None:
        """Kill gdb; a guest it held stopped would stay paused, so QMP lets
        it run on. The test then ends on its own."""
        self._drop_gdb()
        if not keep_report:
            self.out.no_check(reason)
        else:
            self.out.notes.append(reason)
        if self.proc is not None and self.proc.poll() is None and self.listeners is not None:
            try:
                self._qmp().resume(min(5.0, self.timeout))
            except qmp.QmpError as e:
                if self.bus.qemu_status is None and not self.bus.signals:
                    self.out.notes.append(f"QMP could not resume the guest: {e}")
        self._wait_qemu_exit()

    def _qmp(self) -> "qmp.Qmp":
        if self._monitor is None:
            self._monitor = qmp.Qmp(self.listeners.qmp_socket)
        return self._monitor

    def _finish_plain(self) -> None:
        self._drop_gdb()
        self._wait_qemu_exit()

    def _wait_qemu_exit(self) -> None:
        while self.proc is not None and self.bus.qemu_status is None:
            self.bus.get(None)
        if self.bus.signals and "killed by" not in self.out.ended:
            self.out.notes.append(f"killed by {_signame(self.bus.signals[0])}")

    def _cleanup(self) -> None:
        """Nothing outlives the wrapper: gdb, QEMU (only if something above
        failed before waiting for it), the sockets' directory."""
        self._drop_gdb()
        if self.proc is not None and self.proc.poll() is None:
            kill(self.proc, signal.SIGTERM)
            reap(self.proc, 3.0)
        if self._monitor is not None:
            self._monitor.close()
        if self.listeners is not None:
            self.listeners.close()
