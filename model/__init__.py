"""allocview's model of the kvm-unit-tests page allocator.

Pure Python, standard library only: gdb's embedded Python imports it
without a virtualenv. Data flows one way:

    Memory -> layout -> snapshot.decode -> check / stats / report
                                  reference.Allocator (the specification)

Importing this package never touches a target.
"""

from .check import check, errors
from .errors import AllocviewError, LayoutError, MemoryReadError, ModelError
from .findings import Finding, Severity
from .layout import Layout, Status, layout_for
from .memory import BytesMemory, Memory, SparseMemory
from .reference import Allocator
from .report import report
from .snapshot import Snapshot, decode
from .stats import stats, why

__all__ = [
    "Allocator", "AllocviewError", "BytesMemory", "Finding", "Layout", "LayoutError",
    "Memory", "MemoryReadError", "ModelError", "Severity", "Snapshot", "SparseMemory",
    "Status", "check", "decode", "errors", "layout_for", "report", "stats", "why",
]
