"""allocview for gdb: `source gdbext/alloc.py`, then `help alloc`.

Works from any current directory, in gdb's own Python. Puts the project
on sys.path, adds the project's .venv site-packages when their Python
matches gdb's (for rich; plain text without it), and registers the `alloc`
commands, pretty-printers and $alloc_* functions once, however often it
is sourced.
"""

import glob
import os
import sys

import gdb  # type: ignore[import-not-found]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _add_paths() -> None:
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for site in glob.glob(os.path.join(_ROOT, ".venv", "lib", ver, "site-packages")):
        if site not in sys.path:
            sys.path.append(site)     # after gdb's own paths: its stdlib wins


def _load() -> None:
    _add_paths()
    if getattr(gdb, "_allocview_registered", False):
        return
    try:
        from gdbext import frontend, printers
    except ImportError as e:
        raise gdb.GdbError(f"allocview: cannot load ({e}); is {_ROOT} a whole checkout?")
    frontend.register()
    printers.register()
    gdb._allocview_registered = True


_load()
