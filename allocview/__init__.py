"""allocview outside gdb: where guest bytes come from (`allocview.sources`),
what a guest program's ELF says (`allocview.symbols`), and the command line.

Importing this package never touches a target.
"""
