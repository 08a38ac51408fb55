"""What a kvm-unit-tests program's ELF says about its page allocator: arch,
where `areas`/`areas_mask` (and the other allocators' statics and the entry
points) live, and `struct mem_area`'s layout from DWARF.

The globals are file-static (local symbols), and names like `base`, `top`
and `lock` are static in several files. A symbol's file comes from DWARF
(the compile unit that defines the variable) or, without DWARF, from the
symbol table's STT_FILE grouping: local symbols follow their file's
STT_FILE entry. Parsing is pyelftools'.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field

from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from allocview.model.errors import AllocviewError, LayoutError
from allocview.model.files import require_regular
from allocview.model.arch import ARCHES, by_elf
from allocview.model.arch import arch as arch_named
from allocview.model.entry_points import DEATH_PATHS, ENTRY_POINTS, tree_of
from allocview.model.layout import Layout, layout_for
from allocview.model.program import Program

from .errors import SymbolError, first_line

__all__ = ["Program", "load_program", "FUNCTIONS", "HOMES", "CodeIndex", "SourceFrame",
           "code_index"]

# Entry points trace/drive break on, and the program's ends (and the
# fixture guest's checkpoint).
FUNCTIONS = tuple(e.name for e in ENTRY_POINTS) + DEATH_PATHS + ("checkpoint",)
# Data symbols and the file that defines each.
HOMES = {
    "areas": "alloc_page.c", "areas_mask": "alloc_page.c",
    "vfree_top": "vmalloc.c",
    "regions": "alloc_phys.c", "nr_regions": "alloc_phys.c",
    "base": "alloc_phys.c", "top": "alloc_phys.c",
    "lock": "alloc_page.c",          # the page allocator's lock (drive restores it)
}
# Names too common to take from another file when their home has none.
_HOME_ONLY = {"base", "top", "lock"}


@dataclass(frozen=True)
class _Sym:
    name: str
    value: int
    size: int
    kind: str          # STT_OBJECT, STT_FUNC, ...
    local: bool
    file: str | None   # basename of the defining file, when known
    other: int = 0     # st_other as a number
    section: int | str = 0

def load_program(path: str, *, arch: str | None = None, format: str | None = None) -> Program:
    """Read a guest program's ELF. arch, format: the user's --arch and
    --format ("auto" or None: from the ELF). SymbolError, one line, when the
    ELF cannot locate the allocator."""
    if format == "auto":
        format = None
    name = os.path.basename(path)
    try:
        require_regular(path, "--elf")
    except AllocviewError as e:
        raise SymbolError(str(e)) from None
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SymbolError(f"{path}: cannot open ({e.strerror or e})") from None
    with f:
        try:
            elf = ELFFile(f)
            return _load(elf, path, name, arch, format)
        except SymbolError:
            raise
        except LayoutError as e:
            raise SymbolError(f"{name}: {e}") from None
        except Exception as e:  # noqa: BLE001 - pyelftools raises many kinds on bad input
            raise SymbolError(f"{path}: not a readable ELF file ({first_line(e)})") from None


def _load(elf: ELFFile, path: str, name: str, want_arch: str | None,
          format: str | None) -> Program:
    dwarf = _dwarf(elf) if elf.has_dwarf_info() else None
    arch = _arch_of(elf, name, dwarf.address_size if dwarf else None)
    if want_arch is not None and want_arch != arch:
        if want_arch not in ARCHES:
            raise SymbolError(f"--arch {want_arch}: unknown (expected one of {', '.join(ARCHES)})")
        raise SymbolError(f"{name} is {arch}, not {want_arch}")
    syms = _symtab(elf)
    if syms is None and (dwarf is None or "areas" not in dwarf.variables.get("alloc_page.c", {})):
        raise SymbolError(f"{name} has no symbol table (stripped?): allocview needs the "
                          "address of 'areas'; give the unstripped ELF")
    symbols = _data_symbols(syms or [], dwarf, name, arch)
    symbols.update(_functions(syms or [], elf, arch_named(arch)))
    struct = dwarf.mem_area if dwarf else None
    if struct is not None:
        hint = "2021" if struct["max_order_off"] is not None else "2020"
        layout = Layout.from_offsets(arch, format or hint, **struct)
    else:
        hint = tree_of(symbols)
        layout = layout_for(arch, format or hint)
    loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
    return Program(path, arch, layout, symbols, struct is not None, hint,
                   layout_source="DWARF" if struct is not None else "built-in table (no DWARF)",
                   relocatable=elf["e_type"] == "ET_DYN",
                   link_base=min((seg["p_vaddr"] for seg in loads), default=0),
                   samples=_code_samples(loads))


# ------------------------------------------------------------------ arch
def _arch_of(elf: ELFFile, name: str, dwarf_address_size: int | None) -> str:
    machine = elf["e_machine"]
    ptr = elf.elfclass // 8
    # objcopy -O elf32-i386 of 64-bit code (a multiboot .flat) keeps its
    # DWARF, whose address size tells the truth.
    if machine == "EM_386" and dwarf_address_size == 8:
        ptr = 8
        machine = "EM_X86_64"
    found = by_elf(machine, ptr)
    if found is None:
        raise SymbolError(f"{name} is a {elf.elfclass}-bit {machine} ELF; allocview knows "
                          f"{', '.join(ARCHES)}")
    arch = found.name
    endian = "little" if elf.little_endian else "big"
    if found.endian != endian:
        raise SymbolError(f"{name} is a {endian}-endian {arch} ELF; allocview knows "
                          f"{arch} {ARCHES[arch].endian}-endian only")
    return arch


def _code_samples(loads, count: int = 8, size: int = 32) -> tuple[tuple[int, bytes], ...]:
    """`count` pieces of the executable segments' bytes, spread evenly and
    none all zeros (padding says nothing): what placement looks for."""
    code = [seg for seg in loads if seg["p_flags"] & 1 and seg["p_filesz"] >= size]
    out = []
    for seg in code:
        data = seg.data()
        want = max(1, count * len(data) // max(1, sum(s["p_filesz"] for s in code)))
        step = max(size, len(data) // want)
        for off in range(0, len(data) - size + 1, step):
            piece = data[off:off + size]
            if piece.count(0) < size // 2:
                out.append((seg["p_vaddr"] + off, bytes(piece)))
    return tuple(out[:count * 2])


# ---------------------------------------------------------------- symtab
def _symtab(elf: ELFFile) -> list[_Sym] | None:
    """Every symbol, locals with their STT_FILE; None when there is no
    .symtab (a stripped ELF; .dynsym has no statics)."""
    tab = next((s for s in elf.iter_sections() if isinstance(s, SymbolTableSection)
                and s["sh_type"] == "SHT_SYMTAB"), None)
    if tab is None:
        return None
    out, current = [], None
    for s in tab.iter_symbols():
        kind, bind = s["st_info"]["type"], s["st_info"]["bind"]
        if kind == "STT_FILE":
            current = os.path.basename(s.name)
            continue
        if not s.name or s["st_shndx"] == "SHN_UNDEF":
            continue
        local = bind == "STB_LOCAL"
        # globals come after every file's locals: their position says nothing
        # pyelftools decodes st_other's ppc64 local-entry bits as "local"
        other = (s["st_other"].get("local") or 0) << 5
        out.append(_Sym(s.name, s["st_value"], s["st_size"], kind, local,
                        current if local else None, other))
    return out


def _data_symbols(syms: list[_Sym], dwarf: "_Dwarf | None", name: str,
                  arch: str) -> dict[str, int]:
    out: dict[str, int] = {}
    sizes = _expected_sizes(arch)
    for sym, home in HOMES.items():
        if dwarf is not None and sym in dwarf.variables.get(home, {}):
            out[sym] = dwarf.variables[home][sym]
            continue
        cands = [s for s in syms if s.name == sym and s.kind in ("STT_OBJECT", "STT_NOTYPE")]
        at_home = [s for s in cands if s.file == home]
        # strip --strip-debug drops STT_FILE too: then the size tells areas[]
        # (a table size) and areas_mask (an unsigned int) from namesakes
        by_size = [s for s in cands if s.size in sizes.get(sym, ())]
        if len(at_home) == 1:
            out[sym] = at_home[0].value
        elif len(cands) == 1 and sym not in _HOME_ONLY:
            out[sym] = cands[0].value
        elif len(by_size) == 1:
            out[sym] = by_size[0].value
        elif len(cands) > 1 and sym in ("areas", "areas_mask"):
            files = ", ".join(sorted({s.file or "?" for s in cands}))
            raise SymbolError(f"{name} has {len(cands)} symbols named {sym!r} (files {files}) "
                              f"and none from {home}")
    if "areas" not in out or "areas_mask" not in out:
        missing = "areas" if "areas" not in out else "areas_mask"
        raise SymbolError(f"{name} has no symbol {missing!r} (not a kvm-unit-tests program "
                          "with the page allocator?)")
    return out


def _expected_sizes(arch: str) -> dict[str, set[int]]:
    """st_size of areas[] and areas_mask in the built-in layouts."""
    areas = {layout_for(arch, f).areas_size for f in ("2020", "2021")}
    return {"areas": areas, "areas_mask": {4}}


def _functions(syms: list[_Sym], elf: ELFFile, arch) -> dict[str, int]:
    """Entry points present, at the address a call enters them (past a
    ppc64 ELFv2 TOC setup; through a ppc64 ELFv1 descriptor); a global wins
    over a local of the same name."""
    out: dict[str, int] = {}
    abi = arch.abi
    descs = elf.get_section_by_name(abi.descriptors) if abi.descriptors else None
    for fn in FUNCTIONS:
        cands = [s for s in syms if s.name == fn and s.kind == "STT_FUNC"]
        glob = [s for s in cands if not s.local]
        pick = glob or cands
        if len(pick) != 1:
            continue
        s = pick[0]
        if descs is not None and descs["sh_addr"] <= s.value < descs["sh_addr"] + descs["sh_size"]:
            off = s.value - descs["sh_addr"]
            out[fn] = int.from_bytes(descs.data()[off:off + arch.ptr_size], arch.endian)
        else:
            out[fn] = s.value + abi.local_entry(s.other)
    return out


# ----------------------------------------------------------------- DWARF
@dataclass
class _Dwarf:
    address_size: int | None = None
    variables: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> name -> addr
    mem_area: dict | None = None          # Layout.from_offsets keywords


def _dwarf(elf: ELFFile) -> _Dwarf | None:
    """Top-level variables of the allocator files' compile units, and
    `struct mem_area` from the type of `areas`. Other units are skipped
    after their first DIE, so a large program costs little."""
    try:
        return _scan_dwarf(elf.get_dwarf_info())
    except SymbolError:
        raise
    except Exception:  # noqa: BLE001 - corrupt DWARF: fall back to the symbols and tables
        return None


def _scan_dwarf(info) -> _Dwarf:
    out = _Dwarf()
    homes = set(HOMES.values())
    for cu in info.iter_CUs():
        out.address_size = out.address_size or cu["address_size"]
        top = cu.get_top_DIE()
        file = os.path.basename(_str(top, "DW_AT_name") or "")
        if file not in homes:
            continue
        parser = DWARFExprParser(cu.structs)
        for die in top.iter_children():
            if die.tag != "DW_TAG_variable":
                continue
            var = _die_name(die)
            addr = _static_address(die, parser)
            if var in HOMES and HOMES[var] == file and addr is not None:
                out.variables.setdefault(file, {})[var] = addr
                if var == "areas":
                    out.mem_area = _mem_area(die, parser, cu["address_size"])
    return out


def _str(die, attr: str) -> str | None:
    a = die.attributes.get(attr)
    if a is None:
        return None
    v = a.value
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _die_name(die) -> str | None:
    name = _str(die, "DW_AT_name")
    if name is None and "DW_AT_specification" in die.attributes:
        name = _str(die.get_DIE_from_attribute("DW_AT_specification"), "DW_AT_name")
    return name


def _static_address(die, parser: DWARFExprParser) -> int | None:
    loc = die.attributes.get("DW_AT_location")
    if loc is None or not isinstance(loc.value, list):
        return None
    ops = parser.parse_expr(loc.value)
    if len(ops) == 1 and ops[0].op_name == "DW_OP_addr":
        return ops[0].args[0]
    return None


def _strip(die):
    """The type under typedefs and qualifiers."""
    while die.tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                      "DW_TAG_atomic_type", "DW_TAG_restrict_type"):
        die = die.get_DIE_from_attribute("DW_AT_type")
    return die


def _type_of(die):
    if "DW_AT_type" not in die.attributes and "DW_AT_specification" in die.attributes:
        die = die.get_DIE_from_attribute("DW_AT_specification")
    return _strip(die.get_DIE_from_attribute("DW_AT_type"))


def _array_count(die) -> int | None:
    """Elements of a one-dimensional array type."""
    for sub in die.iter_children():
        if sub.tag != "DW_TAG_subrange_type":
            continue
        if "DW_AT_count" in sub.attributes:
            return sub.attributes["DW_AT_count"].value
        if "DW_AT_upper_bound" in sub.attributes:
            return sub.attributes["DW_AT_upper_bound"].value + 1
    return None


def _byte_size(die, address_size: int) -> int:
    die = _strip(die)
    if "DW_AT_byte_size" in die.attributes:
        return die.attributes["DW_AT_byte_size"].value
    if die.tag == "DW_TAG_pointer_type":
        return address_size
    raise SymbolError(f"DWARF type {die.tag} has no size")


def _member_offset(m, parser: DWARFExprParser) -> int:
    v = m.attributes["DW_AT_data_member_location"].value
    if isinstance(v, list):                      # DWARF 2/3: DW_OP_plus_uconst n
        ops = parser.parse_expr(v)
        return ops[0].args[0]
    return v


def _mem_area(areas_die, parser: DWARFExprParser, address_size: int) -> dict | None:
    """Layout.from_offsets keywords from `static struct mem_area areas[N]`."""
    arr = _type_of(areas_die)
    if arr.tag != "DW_TAG_array_type":
        return None
    max_areas = _array_count(arr)
    st = _strip(arr.get_DIE_from_attribute("DW_AT_type"))
    if st.tag != "DW_TAG_structure_type" or max_areas is None:
        return None
    members = {_str(m, "DW_AT_name"): m for m in st.iter_children() if m.tag == "DW_TAG_member"}
    need = ("base", "top", "page_states", "freelists")
    if any(n not in members for n in need):
        return None
    fl_type = _strip(members["freelists"].get_DIE_from_attribute("DW_AT_type"))
    nlists = _array_count(fl_type) if fl_type.tag == "DW_TAG_array_type" else None
    if nlists is None:
        return None
    off = {n: _member_offset(m, parser) for n, m in members.items()}
    return dict(size=st.attributes["DW_AT_byte_size"].value, base_off=off["base"],
                base_size=_byte_size(members["base"].get_DIE_from_attribute("DW_AT_type"),
                                     address_size),
                top_off=off["top"], page_states_off=off["page_states"],
                max_order_off=off.get("max_order"), freelists_off=off["freelists"],
                nlists=nlists, max_areas=max_areas)


# ----------------------------------------------------- code -> source line
@dataclass(frozen=True)
class SourceFrame:
    """One function at an address: its name, and the file and line the
    address is at inside it (for a function inlined into another, the next
    frame out gives the line it was inlined at). None where DWARF says
    nothing."""
    function: str | None
    file: str | None
    line: int | None

    def to_json(self) -> dict:
        return {"function": self.function, "file": self.file, "line": self.line}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else "?"
        return f"{self.function or '??'} at {where}"


class CodeIndex:
    """An ELF's code addresses to functions and source lines, through its
    DWARF line program and subprogram / inlined-subroutine DIEs (pyelftools),
    else its symbol table (the function symbol holding the address).
    Addresses are the ELF's own (link addresses): subtract a relocatable
    program's load offset first."""

    def __init__(self, path: str):
        try:
            require_regular(path, "ELF")
            self._f = open(path, "rb")
        except (AllocviewError, OSError) as e:
            raise SymbolError(f"{path}: cannot read its debug information ({first_line(e)})") \
                from None
        try:
            self._elf = ELFFile(self._f)
            self._dwarf = self._elf.get_dwarf_info() if self._elf.has_dwarf_info() else None
            self._rows, self._row_addrs = self._line_rows()
            self._funcs = self._function_symbols()
        except Exception as e:  # noqa: BLE001 - pyelftools raises many kinds on bad input
            self._f.close()
            raise SymbolError(f"{path}: unreadable debug information ({first_line(e)})") \
                from None
        self.has_lines = bool(self._rows)

    def close(self) -> None:
        self._f.close()

    # the line program: (address, file, line, end_sequence), ascending
    def _line_rows(self):
        rows: list[tuple[int, str | None, int | None, bool]] = []
        if self._dwarf is None:
            return rows, []
        for cu in self._dwarf.iter_CUs():
            prog = self._dwarf.line_program_for_CU(cu)
            if prog is None:
                continue
            names = _file_names(prog)
            for entry in prog.get_entries():
                st = entry.state
                if st is None:
                    continue
                rows.append((st.address, names.get(st.file), st.line or None, st.end_sequence))
        # at one address the row that starts code wins over one that ends a
        # sequence (sequences that abut)
        rows.sort(key=lambda r: (r[0], not r[3]))
        return rows, [r[0] for r in rows]

    def _function_symbols(self) -> list[tuple[int, int, str]]:
        syms = _symtab(self._elf) or []
        return sorted((s.value, s.value + s.size, s.name) for s in syms
                      if s.kind == "STT_FUNC" and s.size)

    # lookups
    def line_at(self, addr: int) -> tuple[str | None, int | None]:
        """The file and line the line program gives the instruction at addr."""
        i = bisect_right(self._row_addrs, addr) - 1
        if i < 0 or self._rows[i][3]:
            return None, None
        return self._rows[i][1], self._rows[i][2]

    def symbol_at(self, addr: int) -> str | None:
        i = bisect_right(self._funcs, (addr, float("inf"), "")) - 1
        if i >= 0 and self._funcs[i][0] <= addr < self._funcs[i][1]:
            return self._funcs[i][2]
        return None

    def frames_at(self, addr: int) -> list[SourceFrame]:
        """Innermost first: the function (inlined or not) holding addr with
        the line there, then each function it was inlined into with the
        line it was inlined at (what `addr2line -i -f` prints). One frame
        from the symbol table when DWARF has no function there."""
        file, line = self.line_at(addr)
        chain = self._dies_at(addr)
        if not chain:
            return [SourceFrame(self.symbol_at(addr), file, line)]
        out = []
        for die, outer in zip(reversed(chain), list(reversed(chain))[1:] + [None]):
            out.append(SourceFrame(_function_name(die) or self.symbol_at(addr), file, line))
            if outer is None:
                break
            file = _call_file(die)
            line = die.attributes["DW_AT_call_line"].value \
                if "DW_AT_call_line" in die.attributes else None
        return out

    def call_site(self, return_address: int) -> list[SourceFrame]:
        """Where the call that returns to return_address was made: the
        instruction before it (addr2line's practice: a return address is
        past the call, maybe on the next line or in the next function)."""
        return self.frames_at(return_address - 1)

    # DIEs: the subprogram holding addr, then inlined subroutines inside it
    def _dies_at(self, addr: int) -> list:
        if self._dwarf is None:
            return []
        try:
            cu = self._cu_at(addr)
            if cu is None:
                return []
            chain: list = []
            self._descend(cu, cu.get_top_DIE(), addr, chain)
            return chain
        except Exception:  # noqa: BLE001 - odd DWARF: the line and the symbol still answer
            return []

    def _cu_at(self, addr: int):
        aranges = self._dwarf.get_aranges()
        if aranges is not None:
            off = aranges.cu_offset_at_addr(addr)
            if off is not None:
                return self._dwarf.get_CU_at(off)
        for cu in self._dwarf.iter_CUs():
            if any(lo <= addr < hi for lo, hi in self._ranges(cu, cu.get_top_DIE())):
                return cu
        return None

    def _descend(self, cu, die, addr: int, chain: list) -> None:
        for child in die.iter_children():
            if child.tag not in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine",
                                 "DW_TAG_lexical_block"):
                continue
            if not any(lo <= addr < hi for lo, hi in self._ranges(cu, child)):
                continue
            if child.tag != "DW_TAG_lexical_block":
                chain.append(child)
            self._descend(cu, child, addr, chain)
            return

    def _ranges(self, cu, die) -> list[tuple[int, int]]:
        at = die.attributes
        if "DW_AT_low_pc" in at and "DW_AT_high_pc" in at:
            lo = at["DW_AT_low_pc"].value
            hi = at["DW_AT_high_pc"]
            # DWARF 4+: a constant high_pc is a length
            end = hi.value if hi.form == "DW_FORM_addr" else lo + hi.value
            return [(lo, end)]
        if "DW_AT_ranges" in at:
            lists = self._dwarf.range_lists()
            if lists is None:
                return []
            top = cu.get_top_DIE().attributes
            base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
            out = []
            for e in lists.get_range_list_at_offset(at["DW_AT_ranges"].value, cu=cu):
                if hasattr(e, "base_address"):
                    base = e.base_address
                elif e.is_absolute:
                    out.append((e.begin_offset, e.end_offset))
                else:
                    out.append((base + e.begin_offset, base + e.end_offset))
            return out
        return []


