"""Child processes that never outlive their owner.

Every QEMU and gdb the harness starts goes through `spawn`: its own process
group (so a kill reaches anything it forked), PR_SET_PDEATHSIG so the kernel
kills it if the Python process dies without cleaning up (the signal follows
the *thread* that spawned it: spawn from a thread that lives as long as the
child), and a registry that an atexit hook empties.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
from typing import Sequence

__all__ = ["spawn", "kill_tree", "live_children", "kill_all"]

_PR_SET_PDEATHSIG = 1
_registry: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


def _child_setup() -> None:
    """Runs in the child between fork and exec."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def spawn(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen in a new session, killed with its owner."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=_child_setup,
                            **kwargs)
    with _lock:
        _registry[proc.pid] = proc
    return proc


def kill_tree(proc: subprocess.Popen | None, timeout: float = 5.0) -> int | None:
    """SIGKILL the process group of `proc`, reap it; its exit status."""
    if proc is None:
        return None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    with _lock:
        _registry.pop(proc.pid, None)
    return rc


def live_children() -> list[subprocess.Popen]:
    with _lock:
        return [p for p in _registry.values() if p.poll() is None]


def kill_all() -> None:
    with _lock:
        procs = list(_registry.values())
    for p in procs:
        kill_tree(p, timeout=2.0)


atexit.register(kill_all)
