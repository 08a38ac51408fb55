"""The fuzzer over real fixture guests' dumps (x86_64 both formats,
s390x big-endian, relocatable aarch64): the checks of tests/fuzzing.py."""

import os

import pytest

from allocview.sources.dump import DumpSource
from allocview.symbols import load_program
from allocview.model.fuzz import Image

from fuzzing import fuzz

SEED = int(os.environ.get("ALLOCVIEW_FUZZ_SEED", "20261130"))
GUESTS = [("x86_64-2021", {}), ("x86_64-2020", {}), ("s390x-2021", {}),
          ("aarch64-2021", {})]


@pytest.fixture(scope="module")
def dump_images(guest_pool, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-dumps")
    out, sources = [], []
    for variant, kw in GUESTS:
        g = guest_pool.at(variant, 2, **kw)
        path = g.dump_guest_memory(d / f"{variant}.elf")
        src = DumpSource(str(path))
        sources.append(src)
        prog = load_program(str(g.elf)).relocated(g.variant.load_offset)
        out.append(Image(variant, src, prog.layout, prog.symbols["areas"],
                         prog.symbols["areas_mask"], g.variant.fmt))
    yield out
    for s in sources:
        s.close()


def test_fuzzed_guest_dumps(dump_images):
    for img in dump_images:
        assert img.snapshot.areas_mask and any(a.decoded for a in img.snapshot.areas), img.name
    results = fuzz(dump_images, 200, SEED)
    assert sum(1 for r in results if r.errors or r.unchecked) > 0.7 * len(results)
