"""allocview inside gdb. The only package that imports `gdb`; sourced via
gdbext/alloc.py."""
