"""Test harness: builds the fixture guest (tests/guest) and boots it under
QEMU/TCG with gdb and QMP attached.

Importable as `harness` with tests/ on sys.path (pytest's conftest puts it
there); importing it also makes `guest.workload` importable.
"""

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from .build import (ARCHES, BUILD_DIR, GUEST_DIR, NEW_ARCHES, VARIANTS, Variant,  # noqa: E402
                    build, measure_build_time)
from .gdb import Gdb, GdbError, GdbTimeout, parse_value  # noqa: E402
from .qemu import (Guest, GuestError, fixture_args, free_port, parse_checkpoints,  # noqa: E402
                   parse_exit_status, time_to_checkpoint)
from .replay import elf_objects, model_for, replay  # noqa: E402

__all__ = [
    "ARCHES", "BUILD_DIR", "GUEST_DIR", "NEW_ARCHES", "VARIANTS", "Variant", "build",
    "measure_build_time",
    "Gdb", "GdbError", "GdbTimeout", "parse_value",
    "Guest", "GuestError", "fixture_args", "free_port", "parse_checkpoints",
    "parse_exit_status", "time_to_checkpoint",
    "elf_objects", "model_for", "replay",
]
