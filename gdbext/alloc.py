"""allocview for gdb: `source .../gdbext/alloc.py`, then `help alloc`.

Works from a checkout (`source gdbext/alloc.py`) and from an installed
wheel (`allocview gdb-init` prints the line), in gdb's own Python, with or
without a venv. It loads the `allocview` package this file belongs to (the
checkout's, or the one installed around it), adds that environment's
site-packages after gdb's own paths when its Python is gdb's minor version
(for rich; plain text without it), and registers the `alloc` commands,
`set/show alloc` settings, pretty-printers and $alloc_* functions once,
however often it is sourced.
"""

import glob
import importlib.util
import os
import sys

import gdb  # type: ignore[import-not-found]

_HERE = os.path.dirname(os.path.abspath(__file__))
_PARENT = os.path.dirname(_HERE)
_INSTALLED = os.path.basename(_PARENT) == "allocview" and \
    os.path.isfile(os.path.join(_PARENT, "__init__.py"))
_PACKAGE = _PARENT if _INSTALLED else os.path.join(_PARENT, "allocview")


def _site_packages() -> list[str]:
    """Where allocview's dependencies are, when gdb's Python can use them."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if _INSTALLED:
        site = os.path.dirname(_PACKAGE)
        return [site] if f"{os.sep}{ver}{os.sep}" in site + os.sep else []
    return glob.glob(os.path.join(_PARENT, ".venv", "lib", ver, "site-packages"))


def _load_package() -> None:
    """`allocview` from this file's own tree, whatever else gdb's path has."""
    if "allocview" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "allocview", os.path.join(_PACKAGE, "__init__.py"), submodule_search_locations=[_PACKAGE])
    if spec is None or spec.loader is None:
        raise gdb.GdbError(f"allocview: no package at {_PACKAGE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["allocview"] = module
    spec.loader.exec_module(module)


def _load() -> None:
    for site in _site_packages():
        if site not in sys.path:
            sys.path.append(site)     # after gdb's own paths: its stdlib wins
    if getattr(gdb, "_allocview_registered", False):
        return
    if sys.version_info < (3, 10):
        raise gdb.GdbError(f"allocview: gdb's Python is {sys.version.split()[0]}; allocview "
                           "needs 3.10 or newer")
    try:
        _load_package()
        from allocview.gdbext import frontend, printers
    except ImportError as e:
        raise gdb.GdbError(f"allocview: cannot load ({e}); is {_PACKAGE} complete?")
    frontend.register()
    printers.register()
    gdb._allocview_registered = True


_load()
