"""One inspection, the same for every front end: is this the program the
guest runs (machine, code) and where is it loaded; the snapshot; and
whether it holds an allocator to check at all.

    inspection = inspect(memory, program, guest_machine=src.guest_machine())
    inspection.snapshot, inspection.placement

Raises NothingToCheck (one line, the CLI's exit 2) when nothing can be
checked: the dump is another arch's, the ELF's code is not in the guest,
the allocator is not initialised, or `areas` holds no allocator.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocview.model.arch import arch as arch_named
from allocview.model.assess import Unchecked, assess, with_cause
from allocview.model.errors import AllocviewError
from allocview.model.memory import Memory
from allocview.model.placement import Placement, place
from allocview.model.program import Program
from allocview.model.snapshot import Snapshot, decode


__all__ = ["Inspection", "NothingToCheck", "inspect", "locate", "machine_mismatch",
           "require_checkable"]


class NothingToCheck(AllocviewError):
    """Nothing could be checked, and why (`unchecked`); `snapshot` is the
    state read, when one was."""

    def __init__(self, unchecked: Unchecked, snapshot: Snapshot | None = None,
                 placement: Placement | None = None):
        self.unchecked = unchecked
        self.snapshot = snapshot
        self.placement = placement
        super().__init__(f"nothing checked: {unchecked.reason}")


@dataclass(frozen=True)
class Inspection:
    snapshot: Snapshot
    placement: Placement | None
    program: Program

    def __iter__(self):
        return iter((self.snapshot, self.placement, self.program))


def machine_mismatch(guest_machine: tuple[str, int, str] | None, program: Program) -> str | None:
    """Why a guest image of (e_machine, class bits, endianness) cannot be
    the program's, or None."""
    if guest_machine is None:
        return None
    machine, bits, endian = guest_machine
    a = arch_named(program.arch)
    # a 32-bit x86 guest with RAM above 4 GiB dumps as a 64-bit EM_386 core
    if machine == a.elf_machine and (bits == a.bits or machine == "EM_386") \
            and endian == a.endian:
        return None
    name = program.name
    return (f"the guest image is a {bits}-bit {endian}-endian {machine} one, but {name} is "
            f"{program.arch} ({a.elf_machine}, {a.bits}-bit {a.endian}-endian): another "
            f"guest's dump, or another arch's ELF")


def locate(memory: Memory, program: Program, *, load_offset: int | None = None,
           search: bool = True) -> tuple[Program, Placement]:
    """The program relocated where the guest has it; NothingToCheck when
    its code is definitely not there (another test's ELF)."""
    a = arch_named(program.arch)
    placement = place(memory, list(program.samples), relocatable=program.relocatable,
                      candidates=a.boot.load_addresses, link_base=program.link_base,
                      forced=load_offset, search=search)
    name = program.name
    if placement.found is False and load_offset is None:
        raise NothingToCheck(Unchecked("program-mismatch", f"{name}: {placement.how}"),
                             placement=placement)
    if program.relocatable and placement.found is None and load_offset is None:
        raise NothingToCheck(Unchecked("not-located", f"{name}: {placement.how}"),
                             placement=placement)
    return program.relocated(placement.offset), placement


def inspect(memory: Memory, program: Program, *, format: str | None = None,
            phys_offset: int = 0, load_offset: int | None = None,
            guest_machine: tuple[str, int, str] | None = None,
            search: bool = True, require: bool = True) -> Inspection:
    """require=False: a state with nothing to check is returned, not raised
    (a start state for replay, one side of a diff)."""
    why = machine_mismatch(guest_machine, program)
    if why is not None:
        raise NothingToCheck(Unchecked("machine-mismatch", why))
    placement = None
    if program.samples or program.relocatable:
        program, placement = locate(memory, program, load_offset=load_offset, search=search)
    snap = decode(memory, program.layout, program.symbols["areas"],
                  program.symbols["areas_mask"], format=format, phys_offset=phys_offset)
    inspection = Inspection(snap, placement, program)
    if require:
        require_checkable(inspection, load_offset)
    return inspection


def require_checkable(inspection: Inspection, load_offset: int | None = None) -> None:
    """Raise NothingToCheck when the state read holds nothing to check (not
    initialised, not an allocator), with what placement found as cause."""
    snap, placement, program = inspection
    unchecked = assess(snap)
    if unchecked is None:
        return
    found = placement.found if placement is not None else None
    if load_offset is not None and found is False:
        unchecked = Unchecked("program-mismatch", f"--load-offset {load_offset:#x} puts "
                              f"{program.name}'s code where it is not, and "
                              f"{unchecked.reason[0].lower()}{unchecked.reason[1:]}")
    raise NothingToCheck(with_cause(unchecked, found), snap, placement)
