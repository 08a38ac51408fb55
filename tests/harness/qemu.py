"""Booting the fixture guest under QEMU/TCG, with gdb and QMP at hand.

    with Guest("x86_64-2021", seed=1, memory="256M") as g:
        gdb = g.stop_at_checkpoint(2)          # a real gdb, guest stopped in checkpoint(2)
        print(gdb.cli("print/x 'alloc_page.c'::areas_mask"))
        g.dump_guest_memory(tmp / "core.elf")  # QMP

Any arch of harness.ARCHES: "s390x-2021", "ppc64-2020-nomerge"... The
QEMU binary, machine and cpu come from allocview.model.arch, the firmware options,
console device and exit device from `fixture_args`; gdb is the arch's
(gdb-multiarch off x86) with a relocatable ELF's symbols at its load
address. `wait_exit()` gives the test's status on every arch.

QEMU starts paused (-S) unless `paused=False`; the first gdb attach or
`resume()` lets it run. Everything it spawns dies in `close()` (also on
garbage collection, at interpreter exit, and through PR_SET_PDEATHSIG when
the test process dies).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from . import procs
from .build import Variant, build
from .gdb import Gdb

__all__ = ["Guest", "GuestError", "free_port", "time_to_checkpoint", "parse_checkpoints",
           "parse_exit_status", "fixture_args"]

_built = False
_CHECKPOINT_RE = re.compile(r"^checkpoint (\d+) ops=(\d+) hash=0x([0-9a-f]+)\s*$", re.M)
_EXIT_STATUS_RE = re.compile(r"^EXIT: STATUS=(-?\d+)\s*$", re.M)

# Fixture details model.arch does not know: machine options, firmware, how
# the guest ends. (QEMU binary, machine and cpu come from allocview.model.arch.)
_MACHINE_OPTIONS = {
    # VOF, QEMU's light Open Firmware (vof.bin, default -bios with x-vof=on),
    # instead of SLOF; TCG lacks the spectre mitigations pseries asks for
    "ppc64": ",x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
}
_EXIT_ARGS = {
    "x86_64": ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x4"),
    "i386": ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x4"),
    # SYS_EXIT handled by QEMU itself even with gdb attached
    "aarch64": ("-semihosting-config", "enable=on,target=native"),
}


class GuestError(RuntimeError):
    """QEMU or the guest did not do what was asked; the message carries
    the console and QEMU's own output."""


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_checkpoints(console: str) -> dict[int, tuple[int, int]]:
    """{n: (ops, hash)} of the `checkpoint` lines printed so far."""
    return {int(m[1]): (int(m[2]), int(m[3], 16)) for m in _CHECKPOINT_RE.finditer(console)}


def parse_exit_status(console: str) -> int | None:
    """The status of the last `EXIT: STATUS=N` console line (what
    kvm-unit-tests runners parse: (code << 1) | 1), None without one."""
    found = _EXIT_STATUS_RE.findall(console)
    return int(found[-1]) if found else None


def fixture_args(variant: "str | Variant", console: "str | Path") -> list[str]:
    """QEMU arguments that boot `variant` with its console written to the
    file `console` and its usual way to end: machine and cpu (model.arch),
    firmware options, console device, exit device. Memory, -kernel and
    -append are the caller's."""
    v = Variant.parse(variant)
    boot = v.info.boot
    argv: list[str] = []
    if v.arch not in ("x86_64", "i386"):         # x86: QEMU's default pc machine
        argv += ["-machine", boot.machine + _MACHINE_OPTIONS.get(v.arch, "")]
    if boot.cpu:
        argv += ["-cpu", boot.cpu]
    if v.arch == "s390x":
        argv += ["-chardev", f"file,id=con0,path={console}", "-device", "sclpconsole,chardev=con0"]
    else:
        argv += ["-serial", f"file:{console}"]
    return argv + list(_EXIT_ARGS.get(v.arch, ()))


def _ensure_built() -> None:
    global _built
    if not _built:
        build()
        _built = True


def _kill_owned(owned: list) -> None:
    for p in owned:
        procs.kill_tree(p, timeout=2.0)
    owned.clear()


