"""gdb driven over MI: allocview's one MI driver (the CLI's --gdb source,
drive through it, and allocview-qemu, which must never hang its test).

One reader thread turns gdb's output into records (pygdbmi's parser) and
puts them on the `Bus`, where the QEMU waiter thread and the signal handler
put theirs: one queue, so waiting for gdb also notices a QEMU that exits or
a SIGTERM. Every wait has a deadline; a QEMU that is gone or a termination
signal shortens it to a grace period (gdb answers at once when its remote
closes, and the runner's `timeout -k 1s` leaves about a second after
SIGTERM).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from subprocess import PIPE, STDOUT

from pygdbmi.gdbmiparser import parse_response

from allocview.model.errors import MemoryReadError

from .errors import SourceError
from .wrapper.children import kill, reap, spawn

__all__ = ["Bus", "MiError", "MiSession", "StubMemory", "session_memory", "GRACE", "CHUNK",
           "BATCH", "c_string", "message"]

CHUNK = 64 << 10         # bytes per -data-read-memory-bytes: gdb answers in hex
BATCH = 64               # commands per write: one round trip to gdb
STUB_RATE = 1 << 20      # bytes per second the slowest stub still sends

GRACE = 0.8            # seconds left to gdb once QEMU is gone or a signal came


class MiError(RuntimeError):
    """gdb refused a command, gave no answer in time, or exited."""


class Bus:
    """Events in arrival order: ("gdb", record), ("gdb-eof", None),
    ("qemu", returncode), ("signal", signum). SimpleQueue's put is safe in a
    signal handler. `qemu_status` and `signals` keep what has been seen."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.qemu_status: int | None = None
        self.signals: list[int] = []

    def put(self, kind: str, value) -> None:
        self._q.put((kind, value))

    def get(self, timeout: float | None) -> tuple[str, object] | None:
        """The next event (None after `timeout`), noting QEMU's end and signals."""
        try:
            # short slices: signal handlers run between them at the latest
            ev = self._q.get(timeout=0.25 if timeout is None else max(0.0, min(timeout, 0.25)))
        except queue.Empty:
            return None
        if ev[0] == "qemu":
            self.qemu_status = ev[1]
        elif ev[0] == "signal":
            self.signals.append(ev[1])
        return ev

    @property
    def hurry(self) -> bool:
        """QEMU is gone or asked to go: whatever gdb does now is moot."""
        return self.qemu_status is not None or bool(self.signals)


