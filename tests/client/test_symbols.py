"""ELF symbols and DWARF layouts: tiny programs compiled here (both formats,
64 and 32-bit, several DWARF versions, decoy statics in other files,
stripped), and the fixture guest's own builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from allocview.errors import SymbolError
from allocview.symbols import FUNCTIONS, load_program
from allocview.model.layout import layout_for

from .helpers import need, one_line

GUEST_BUILD = Path(__file__).resolve().parent.parent / "guest" / "build"

TYPES = """
typedef unsigned long long u64;
typedef u64 phys_addr_t;
typedef phys_addr_t pfn_t;
typedef unsigned char u8;
struct linked_list { struct linked_list *prev, *next; };
#define NLISTS (sizeof(long) * 8 - 12)
"""

ALLOC_PAGE = TYPES + """
#if FORMAT == 2021
#define MAX_AREAS 4
struct mem_area {
\tpfn_t base;
\tpfn_t top;
\tu8 *page_states;
\tu8 max_order;
\tstruct linked_list freelists[NLISTS];
};
#else
#define MAX_AREAS 6
struct mem_area {
\tunsigned long base;
\tunsigned long top;
\tu8 *page_states;
\tstruct linked_list freelists[NLISTS];
};
#endif
static struct mem_area areas[MAX_AREAS] __attribute__((section("ap_areas"), used));
static unsigned int areas_mask __attribute__((section("ap_mask"), used));
static int lock;

