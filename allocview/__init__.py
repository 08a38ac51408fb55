"""allocview: the allocator's model (`allocview.model`), the gdb extension
(`allocview.gdbext`), where guest bytes come from (`allocview.sources`),
what a guest program's ELF says (`allocview.symbols`), the commands both
front ends share (`allocview.commands`) and the command line.

Importing this package never touches a target, and needs nothing outside
the standard library (gdb's own Python imports it).

In a checkout, model/ and gdbext/ sit beside this directory (the layout
the project keeps); an installed wheel has them inside it. Either way they
are `allocview.model` and `allocview.gdbext`: nothing is installed under a
generic top-level name.
"""

import os

__all__ = ["gdb_script"]

_here = os.path.dirname(os.path.abspath(__file__))
_checkout = os.path.dirname(_here)
if not os.path.isdir(os.path.join(_here, "model")) and \
        os.path.isfile(os.path.join(_checkout, "model", "__init__.py")):
    __path__.append(_checkout)      # noqa: F821 - a package's own __path__


def gdb_script() -> str:
    """The file gdb sources for the `alloc` commands, wherever allocview is."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "gdbext", "alloc.py"),
                      os.path.join(os.path.dirname(here), "gdbext", "alloc.py")):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError("allocview's gdbext/alloc.py is missing from this installation")