def _file_names(prog) -> dict[int, str]:
    """File numbers of a line program to names (with their directory when
    it is not the compile directory): DWARF 5 counts from 0, earlier from 1."""
    dirs = [d.decode(errors="replace") if isinstance(d, bytes) else str(d)
            for d in prog["include_directory"]]
    v5 = prog.header["version"] >= 5
    out = {}
    for n, fe in enumerate(prog["file_entry"], 0 if v5 else 1):
        name = fe.name.decode(errors="replace") if isinstance(fe.name, bytes) else str(fe.name)
        d = fe.dir_index
        # DWARF < 5: directory 0 is the compile directory, 1.. the list;
        # DWARF 5: the list from 0, its entry 0 the compile directory
        folder = (dirs[d] if d < len(dirs) and d else "") if v5 else \
            (dirs[d - 1] if 0 < d <= len(dirs) else "")
        out[n] = name if not folder or os.path.isabs(name) else f"{folder}/{name}"
    return out


def _function_name(die) -> str | None:
    """A subprogram's or inlined subroutine's name, through its abstract
    origin or specification."""
    for _ in range(4):
        name = _str(die, "DW_AT_name")
        if name:
            return name
        for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if ref in die.attributes:
                die = die.get_DIE_from_attribute(ref)
                break
        else:
            return None
    return None