void page_alloc_init_area(u8 n, phys_addr_t b, phys_addr_t t) { areas_mask |= 1u << n; lock++; }
void free_pages(void *mem) { areas[0].page_states = mem; }
#if FORMAT == 2021
void *alloc_pages_flags(unsigned int order, unsigned int flags) { return &areas[order & 3]; }
void *memalign_pages_flags(unsigned long a, unsigned long s, unsigned int f) { return 0; }
int reserve_pages(phys_addr_t addr, unsigned long n) { return 0; }
void unreserve_pages(phys_addr_t addr, unsigned long n) { }
#else
void *alloc_pages_area(unsigned int areas_, unsigned int order) { return &areas[order & 3]; }
void *alloc_pages(unsigned int order) { return alloc_pages_area(~0u, order); }
void *alloc_page(void) { return alloc_pages(0); }
void *alloc_pages_special(phys_addr_t addr, unsigned long n) { return 0; }
void free_pages_special(phys_addr_t addr, unsigned long n) { }
#endif
"""

# Decoys: statics of the same names in other files, placed before and after.
DECOY = """
static char areas[7] __attribute__((used));
static long areas_mask __attribute__((used));
static unsigned long base __attribute__((used)), top __attribute__((used));
static int lock __attribute__((used));
static __attribute__((used)) int decoy(void)
{
	return areas[0] + (int)areas_mask + (int)base + (int)top + lock;
}
"""

ALLOC_PHYS = TYPES + """
struct phys_alloc_region { phys_addr_t base; phys_addr_t size; };
static struct phys_alloc_region regions[256] __attribute__((used));
static int nr_regions __attribute__((used));
static phys_addr_t base __attribute__((section("phys_base"), used));
static phys_addr_t top __attribute__((section("phys_top"), used));
void phys_alloc_init(phys_addr_t b, phys_addr_t s) { base = b; top = b + s; nr_regions = 0; }
"""

VMALLOC = """
static void *vfree_top __attribute__((section("vm_top"), used)) = (void *)0x1000;
void *vmalloc(unsigned long size) { vfree_top = (char *)vfree_top - size; return vfree_top; }
"""

MAIN = """
void exit(int code) { for (;;) ; }
void abort(void) { exit(1); }
void checkpoint(int n) { }
void _start(void) { checkpoint(1); exit(0); }
"""


def _section_addr(path, name: str) -> int:
    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(name)["sh_addr"]


class Builder:
    """Compiles the sources above into tmp/<name>/prog.elf."""

    def __init__(self, root: Path):
        self.root = root
        need("gcc")

    def build(self, name: str, *, bits: int = 64, fmt: str = "2021", debug: str = "-g",
              order: tuple[str, ...] = ("decoy_a.c", "alloc_page.c", "decoy_b.c"),
              files: dict[str, str] | None = None) -> Path:
        d = self.root / name
        d.mkdir()
        sources = {"alloc_page.c": ALLOC_PAGE, "decoy_a.c": DECOY, "decoy_b.c": DECOY,
                   "alloc_phys.c": ALLOC_PHYS, "vmalloc.c": VMALLOC, "main.c": MAIN}
        sources.update(files or {})
        for fname, text in sources.items():
            (d / fname).write_text(text)
        srcs = list(order) + [f for f in ("alloc_phys.c", "vmalloc.c", "main.c") if f not in order]
        argv = ["gcc", f"-m{bits}", f"-DFORMAT={fmt}", "-O0", "-ffreestanding", "-fno-pic",
                "-fno-pie", "-fno-stack-protector", "-nostdlib", "-static", "-no-pie",
                "-Wl,--build-id=none", "-o", "prog.elf"] + ([debug] if debug else []) + srcs
        out = subprocess.run(argv, cwd=d, capture_output=True, text=True)
        if out.returncode:
            pytest.fail(f"gcc failed (gcc-multilib installed?): {' '.join(argv)}\n{out.stderr}")
        return d / "prog.elf"


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    return Builder(tmp_path_factory.mktemp("progs"))


COMBOS = [("x86_64", "2021"), ("x86_64", "2020"), ("i386", "2021"), ("i386", "2020")]


@pytest.mark.parametrize("arch,fmt", COMBOS)
@pytest.mark.parametrize("debug", ["-g", ""])
def test_layout_and_symbols_of_compiled_programs(builder, arch, fmt, debug):
    bits = 64 if arch == "x86_64" else 32
    path = builder.build(f"{arch}-{fmt}{debug}", bits=bits, fmt=fmt, debug=debug)
    p = load_program(str(path))
    assert p.arch == arch and p.path == str(path)
    assert p.has_dwarf is bool(debug)
    assert p.format_hint == fmt
    assert p.layout == layout_for(arch, fmt)
    # the alloc_page.c / alloc_phys.c / vmalloc.c statics, not the decoys
    assert p.symbols["areas"] == _section_addr(path, "ap_areas")
    assert p.symbols["areas_mask"] == _section_addr(path, "ap_mask")
    assert p.symbols["base"] == _section_addr(path, "phys_base")
    assert p.symbols["top"] == _section_addr(path, "phys_top")
    assert p.symbols["vfree_top"] == _section_addr(path, "vm_top")
    assert {"regions", "nr_regions"} <= set(p.symbols)
    want_fns = {"page_alloc_init_area", "free_pages", "exit", "abort", "checkpoint"} | (
        {"alloc_pages_flags", "memalign_pages_flags", "reserve_pages", "unreserve_pages"}
        if fmt == "2021" else
        {"alloc_pages_area", "alloc_pages", "alloc_page", "alloc_pages_special",
         "free_pages_special"})
    assert {k for k in p.symbols if k in FUNCTIONS} == want_fns


@pytest.mark.parametrize("dwarf", ["-gdwarf-2", "-gdwarf-4", "-gdwarf-5"])
def test_dwarf_versions(builder, dwarf):
    """DWARF 2 gives member offsets as location expressions."""
    path = builder.build(f"dw{dwarf}", debug=dwarf)
    p = load_program(str(path))
    assert p.has_dwarf and p.layout == layout_for("x86_64", "2021")


def test_format_override_keeps_the_dwarf_struct(builder):
    """A bisect between the layout and the encoding commits: 2021 struct,
    2020 bytes."""
    path = builder.build("override")
    p = load_program(str(path), format="2020")
    assert p.format_hint == "2021"
    assert p.layout == layout_for("x86_64", "2021").with_format("2020")
    assert load_program(str(path), format="auto").layout == layout_for("x86_64", "2021")


def test_dwarf_struct_wins_over_the_table(builder):
    """MAX_AREAS and offsets come from the program, not from the table."""
    odd = ALLOC_PAGE.replace("#define MAX_AREAS 4", "#define MAX_AREAS 3")
    path = builder.build("odd", files={"alloc_page.c": odd})
    p = load_program(str(path))
    assert p.layout.max_areas == 3 and p.layout.struct == layout_for("x86_64", "2021").struct


def test_linker_order_does_not_matter(builder):
    path = builder.build("order", order=("decoy_b.c", "decoy_a.c", "alloc_page.c"), debug="")
    assert load_program(str(path)).symbols["areas"] == _section_addr(path, "ap_areas")


def test_wrong_arch(builder):
    path = builder.build("wrongarch", bits=32)
    with pytest.raises(SymbolError) as e:
        load_program(str(path), arch="x86_64")
    assert one_line(e.value) == "prog.elf is i386, not x86_64"
    with pytest.raises(SymbolError, match="unknown") as e:
        load_program(str(path), arch="vax")
    one_line(e.value, "vax")
    assert load_program(str(path), arch="i386").arch == "i386"


def test_objcopied_flat_is_still_x86_64(builder):
    """objcopy -O elf32-i386 (a multiboot .flat) of 64-bit code."""
    need("objcopy")
    path = builder.build("flat")
    flat = path.with_name("prog.flat")
    subprocess.run(["objcopy", "-O", "elf32-i386", str(path), str(flat)], check=True)
    p = load_program(str(flat))
    assert p.arch == "x86_64" and p.layout == layout_for("x86_64", "2021")
    assert p.symbols["areas"] == load_program(str(path)).symbols["areas"]


def test_stripped_elves(builder):
    need("strip")
    path = builder.build("strip")
    nodebug = path.with_name("nodebug.elf")
    stripped = path.with_name("stripped.elf")
    subprocess.run(["strip", "--strip-debug", "-o", str(nodebug), str(path)], check=True)
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(path)], check=True)
    p = load_program(str(nodebug))
    assert not p.has_dwarf and p.format_hint == "2021"
    assert p.layout == layout_for("x86_64", "2021")
    assert p.symbols["areas"] == load_program(str(path)).symbols["areas"]
    with pytest.raises(SymbolError, match="no symbol table") as e:
        load_program(str(stripped))
    one_line(e.value, "stripped.elf", "'areas'")
    with pytest.raises(SymbolError, match="no symbol table"):
        load_program(str(stripped), arch="x86_64", format="2021")


def test_no_allocator_and_ambiguous_areas(builder):
    path = builder.build("noalloc", order=("decoy_a.c",), files={"alloc_page.c": ""})
    # decoy_a.c alone: one `areas`, from no allocator file, taken as unique
    assert load_program(str(path)).symbols["areas"]
    two = builder.build("ambiguous", order=("decoy_a.c", "decoy_b.c"), debug="")
    with pytest.raises(SymbolError, match="2 symbols named 'areas'") as e:
        load_program(str(two))
    one_line(e.value, "prog.elf", "alloc_page.c")
    none = builder.build("none", order=("main.c",), debug="")
    with pytest.raises(SymbolError) as e:
        load_program(str(none))
    assert one_line(e.value) == ("prog.elf has no symbol 'areas' (not a kvm-unit-tests "
                                 "program with the page allocator?)")


def test_not_elf_files(tmp_path):
    cases = {"missing.elf": None, "text.elf": b"hello\n" * 20, "empty.elf": b"",
             "cut.elf": b"\x7fELF\x02\x01\x01" + bytes(5)}
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(SymbolError) as e:
            load_program(str(path))
        one_line(e.value, name)


@pytest.mark.parametrize("variant", ["x86_64-2021", "x86_64-2020", "i386-2021", "i386-2020"])
def test_fixture_guest_builds(variant):
    """tests/guest's ELFs (built by `make -C tests/guest`)."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    subprocess.run(["make", "-s", "-C", str(GUEST_BUILD.parent)], check=True,
                   capture_output=True)
    arch, fmt = variant.split("-")
    for name in ("guest.elf", "guest.flat"):
        path = GUEST_BUILD / variant / name
        p = load_program(str(path))
        assert (p.arch, p.format_hint, p.has_dwarf) == (arch, fmt, True)
        assert p.layout == layout_for(arch, fmt)
        with open(path, "rb") as f:           # cross-check: the data symbols by name
            syms = {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab")
                    .iter_symbols() if s["st_info"]["type"] == "STT_OBJECT"}
        for n in ("areas", "areas_mask", "vfree_top", "regions", "nr_regions", "base", "top"):
            assert p.symbols[n] == syms[n], n
        assert ("alloc_pages_flags" in p.symbols) is (fmt == "2021")
        assert ("alloc_pages_area" in p.symbols) is (fmt == "2020")