class Guest:
    """One QEMU running the fixture guest.

    variant: `Variant` or name such as "x86_64-2021" / "s390x-2021-nomerge".
    seed, mix, ops, exit, mode, trace: the guest's command line (see
    tests/guest/main.c); `append` adds raw text. memory: QEMU -m.
    shared_memory: back RAM with a shared file (`mem_path`, offset 0 at
    `variant.ram_start`) readable from the host. qemu_args: extra QEMU
    arguments.

    exit_status is the test's status, (code << 1) | 1 for exit(code): QEMU's
    own where it carries it (variant.status_from_qemu), else the console's
    `EXIT: STATUS=` line; qemu_status is QEMU's, whatever the arch.
    """

    def __init__(self, variant: "str | Variant" = "x86_64-2021", *, seed: int = 1,
                 mix: str = "default", ops: int | None = None, memory: str = "256M",
                 exit: bool = False, mode: str | None = None, trace: bool = False,
                 append: str = "", paused: bool = True, shared_memory: bool = False,
                 workdir: "str | Path | None" = None, keep_workdir: bool | None = None,
                 qemu_args: tuple[str, ...] = (), do_build: bool = True,
                 start_timeout: float = 30.0):
        self.variant = Variant.parse(variant)
        self.seed, self.mix, self.ops = seed, mix, ops
        self.memory = memory
        self.exit, self.mode, self.trace = exit, mode, trace
        self.append = append
        self.paused = paused
        self.shared_memory = shared_memory
        self.qemu_args = tuple(qemu_args)
        self.do_build = do_build
        self.start_timeout = start_timeout
        self._workdir_arg = Path(workdir) if workdir else None
        if keep_workdir is None:
            keep_workdir = bool(os.environ.get("ALLOCVIEW_KEEP_GUEST"))
        self.keep_workdir = keep_workdir
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.gdb_port: int | None = None
        self.exit_status: int | None = None
        self.qemu_status: int | None = None
        self.stopped_at: int | None = None
        self._gdb: Gdb | None = None
        self._qmp = None
        self._owned: list[subprocess.Popen] = []
        self._finalizer = weakref.finalize(self, _kill_owned, self._owned)
        self.started_at: float | None = None

    # ------------------------------------------------------------ paths
    @property
    def elf(self) -> Path:
        return self.variant.elf

    @property
    def flat(self) -> Path:
        return self.variant.flat

    def _path(self, name: str) -> Path:
        if self.workdir is None:
            raise GuestError("the guest is not started")
        return self.workdir / name

    @property
    def qmp_path(self) -> Path:
        return self._path("qmp.sock")

    @property
    def console_path(self) -> Path:
        return self._path("console.log")

    @property
    def qemu_log_path(self) -> Path:
        return self._path("qemu.log")

    @property
    def gdb_log_path(self) -> Path:
        return self._path("gdb.log")

    @property
    def mem_path(self) -> Path | None:
        return self._path("ram") if self.shared_memory else None

    @property
    def cmdline(self) -> str:
        """What -append gets."""
        words = [f"seed={self.seed}", f"mix={self.mix}"]
        if self.ops is not None:
            words.append(f"ops={self.ops}")
        if self.exit:
            words.append("exit=1")
        if self.mode:
            words.append(f"mode={self.mode}")
        if self.trace:
            words.append("trace=1")
        if self.append:
            words.append(self.append)
        return " ".join(words)

    def qemu_argv(self) -> list[str]:
        argv = [self.variant.qemu, "-accel", "tcg", "-nodefaults", "-display", "none",
                "-no-reboot", "-name", "allocview-guest",
                "-m", self.memory, "-kernel", str(self.flat), "-append", self.cmdline,
                "-gdb", f"tcp:127.0.0.1:{self.gdb_port}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                *fixture_args(self.variant, self.console_path)]
        if self.paused:
            argv.append("-S")
        if self.shared_memory:
            argv += ["-object", f"memory-backend-file,id=ram,size={self.memory},"
                     f"mem-path={self.mem_path},share=on", "-machine", "memory-backend=ram"]
        return argv + list(self.qemu_args)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Guest":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "Guest":
        if self.proc is not None:
            raise GuestError("already started")
        if self.do_build:
            _ensure_built()
        if shutil.which(self.variant.qemu) is None:
            raise GuestError(f"{self.variant.qemu} is not installed")
        if not self.flat.exists():
            raise GuestError(f"{self.flat} is missing: build tests/guest")
        if self._workdir_arg:
            self._workdir_arg.mkdir(parents=True, exist_ok=True)
            self.workdir = self._workdir_arg
        else:
            # the QMP socket lives here: keep the path well under 108 bytes
            tmp = tempfile.gettempdir()
            self.workdir = Path(tempfile.mkdtemp(prefix=f"allocview-{self.variant.name}-",
                                                 dir=tmp if len(tmp) < 60 else "/tmp"))
        last = ""
        for _attempt in range(5):
            self.gdb_port = free_port()
            for p in (self.qmp_path, self.console_path):
                p.unlink(missing_ok=True)
            with open(self.qemu_log_path, "w") as log:
                self.started_at = time.monotonic()
                self.proc = procs.spawn(self.qemu_argv(), stdout=log, stderr=subprocess.STDOUT)
            self._owned.append(self.proc)
            deadline = time.monotonic() + self.start_timeout
            while not self.qmp_path.exists() and self.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.close()
                    raise GuestError(f"QEMU made no QMP socket in {self.start_timeout} s\n"
                                     + self._describe())
                time.sleep(0.01)
            if self.proc.poll() is None:
                break
            last = self.qemu_log_path.read_text(errors="replace")
            procs.kill_tree(self.proc)
            if "bind" not in last.lower() and "in use" not in last.lower():
                self.close()
                raise GuestError(f"QEMU exited at start (status {self.proc.returncode}):\n"
                                 f"{' '.join(self.qemu_argv())}\n{last}")
        else:
            self.close()
            raise GuestError(f"QEMU could not bind a gdb port:\n{last}")
        self._connect_qmp()
        return self

    def _connect_qmp(self) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        deadline = time.monotonic() + self.start_timeout
        while True:
            qmp = QEMUMonitorProtocol(str(self.qmp_path))
            try:
                qmp.connect()
                break
            except Exception as e:  # noqa: BLE001 - retried, then reported
                try:
                    qmp.close()
                except Exception:  # noqa: BLE001
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise GuestError(f"QMP connect failed: {e!r}\n" + self._describe()) from e
                time.sleep(0.05)
        qmp.settimeout(120.0)
        self._qmp = qmp

    def close(self) -> int | None:
        """Kill gdb and QEMU, remove the work directory (unless kept);
        QEMU's exit status (negative: killed)."""
        if self._gdb is not None:
            try:
                self._gdb.close()
            finally:
                self._gdb = None
        if self._qmp is not None:
            try:
                self._qmp.close()
            except Exception:  # noqa: BLE001 - QEMU may be gone already
                pass
            self._qmp = None
        if self.proc is not None:
            rc = self.proc.poll()
            killed = procs.kill_tree(self.proc)
            if self.qemu_status is None:
                self.qemu_status = rc if rc is not None else killed
            if self.exit_status is None:
                self.exit_status = self._test_status(self.qemu_status, rc is not None)
        _kill_owned(self._owned)
        if self.workdir is not None and not self.keep_workdir and self._workdir_arg is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.exit_status

    @property
    def running(self) -> bool:
        """QEMU's process is alive (the guest may be paused)."""
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------ console
    @property
    def console(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def init_calls(self):
        """The `init_area` lines as tests/guest/workload.InitCall tuples."""
        from guest.workload import parse_init_calls

        return parse_init_calls(self.console)

    @property
    def checkpoints(self) -> dict[int, tuple[int, int]]:
        """{n: (ops, hash)} printed so far."""
        return parse_checkpoints(self.console)

    def _describe(self, tail: int = 3000) -> str:
        qlog = ""
        try:
            qlog = self.qemu_log_path.read_text(errors="replace")
        except (OSError, GuestError):
            pass
        status = self.proc.poll() if self.proc else None
        return (f"variant {self.variant.name}, cmdline {self.cmdline!r}, QEMU status {status}\n"
                f"--- console (tail) ---\n{self.console[-tail:]}\n--- qemu ---\n{qlog[-tail:]}")

    def wait_console(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Wait for a console line matching `pattern` (a regex, MULTILINE)."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console)
            if m:
                return m
            if not self.running:
                m = rx.search(self.console)
                if m:
                    return m
                raise GuestError(f"QEMU exited before {pattern!r} appeared\n" + self._describe())
            if time.monotonic() > deadline:
                raise GuestError(f"{pattern!r} did not appear in {timeout} s\n" + self._describe())
            time.sleep(0.02)

    def wait_checkpoint(self, n: int, timeout: float = 60.0) -> tuple[int, int]:
        """Wait (guest running, no gdb stop) until `checkpoint n` is printed;
        its (ops, hash)."""
        m = self.wait_console(rf"^checkpoint {int(n)} ops=(\d+) hash=0x([0-9a-f]+)", timeout)
        return int(m[1]), int(m[2], 16)

    @property
    def console_status(self) -> int | None:
        """The console's `EXIT: STATUS=` value (non-x86 guests print it)."""
        return parse_exit_status(self.console)

    def _test_status(self, qemu_status: int | None, exited: bool) -> int | None:
        if self.variant.status_from_qemu or not exited:
            return qemu_status
        line = self.console_status
        return line if line is not None else qemu_status

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait until QEMU exits; the test's status ((code << 1) | 1 for
        exit(code)): QEMU's own on x86 (isa-debug-exit), aarch64
        (semihosting) and riscv64 (virt test device), the console's
        `EXIT: STATUS=` line on s390x and ppc64 (QEMU's 0 when the guest
        printed none). `qemu_status` keeps QEMU's."""
        if self.proc is None:
            raise GuestError("the guest is not started")
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestError(f"QEMU still running after {timeout} s\n" + self._describe()) from None
        self.qemu_status = rc
        self.exit_status = self._test_status(rc, True)
        return self.exit_status

    # ------------------------------------------------------------ control
    @property
    def qmp(self):
        """The connected qemu.qmp.legacy.QEMUMonitorProtocol."""
        if self._qmp is None:
            raise GuestError("QMP is not connected")
        return self._qmp

    def query_status(self) -> str:
        return self.qmp.cmd("query-status")["status"]

    def resume(self) -> None:
        """Let the guest run: detach gdb if attached (gdb's detach resumes),
        else QMP `cont`."""
        if self._gdb is not None:
            gdb, self._gdb = self._gdb, None
            gdb.detach()
            gdb.close()
        else:
            self.qmp.cmd("cont")
        self.stopped_at = None

    @property
    def gdb(self) -> Gdb:
        """A gdb attached to the guest (attaching stops it)."""
        if self._gdb is None:
            if self.proc is None or not self.running:
                raise GuestError("QEMU is not running\n" + (self._describe() if self.proc else ""))
            gdb = Gdb(self.elf, self.variant.gdb_arch, log_path=self.gdb_log_path,
                      gdb=self.variant.gdb, load_offset=self.variant.load_offset)
            self._owned.append(gdb.proc)
            try:
                gdb.connect(self.gdb_port)
            except Exception:
                gdb.close()
                raise
            self._gdb = gdb
        return self._gdb

    def stop_at_checkpoint(self, n: int, timeout: float = 60.0) -> Gdb:
        """Run until the guest enters checkpoint(n) and keep it stopped
        there; the attached Gdb. The guest must not be past n already."""
        if self.stopped_at == n:
            return self.gdb
        seen = self.checkpoints
        if any(k >= n for k in seen):
            raise GuestError(f"the guest is already past checkpoint {n} (seen {sorted(seen)})")
        gdb = self.gdb
        try:
            gdb.run_to_checkpoint(n, timeout)
        except Exception as e:
            raise GuestError(f"stopping at checkpoint {n} failed: {e}\n" + self._describe()) from e
        self.stopped_at = n
        return gdb

    def dump_guest_memory(self, path: "str | Path") -> Path:
        """QMP dump-guest-memory: an ELF core of all guest RAM at `path`."""
        path = Path(path).resolve()
        self.qmp.cmd("dump-guest-memory", paging=False, protocol=f"file:{path}")
        return path

    def mem_file_offset(self, addr: int) -> int:
        """Where guest physical `addr` lies in the shared memory file."""
        return addr - self.variant.ram_start

    def pmemsave(self, addr: int, size: int, path: "str | Path") -> Path:
        """QMP pmemsave: `size` bytes of guest physical memory at `addr`."""
        path = Path(path).resolve()
        self.qmp.cmd("pmemsave", val=addr, size=size, filename=str(path))
        return path

    def read_phys(self, addr: int, size: int) -> bytes:
        """Guest physical memory through pmemsave and a temporary file."""
        path = self._path(f"pmem-{addr:x}-{size:x}.bin")
        try:
            return self.pmemsave(addr, size, path).read_bytes()
        finally:
            path.unlink(missing_ok=True)


def time_to_checkpoint(variant: "str | Variant" = "x86_64-2021", n: int = 1,
                       memory: str = "256M", **kwargs) -> float:
    """Seconds from starting QEMU (running, no gdb) until the console
    shows `checkpoint n`."""
    with Guest(variant, memory=memory, paused=False, **kwargs) as g:
        g.wait_checkpoint(n, timeout=120.0)
        assert g.started_at is not None
        return time.monotonic() - g.started_at
