"""Guest RAM read straight out of the QEMU process that holds it.

A QEMU running on this host under our user keeps guest RAM in its own
address space. HMP says where: `info mtree -f` lists which guest physical
ranges are RAM, `gpa2hva` gives the host address of each; then a read is a
pread of /proc/PID/mem (read-only, no ptrace stop). That costs about a
microsecond a list node and 0.6 ms a MiB, where pmemsave costs ~0.45 ms a
QMP command and the gdb stub ~70 us a round trip, so the figures of the
QMP client and the gdb extension come from here whenever it is possible.

Both monitors reach HMP (QMP's `human-monitor-command`, gdb's `monitor`),
so both share this module. It is standard library only: gdb's own Python
imports it without a venv. Whatever stops it (another host, another user,
a QEMU in another PID namespace, no /proc) makes `HostMemory.open` raise
HostMemoryUnavailable with the reason, and callers keep their own path.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable, Iterable

from allocview.model.errors import MemoryReadError

__all__ = ["RamRange", "HostFirst", "HostMemory", "HostMemoryUnavailable", "parse_mtree",
           "parse_gpa2hva",
           "tcp_port_owner", "unix_peer_pid"]

# one HMP command line in, its output out; many commands per call so QMP
# can pipeline them
Monitor = Callable[[list[str]], list[str]]


class HostMemoryUnavailable(Exception):
    """Why guest RAM cannot be read from the QEMU process (one line)."""


@dataclass(frozen=True)
class RamRange:
    """Guest physical [gpa, end) is RAM: `region` at `offset` onward."""
    gpa: int
    end: int
    region: str
    offset: int


# `  0000000000100000-00000000bfffffff (prio 0, ram): pc.ram @0000000000100000 KVM`
_FLAT_LINE = re.compile(r"^\s+([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ([^)]+)\): "
                        r"(\S+)(?: @([0-9a-f]+))?")


def parse_mtree(text: str) -> list[RamRange]:
    """The RAM ranges of the flat view of address space "memory" (what
    the CPUs see) in `info mtree -f` output, ascending."""
    out: list[RamRange] = []
    in_memory = False
    for line in text.splitlines():
        if line.startswith("FlatView"):
            in_memory = False
        elif line.startswith(' AS "memory"'):
            in_memory = True
        elif in_memory and (m := _FLAT_LINE.match(line)) and m.group(3) == "ram":
            lo, hi = int(m.group(1), 16), int(m.group(2), 16) + 1
            out.append(RamRange(lo, hi, m.group(4), int(m.group(5) or "0", 16)))
    return sorted(out, key=lambda r: r.gpa)


_GPA2HVA = re.compile(r"Host virtual address for (0x[0-9a-f]+) \((\S+)\) is (0x[0-9a-f]+)")


def parse_gpa2hva(text: str) -> tuple[int, str, int] | None:
    """(gpa, region, hva) from HMP `gpa2hva` output, None for an error."""
    m = _GPA2HVA.search(text)
    return (int(m.group(1), 16), m.group(2), int(m.group(3), 16)) if m else None


class HostMemory:
    """Guest physical memory through /proc/PID/mem: `read(phys, size)`
    (a Memory of physical addresses), reads outside RAM raise
    MemoryReadError, as do reads the kernel refuses."""

    def __init__(self, pid: int, ranges: Iterable[tuple[int, int, int]]):
        self.pid = pid
        self.ranges = _merged(ranges)       # (gpa, end, hva)
        self._starts = [r[0] for r in self.ranges]
        try:
            self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise HostMemoryUnavailable(f"cannot open /proc/{pid}/mem: {e.strerror}") from None

    @classmethod
    def open(cls, pid: int | None, monitor: Monitor, *, mtree: str | None = None,
             answers: Iterable[str] = ()) -> "HostMemory":
        """Ask the monitor where RAM lives in QEMU process `pid` and open
        its memory. `mtree` is `info mtree -f` output and `answers` are
        `gpa2hva` outputs the caller already has (it may pipeline them with
        other commands). Raises HostMemoryUnavailable saying why not."""
        if not pid:
            raise HostMemoryUnavailable("QEMU's process is not visible from here")
        if not os.access(f"/proc/{pid}/mem", os.R_OK):
            raise HostMemoryUnavailable(f"/proc/{pid}/mem is not readable by this user")
        ram = parse_mtree(mtree if mtree is not None else monitor(["info mtree -f"])[0])
        if not ram:
            raise HostMemoryUnavailable("`info mtree -f` shows no RAM (not a QEMU monitor?)")
        # One gpa2hva per RAM region: its ranges sit at their offsets from
        # one host base (a RAMBlock is one host mapping).
        base: dict[str, int] = {}
        known = [a for a in map(parse_gpa2hva, answers) if a is not None]
        for gpa, region, hva in known:
            for r in ram:
                if r.gpa <= gpa < r.end and r.region == region:
                    base.setdefault(region, hva - (gpa - r.gpa) - r.offset)
        ask: dict[str, RamRange] = {}
        for r in ram:
            if r.region not in base:
                ask.setdefault(r.region, r)
        if ask:
            for r, text in zip(ask.values(), monitor([f"gpa2hva {r.gpa:#x}" for r in ask.values()])):
                got = parse_gpa2hva(text)
                if got is None or got[0] != r.gpa:
                    raise HostMemoryUnavailable(f"gpa2hva {r.gpa:#x}: {text.strip()[:80]!r}")
                base[r.region] = got[2] - r.offset
        ranges = [(r.gpa, r.end, base[r.region] + r.offset) for r in ram]
        outside = _outside_mappings(pid, ranges)
        if outside is not None:
            gpa, end, hva = outside
            raise HostMemoryUnavailable(f"guest {gpa:#x}-{end:#x} would be at {hva:#x} in QEMU, "
                                        "which maps nothing there")
        return cls(pid, ranges)

    def _hva(self, phys: int, size: int) -> int | None:
        i = bisect_right(self._starts, phys) - 1
        if i < 0:
            return None
        gpa, end, hva = self.ranges[i]
        return hva + phys - gpa if phys + size <= end else None

    def read(self, phys: int, size: int) -> bytes:
        if size <= 0:
            return b""
        hva = self._hva(phys, size)
        if hva is None:
            raise MemoryReadError(phys, size, "not in one RAM range of the QEMU process")
        try:
            data = os.pread(self._fd, size, hva)
        except OSError as e:
            raise MemoryReadError(phys, size, f"/proc/{self.pid}/mem: {e.strerror}") from None
        if len(data) != size:
            raise MemoryReadError(phys, size, f"/proc/{self.pid}/mem: short read")
        return data

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """Each (phys, size) read, None where it cannot be (one loop: list
        nodes come in hundreds)."""
        out: list[bytes | None] = []
        starts, spans, fd, pread = self._starts, self.ranges, self._fd, os.pread
        for phys, size in ranges:
            i = bisect_right(starts, phys) - 1
            data = None
            if i >= 0 and size > 0:
                gpa, end, hva = spans[i]
                if phys + size <= end:
                    try:
                        data = pread(fd, size, hva + phys - gpa)
                    except OSError:
                        pass
                    if data is not None and len(data) != size:
                        data = None
            out.append(data)
        return out

    def covers(self, phys: int, size: int) -> bool:
        return self._hva(phys, size) is not None

    def ram_ranges(self) -> list[tuple[int, int]]:
        """Guest physical RAM, [(start, end)]."""
        return [(gpa, end) for gpa, end, _hva in self.ranges]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __repr__(self) -> str:
        return f"HostMemory(pid={self.pid}, {len(self.ranges)} RAM ranges)"


def _outside_mappings(pid: int, ranges: list[tuple[int, int, int]]):
    """The first (gpa, end, hva) range whose host bytes are not all inside
    mappings of the process (so a wrong guess is refused, never read); None
    when every range is mapped, or when /proc/PID/maps cannot say."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            spans = sorted(tuple(int(x, 16) for x in line.split(None, 1)[0].split("-"))
                           for line in f)
    except (OSError, ValueError):
        return None
    starts = [lo for lo, _ in spans]
    for gpa, end, hva in ranges:
        pos, stop = hva, hva + (end - gpa)
        i = bisect_right(starts, pos) - 1
        while i >= 0 and i < len(spans) and spans[i][0] <= pos < stop:
            pos = max(pos, spans[i][1])
            i += 1
        if pos < stop:
            return gpa, end, hva
    return None