class MiSession:
    """A gdb child speaking MI, its records on `bus`. `stops` collects the
    `*stopped` payloads seen while waiting for command results."""

    def __init__(self, gdb: str, bus: Bus | None = None):
        self.bus = bus or Bus()
        self.stops: list[dict] = []
        self.dead = False
        self.round_trips = 0
        self._token = 0
        # its own session: a Ctrl-C meant for us never interrupts the debugger
        self.proc = spawn([gdb, "--interpreter=mi3", "--nx", "--quiet"], own_session=True,
                          stdin=PIPE, stdout=PIPE, stderr=STDOUT)
        self._reader = threading.Thread(target=self._read, name="allocview-gdb", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if not line or line.startswith("(gdb)"):
                continue
            try:
                rec = parse_response(line)
            except Exception:  # noqa: BLE001 - gdb may print anything on its stderr
                rec = {"type": "output", "message": None, "payload": line, "token": None}
            self.bus.put("gdb", rec)
        self.bus.put("gdb-eof", None)

    # ------------------------------------------------------------ commands
    def send(self, commands: list[str]) -> list[int]:
        """Write commands in one go; their tokens."""
        if self.dead or self.proc.poll() is not None:
            raise MiError(f"gdb exited (status {self.proc.poll()})")
        tokens, lines = [], []
        for c in commands:
            self._token += 1
            tokens.append(self._token)
            lines.append(f"{self._token}{c}\n")
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("".join(lines).encode())
            self.proc.stdin.flush()
        except (OSError, ValueError) as e:
            raise MiError(f"gdb is gone ({e})") from None
        return tokens

    def batch(self, commands: list[str], timeout: float,
              streams: list[str] | None = None) -> list[dict]:
        """Result records of `commands`, in order; ^error records included.
        `streams` collects what gdb prints meanwhile (console, target)."""
        tokens = self.send(commands)
        self.round_trips += 1
        got: dict[int, dict] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(tokens):
            if self.bus.hurry:
                deadline = min(deadline, time.monotonic() + GRACE)
            left = deadline - time.monotonic()
            if left <= 0:
                raise MiError(f"gdb gave no answer to {commands[len(got)].split()[0]} "
                              f"in {timeout:g} s")
            ev = self.bus.get(left)
            if ev is None or ev[0] != "gdb":
                if ev is not None and ev[0] == "gdb-eof":
                    self.dead = True
                    raise MiError(f"gdb exited (status {self.proc.poll()})")
                continue
            rec = ev[1]
            if rec.get("type") == "result" and rec.get("token") in tokens:
                got[rec["token"]] = rec
            elif rec.get("type") == "notify" and rec.get("message") == "stopped":
                self.stops.append(rec.get("payload") or {})
            elif streams is not None and rec.get("type") in ("console", "target"):
                streams.append(rec.get("payload") or "")
        return [got[t] for t in tokens]

    def interrupt(self) -> None:
        """SIGINT to gdb: it interrupts the target (a call that hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def command(self, command: str, timeout: float) -> dict:
        """One command's result payload; MiError on ^error."""
        rec = self.batch([command], timeout)[0]
        if rec.get("message") == "error":
            raise MiError(f"{command.split()[0]}: {message(rec)}")
        return rec.get("payload") or {}

    # ----------------------------------------------------------- lifecycle
    def close(self, polite: bool) -> None:
        """End gdb: `-gdb-exit` first when `polite` (it has detached), else
        SIGKILL; never waits more than a moment."""
        if self.proc.poll() is None and polite and not self.dead:
            try:
                self.send(["-gdb-exit"])
                self.proc.wait(1.0)
            except Exception:  # noqa: BLE001 - killed below
                pass
        kill(self.proc)
        reap(self.proc, 2.0)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except (OSError, AttributeError):
                pass
        self.dead = True


def message(rec: dict) -> str:
    """What an MI record says (an ^error's msg)."""
    payload = rec.get("payload") or {}
    return str(payload.get("msg", payload)) if isinstance(payload, dict) else str(payload)


def c_string(text: str) -> str:
    """A C string literal for an MI argument."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def session_memory(session: MiSession, label: str, budget: float) -> StubMemory:
    """Guest memory read through the wrapper's own MI session (which owns
    gdb and the target): every read shares one deadline, the check's time
    budget."""
    deadline = time.monotonic() + budget

    def batch(commands: list[str], timeout: float) -> list[dict]:
        left = deadline - time.monotonic()
        try:
            return session.batch(commands, max(0.0, min(timeout, left)))
        except MiError as e:
            raise SourceError(f"{label}: {e}") from None
    return StubMemory(batch, label, budget)


class StubMemory:
    """Guest memory through gdb/MI `-data-read-memory-bytes`, BATCH commands
    a write: `batch(commands, timeout)` sends commands and gives their result
    records (a GdbMiSource's own gdb, or the wrapper's MI session).
    `timeout` is allowed for a silent stub, plus time for the bytes."""

    def __init__(self, batch, label: str, timeout: float):
        self.batch = batch
        self.label = label
        self.timeout = timeout

    def read(self, addr: int, size: int) -> bytes:
        got = self._read_ranges([(addr, size)])[0]
        if isinstance(got, MemoryReadError):
            raise got
        return got

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        return [g if isinstance(g, bytes) else None for g in self._read_ranges(ranges)]

    def _read_ranges(self, ranges: list[tuple[int, int]]) -> list:
        """bytes, or the MemoryReadError, per range."""
        pieces: list[tuple[int, int, int]] = []           # (range index, addr, size)
        errors: dict[int, MemoryReadError] = {}
        for i, (addr, size) in enumerate(ranges):
            if size < 0:
                errors[i] = MemoryReadError(addr, size, "negative size")
            for off in range(0, size, CHUNK):
                pieces.append((i, addr + off, min(CHUNK, size - off)))
        parts: list[list[bytes]] = [[] for _ in ranges]
        for b in range(0, len(pieces), BATCH):
            batch = pieces[b:b + BATCH]
            recs = self.batch([f"-data-read-memory-bytes {a:#x} {s}" for _, a, s in batch],
                              self.timeout + sum(s for _, _, s in batch) / STUB_RATE)
            for (i, a, s), rec in zip(batch, recs):
                if i in errors:
                    continue
                data = _contents(rec, a, s)
                if isinstance(data, str):
                    errors[i] = MemoryReadError(ranges[i][0], ranges[i][1], data)
                else:
                    parts[i].append(data)
        return [errors.get(i) or b"".join(parts[i]) for i in range(len(ranges))]


def _contents(rec: dict, addr: int, size: int) -> bytes | str:
    """The bytes a -data-read-memory-bytes result holds for exactly
    [addr, addr + size), or why not (gdb returns only readable blocks)."""
    if rec["message"] != "done":
        return message(rec)
    blocks = sorted((int(m["begin"], 16), m["contents"])
                    for m in (rec.get("payload") or {}).get("memory", []))
    pos, out = addr, []
    for begin, hexdata in blocks:
        if begin != pos:
            return f"gdb could read only part (no bytes at {pos:#x})"
        data = bytes.fromhex(hexdata)
        out.append(data)
        pos += len(data)
    if pos != addr + size:
        return f"gdb could read only part (no bytes at {pos:#x})"
    return b"".join(out)