def _call_file(die) -> str | None:
    """The file an inlined subroutine was inlined in (DW_AT_call_file)."""
    at = die.attributes.get("DW_AT_call_file")
    if at is None:
        return None
    prog = die.dwarfinfo.line_program_for_CU(die.cu)
    return _file_names(prog).get(at.value) if prog is not None else None


_INDEXES: dict[tuple, CodeIndex] = {}


def code_index(path: str) -> CodeIndex:
    """The CodeIndex of the ELF at path, kept while the file is unchanged
    (gdb asks for it on every `alloc owner`)."""
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (path,)
    got = _INDEXES.get(key)
    if got is None:
        for old in _INDEXES.values():
            old.close()
        _INDEXES.clear()
        got = _INDEXES[key] = CodeIndex(path)
    return got


def needs_callable_copy(path: str) -> bool:
    """Whether gdb can make no function call into this program: an ELF of
    type DYN with entry point 0 (kvm-unit-tests links its arm64, riscv64
    and ppc64 tests so) gives gdb no entry point, which is where a call
    returns to (`Entry point address is not known`)."""
    try:
        with open(path, "rb") as f:
            h = ELFFile(f).header
            return h["e_type"] == "ET_DYN" and h["e_entry"] == 0
    except (OSError, ELFError):
        return False


def write_callable_copy(path: str, out: str) -> None:
    """A copy of the ELF with type EXEC, so gdb takes its entry point (0,
    moved with `symbol-file -o` like every address) as known. Only the
    header's e_type differs; the header is rebuilt by pyelftools."""
    from elftools.construct import Container
    with open(path, "rb") as f:
        elf = ELFFile(f)
        header = Container(**elf.header)
        header.e_ident = Container(**elf.header.e_ident)
        header["e_type"] = "ET_EXEC"
        raw = elf.structs.Elf_Ehdr.build(header)
        f.seek(0)
        data = bytearray(f.read())
    data[:len(raw)] = raw
    with open(out, "wb") as f:
        f.write(data)
