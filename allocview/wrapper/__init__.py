"""allocview-qemu's parts: what the QEMU command line asks for
(`qemu_argv`), allocview's own settings from the environment (`settings`),
the children it owns (`children`), gdb over MI (`mi`), a minimal QMP
(`qmp`), one supervised test run (`supervise`) and what is left of it
(`results`). `allocview.qemu_wrapper` ties them together.

Importing this package never starts a process or reads a file.
"""
