"""allocview outside gdb: where guest bytes come from (`allocview.sources`),
what a guest program's ELF says (`allocview.symbols`), the commands both
front ends share (`allocview.commands`) and the command line.

Importing this package never touches a target, and needs nothing outside
the standard library (gdb's own Python imports it).
"""

import os

__all__ = ["gdb_script"]


def gdb_script() -> str:
    """The file gdb sources for the `alloc` commands, wherever allocview is."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "gdbext", "alloc.py"),
                      os.path.join(os.path.dirname(here), "gdbext", "alloc.py")):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError("allocview's gdbext/alloc.py is missing from this installation")
