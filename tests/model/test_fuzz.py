"""The in-repo fuzzer over the reference allocator's images: corrupted
metadata, list pointers, cycles, descriptors and masks on every arch and
format; no exception, work bounded by the guest's RAM, no corruption
called healthy, never healthier in the wrong format."""

import os

import pytest

from allocview.model.fuzz import Image
from allocview.model.inject import scenario
from allocview.model.layout import layout_for

from fuzzing import fuzz

SEED = int(os.environ.get("ALLOCVIEW_FUZZ_SEED", "20261130"))
COMBOS = [("x86_64", "2021"), ("x86_64", "2020"), ("i386", "2021"), ("s390x", "2021"),
          ("aarch64", "2020"), ("ppc64", "2021"), ("riscv64", "2021"), ("arm", "2021")]


@pytest.fixture(scope="module")
def images():
    out = []
    for arch, fmt in COMBOS:
        al = scenario(layout_for(arch, fmt))
        al.sync()
        out.append(Image(f"{arch}-{fmt}", al.memory, al.layout, al.areas_addr, al.mask_addr, fmt))
    return out


def test_fuzzed_model_images(images):
    results = fuzz(images, 400, SEED)
    kinds = {r.what.split()[0] for r in results}
    assert {"meta", "node", "cycle", "mask"} <= kinds
    # the fuzzer finds what it plants: most corrupted images are not clean
    dirty = sum(1 for r in results if r.errors or r.unchecked)
    assert dirty > 0.8 * len(results)