def _merged(ranges: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Ranges that continue one another in both address spaces as one, so
    a read may cross the seam (flat views cut RAM at every overlay)."""
    out: list[tuple[int, int, int]] = []
    for gpa, end, hva in sorted(ranges):
        if out and out[-1][1] == gpa and out[-1][2] + (gpa - out[-1][0]) == hva:
            out[-1] = (out[-1][0], end, out[-1][2])
        else:
            out.append((gpa, end, hva))
    return out


class HostFirst:
    """A Memory that serves guest RAM from the QEMU process and anything
    else from `fallback` (a gdb stub, gdb/MI). Guest addresses are read as
    physical ones (kvm-unit-tests identity-maps RAM), so the first read
    goes both ways and must agree before the host serves anything; when it
    does not, `refused` says why, `on_refused(reason)` is told, and the
    fallback serves from then on. stats: "reads" and "host_reads"."""

    def __init__(self, host: HostMemory, fallback, on_refused: Callable[[str], None] | None = None):
        self.host: HostMemory | None = host
        self.fallback = fallback
        self.on_refused = on_refused
        self.refused: str | None = None
        self.stats = {"reads": 0, "host_reads": 0}
        self._verified = False

    def ram_ranges(self) -> list[tuple[int, int]] | None:
        """Where RAM is (guest addresses read as physical), while the host
        serves."""
        return self.host.ram_ranges() if self.host is not None else None

    def _slow(self, addr: int, size: int) -> bytes:
        self.stats["reads"] += 1
        return self.fallback.read(addr, size)

    def _host_ok(self, addr: int, size: int) -> bool:
        if self.host is None or not self.host.covers(addr, size):
            return False
        if self._verified:
            return True
        try:
            same = self.host.read(addr, size) == self._slow(addr, size)
        except MemoryReadError:
            same = False
        if same:
            self._verified = True
            return True
        self.refused = (f"{addr:#x}+{size} reads differently from /proc/{self.host.pid}/mem "
                        "and from the stub")
        self.host = None
        if self.on_refused is not None:
            self.on_refused(self.refused)
        return False

    def read(self, addr: int, size: int) -> bytes:
        if self._host_ok(addr, size):
            try:
                data = self.host.read(addr, size)
                self.stats["host_reads"] += 1
                return data
            except MemoryReadError:
                pass
        return self._slow(addr, size)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        out: list[bytes | None] = [None] * len(ranges)
        if ranges and self._host_ok(*ranges[0]):
            out = self.host.read_many(ranges)
            self.stats["host_reads"] += sum(d is not None for d in out)
        rest = [i for i, d in enumerate(out) if d is None]
        if rest:
            from allocview.model.memory import read_many
            self.stats["reads"] += len(rest)
            for i, d in zip(rest, read_many(self.fallback, [ranges[i] for i in rest])):
                out[i] = d
        return out


# ------------------------------------------------------------ whose socket

def unix_peer_pid(sock) -> int | None:
    """The pid at the other end of a connected unix socket (SO_PEERCRED),
    None when unknown (0 means another PID namespace)."""
    import socket
    import struct
    if getattr(sock, "family", None) != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


def _tcp_inodes(port: int) -> set[int]:
    """Inodes of this network namespace's TCP sockets bound to local `port`."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(int(fields[9]))
        except OSError:
            continue
    found.discard(0)
    return found


def tcp_port_owner(port: int, *, comm_prefix: str = "qemu") -> int | None:
    """The pid of the process (named `comm_prefix`...) holding a TCP socket
    on local `port` of this host: the QEMU behind `-gdb tcp::PORT`. None
    when none is visible, or more than one is."""
    inodes = _tcp_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    me = os.getpid()
    owners = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                if not f.read().startswith(comm_prefix):
                    continue
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") in wanted:
                    owners.add(int(name))
                    break
            except OSError:
                continue
    return owners.pop() if len(owners) == 1 else None


def qmp_sockets(pid: int) -> list[str]:
    """The unix-socket QMP monitors on process `pid`'s command line
    (`-qmp unix:PATH,...`, or a `-chardev socket,path=PATH` that a
    `-mon ...,mode=control` uses), existing paths only."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return []
    out, chardevs, control = [], {}, set()
    for opt, val in zip(argv, argv[1:]):
        opt = opt.lstrip("-")
        if opt in ("qmp", "qmp-pretty") and val.startswith("unix:"):
            out.append(val[5:].split(",", 1)[0])
        elif opt == "chardev" and val.startswith("socket,"):
            kv = dict(p.split("=", 1) for p in val.split(",")[1:] if "=" in p)
            if "id" in kv and "path" in kv:
                chardevs[kv["id"]] = kv["path"]
        elif opt == "mon":
            kv = dict(p.split("=", 1) for p in val.split(",") if "=" in p)
            if kv.get("mode") == "control" and "chardev" in kv:
                control.add(kv["chardev"])
    out += [chardevs[c] for c in control if c in chardevs]
    if pid_cwd := _cwd(pid):
        out = [p if p.startswith("/") else os.path.join(pid_cwd, p) for p in out]
    return [p for p in out if os.path.exists(p)]


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def stub_owner(address: str) -> tuple[int | None, str]:
    """(pid, "") of the local QEMU whose gdb stub listens at "HOST:PORT",
    or (None, why not). Only loopback or this machine's name counts as
    local (no DNS lookup: it could hang the caller)."""
    import socket
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit():
        return None, f"the target is not a gdb stub on a TCP port ({address or 'none'})"
    if not (host in ("", "localhost", "::1", socket.gethostname()) or host.startswith("127.")):
        return None, f"the stub is on another host ({address})"
    pid = tcp_port_owner(int(port))
    if pid is None:
        return None, f"no QEMU process on this host owns port {port}"
    return pid, ""
