"""What a QEMU command line asks for, seen by a wrapper that must behave as
QEMU: whether to hand it straight to QEMU, which kernel it boots, which
qemu-system-* runs that kernel and which ELF has its symbols.

QEMU's own parser decides whether an option takes an argument from a
table; `NO_ARG` is that table's flag half (QEMU 7-9), every other option
takes one argument. `-opt` and `--opt` are the same option.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

__all__ = ["Invocation", "analyse", "qemu_for", "elf_for", "name_for_test", "NO_ARG"]

# Options without an argument (qemu-system-* -help; older and newer ones too).
NO_ARG = frozenset("""
    h help version S s snapshot nographic no-reboot no-shutdown nodefaults
    no-user-config daemonize enable-kvm xen-attach xen-domid-restrict
    full-screen no-frame alt-grab ctrl-grab no-quit sdl curses portrait
    no-fd-bootchk no-hpet no-acpi win2k-hack rtc-td-hack singlestep
    one-insn-per-tb preconfig only-migratable enable-fips semihosting
    mem-prealloc usb old-param audio-help enable-sync-profile async-teardown
    perfmap jitdump
""".split())

# Flags that answer a probe, and options whose run allocview must not touch:
# the user's own gdb stub or -S (they mean to drive the guest), a migration
# target, a QEMU that forks away from its parent.
_PROBES = frozenset({"h", "help", "version", "audio-help"})
_HANDS_OFF = frozenset({"s", "gdb", "S", "incoming", "daemonize", "preconfig"})


@dataclass(frozen=True)
class Invocation:
    """`passthrough`: why QEMU gets the command line alone (None: wrap it).
    `kernel`: the -kernel argument, when there is one."""
    argv: tuple[str, ...]
    kernel: str | None
    passthrough: str | None


def _options(argv: list[str]):
    """(option name without dashes, argument or None) in order; a bare
    word (QEMU's old positional disk image) comes as ("", word)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or word == "-":
            yield "", word
            i += 1
            continue
        name = word[2:] if word.startswith("--") else word[1:]
        if name in NO_ARG or i + 1 >= len(argv):
            yield name, None
            i += 1
        else:
            yield name, argv[i + 1]
            i += 2


def _asks_help(value: str | None) -> bool:
    """`-device help`, `-device '?'`, `-cpu help`, `-device e1000,help`..."""
    if value is None:
        return False
    last = value.rsplit(",", 1)[-1]
    return last in ("help", "?")


def analyse(argv: list[str]) -> Invocation:
    kernel = None
    why = None
    for name, value in _options(argv):
        if name in _PROBES:
            why = why or f"-{name}"
        elif _asks_help(value):
            why = why or f"-{name} {value}"
        elif name in _HANDS_OFF:
            why = why or f"-{name} given"
        elif name == "kernel":
            kernel = value
    if why is None and not kernel:
        why = "no -kernel"
    elif why is None and not os.path.isfile(kernel):
        # the runner's probe boots "_NO_FILE_4Uhere_" to see QEMU's error
        why = f"no kernel file {kernel}"
    return Invocation(tuple(argv), kernel, why)


# ------------------------------------------------------------- ELF headers
def _elf_header(path: str) -> tuple[int, str] | None:
    """(class bits 32|64, e_machine name) of an ELF file, None for anything
    else (pyelftools reads the header)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            return elf.elfclass, str(elf.header["e_machine"])
    except (OSError, ELFError, ValueError, KeyError):
        return None


def elf_for(kernel: str, override: str | None = None) -> str | None:
    """The ELF with the kernel's symbols: `override`, else `foo.elf` beside
    `foo.flat` (kvm-unit-tests and the fixture guest boot an objcopy of
    it), else the kernel itself when it is an ELF."""
    if override:
        return override
    root, ext = os.path.splitext(kernel)
    if ext != ".elf" and os.path.isfile(root + ".elf"):
        return root + ".elf"
    return kernel if _elf_header(kernel) else None


def qemu_for(kernel: str | None, elf: str | None, cwd: str = ".",
             argv: list[str] | None = None) -> str | None:
    """qemu-system-<arch> for the kernel (model.arch's QEMU of the ELF's
    arch). An x86 `.flat` is an ELF32 i386 image whatever the code inside,
    and qemu-system-x86_64 runs 32-bit code too: so x86_64, unless the
    program's own ELF is 32-bit i386, which needs qemu-system-i386 (gdb's
    i386 registers match only its stub). A kernel that is no ELF (arm's raw
    .flat) goes by its ELF. No kernel (a probe, or the runner's
    _NO_FILE_4Uhere_ run): the arch of the kvm-unit-tests tree the runner
    runs in (its config.mak), else the one the command line's -machine and
    -cpu name, else the host's."""
    from allocview.model.arch import ARCHES, by_elf
    if kernel is None:
        arch = _tree_arch(cwd) or _argv_arch(argv or [])
        if arch is not None:
            return arch.boot.qemu
        host = platform.machine().lower()
        return f"qemu-system-{ {'amd64': 'x86_64', 'arm64': 'aarch64'}.get(host, host) or 'x86_64'}"
    head = _elf_header(kernel)
    other = _elf_header(elf) if elf and os.path.abspath(elf) != os.path.abspath(kernel) else None
    if head is None:
        head = other
    if head is None:
        return None
    if head[1] == "EM_386":
        return ARCHES["i386" if other == (32, "EM_386") else "x86_64"].boot.qemu
    found = by_elf(head[1], head[0] // 8)
    return found.boot.qemu if found else None


def _argv_arch(argv: list[str]):
    """The one arch whose machine (and cpu, where several share it: virt)
    the command line asks for, else None."""
    from allocview.model.arch import ARCHES
    opts = dict(_options(argv))
    machine = (opts.get("machine") or opts.get("M") or "").split(",")[0]
    cpu = (opts.get("cpu") or "").split(",")[0]
    found = [a for a in ARCHES.values() if a.boot.machine == machine]
    if len(found) > 1:
        found = [a for a in found if a.boot.cpu == cpu]
    return found[0] if len(found) == 1 else None


def _tree_arch(cwd: str):
    """The arch of the kvm-unit-tests build in `cwd`: ARCH= in its
    config.mak (the runner runs there)."""
    from allocview.model.arch import by_runner_arch
    try:
        with open(os.path.join(cwd, "config.mak")) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "ARCH":
                    return by_runner_arch(value.strip())
    except OSError:
        pass
    return None


def name_for_test(kernel: str, env: dict[str, str]) -> str:
    """ALLOCVIEW_TEST_NAME, else the kvm-unit-tests runner's TESTNAME (one
    kernel serves several tests), else the kernel's file name."""
    name = env.get("ALLOCVIEW_TEST_NAME") or env.get("TESTNAME")
    if not name:
        name = os.path.splitext(os.path.basename(kernel))[0]
    # one file name per test: no directories, nothing hidden
    return name.replace("/", "_").lstrip(".") or "test"
