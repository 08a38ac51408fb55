"""allocview's model of the kvm-unit-tests page allocator.

Pure Python, standard library only: gdb's embedded Python imports it
without a virtualenv. Data flows one way:

    Memory -> layout -> snapshot.decode -> check / stats / report
                                  reference.Allocator (the specification)

Importing this package never touches a target, and imports its modules
only as their names are used (a QEMU wrapper starts the guest sooner).
"""

from __future__ import annotations

import importlib

__all__ = [
    "Allocator", "AllocviewError", "BytesMemory", "Finding", "Layout", "LayoutError",
    "Memory", "MemoryReadError", "ModelError", "Severity", "Snapshot", "SparseMemory",
    "Status", "check", "decode", "layout_for", "report", "stats", "why",
]

_HOME = {
    "Allocator": "reference", "AllocviewError": "errors", "BytesMemory": "memory",
    "Finding": "findings", "Layout": "layout", "LayoutError": "errors", "Memory": "memory",
    "MemoryReadError": "errors", "ModelError": "errors", "Severity": "findings",
    "Snapshot": "snapshot", "SparseMemory": "memory", "Status": "layout", "check": "check",
    "decode": "snapshot", "layout_for": "layout", "report": "report",
    "stats": "stats", "why": "stats",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
