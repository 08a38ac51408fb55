"""Just enough QMP to let a paused guest run on: `query-status`, `cont`.

The wrapper needs QMP only when gdb fails while it holds the guest
stopped, so this is a blocking socket with a timeout on every read. It
does not use qemu.qmp: that client's asyncio tasks report a QEMU that goes
away as tracebacks on stderr, and stderr here is the test's.
"""

from __future__ import annotations

import json
import socket
import time

__all__ = ["QmpError", "command", "resume"]


class QmpError(RuntimeError):
    """QMP did not answer, or answered with an error."""


def _reply(f, deadline: float) -> dict:
    """The next non-event message."""
    while True:
        if time.monotonic() > deadline:
            raise QmpError("no answer in time")
        line = f.readline()
        if not line:
            raise QmpError("QEMU closed the monitor")
        msg = json.loads(line)
        if "event" not in msg:
            return msg


def command(path: str, *names: str, timeout: float = 5.0) -> list:
    """Run QMP commands in order on a new connection; their return values."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            with s.makefile("rwb") as f:
                if "QMP" not in _reply(f, deadline):
                    raise QmpError("no QMP greeting")
                out = []
                for name in ("qmp_capabilities",) + names:
                    f.write(json.dumps({"execute": name}).encode() + b"\n")
                    f.flush()
                    msg = _reply(f, deadline)
                    if "error" in msg:
                        raise QmpError(f"{name}: {msg['error'].get('desc', msg['error'])}")
                    out.append(msg.get("return"))
                return out[1:]
    except (OSError, ValueError) as e:
        raise QmpError(str(e) or type(e).__name__) from None


def resume(path: str, timeout: float = 5.0) -> str:
    """`cont` when the guest is held (by -S or a gdb stop); the status seen
    before. A guest paused for its own reasons (panic, I/O error) is left."""
    status = command(path, "query-status", timeout=timeout)[0]["status"]
    if status in ("prelaunch", "debug"):
        command(path, "cont", timeout=timeout)
    return status
