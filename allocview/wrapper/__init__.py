"""allocview-qemu's parts, one job each: what the QEMU command line asks
for (`qemu_argv`), allocview's own settings from the environment
(`settings`), the children and sockets it owns (`children`), where the
program ends and how few breakpoints that takes (`ends`), gdb over MI
(`mi`), just enough QMP to resume a guest (`qmp`), one supervised test run
(`supervise`, `outcome`) and the report and summary line left of it
(`results`). `allocview.qemu_wrapper` ties them together.

Importing this package never starts a process or reads a file.
"""
