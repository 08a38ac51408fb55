#!/usr/bin/env python3
"""allocview's figures. Prints them; asserts nothing.

Each figure comes with a baseline measured in the same run (these machines
are noisy): the ratio is the number to compare across runs.

    .venv/bin/python scripts/bench.py [--only NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.check import check  # noqa: E402
from model.constants import AREA_ANY_NUMBER, FLAG_DONTZERO  # noqa: E402
from model.layout import layout_for  # noqa: E402
from model.reference import Allocator  # noqa: E402
from model.snapshot import decode  # noqa: E402

GiB_PAGES = 1 << 18


def best_of(n: int, fn) -> float:
    """The fastest of n runs: the least disturbed by the machine."""
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def fragmented_16g(seed: int = 1) -> Allocator:
    """A 16 GiB x86_64 2021 area (HIGH, pfns [4 GiB, 20 GiB)) with tens of
    thousands of scattered free blocks."""
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(AREA_ANY_NUMBER, 4 * GiB_PAGES, 20 * GiB_PAGES)
    rnd = random.Random(seed)
    live = [al.alloc_pages_flags(rnd.randrange(5), FLAG_DONTZERO) for _ in range(60_000)]
    rnd.shuffle(live)
    for p in live[: len(live) // 2]:
        al.free_pages(p)
    return al


def bench_decode_check() -> dict:
    al = fragmented_16g()
    mem = al.memory
    a = next(x for x in al.areas if x)
    meta = mem.read(a.page_states, a.top - a.base)
    snap = decode(mem, al.layout, al.areas_addr, al.mask_addr)
    free_blocks = sum(len(ar.blocks.free) for ar in snap.areas if ar.decoded)
    findings = check(snap)

    def run():
        check(decode(mem, al.layout, al.areas_addr, al.mask_addr))

    t = best_of(5, run)
    floor = best_of(5, lambda: meta.count(b"\x80"))
    return {"name": "decode+check 16 GiB area", "seconds": round(t, 4),
            "metadata_bytes": len(meta), "free_blocks": free_blocks,
            "findings": len(findings), "floor_bytes_count_s": round(floor, 5),
            "ratio_to_floor": round(t / floor, 1), "target_s": 0.5}


def bench_reference_ops(flags: int) -> dict:
    al = Allocator(layout_for("x86_64", "2021"))
    al.init_area(AREA_ANY_NUMBER, 4 * GiB_PAGES, 5 * GiB_PAGES)
    rnd = random.Random(2)
    n = 200_000
    plan = [(rnd.random() < 0.5, rnd.randrange(5), rnd.random()) for _ in range(n)]
    live: list[int] = []

    def run():
        for is_alloc, order, r in plan:
            if is_alloc or not live:
                p = al.alloc_pages_flags(order, flags)
                if p:
                    live.append(p)
            else:
                i = int(r * len(live))
                live[i], live[-1] = live[-1], live[i]
                al.free_pages(live.pop())

    t = best_of(1, run)
    # baseline: the same loop over a dict-backed toy (allocation = dict insert)
    toy: dict[int, int] = {}

    def baseline():
        k = 0
        for is_alloc, order, r in plan:
            if is_alloc or not toy:
                k += 1
                toy[k] = order
            else:
                toy.popitem()

    tb = best_of(3, baseline)
    return {"name": "reference alloc/free mix, orders 0-4" + (" (DONTZERO)" if flags else " (zeroing)"),
            "ops_per_s": round(n / t), "seconds": round(t, 3),
            "ratio_to_dict_loop": round(t / tb, 1), "target_ops_per_s": 100_000}


BENCHES = {
    "decode": bench_decode_check,
    "ops": lambda: bench_reference_ops(FLAG_DONTZERO),
    "ops-zero": lambda: bench_reference_ops(0),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these")
    ap.add_argument("--json", action="store_true", help="one JSON document")
    args = ap.parse_args()
    results = []
    for name in args.only or BENCHES:
        r = BENCHES[name]()
        results.append(r)
        if not args.json:
            print(f"{r['name']}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "name"),
                  flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
