"""model.pages.run_end: the run scan everything else stands on."""

from hypothesis import given, settings
from hypothesis import strategies as st

from allocview.model.pages import run_end


def naive_run_end(meta: bytes, i: int) -> int:
    j = i
    while j < len(meta) and meta[j] == meta[i]:
        j += 1
    return j


# runs around the 4 KiB switch-over between the regex and the memcmp loop
run_lengths = st.one_of(st.integers(1, 40), st.integers(4090, 4100), st.integers(8190, 12300))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), run_lengths), min_size=1, max_size=8))
def test_run_end_matches_a_byte_by_byte_scan(runs):
    meta = b"".join(bytes([b]) * n for b, n in runs)
    i = 0
    while i < len(meta):
        end = run_end(meta, i)
        assert end == naive_run_end(meta, i)
        i = end


def test_run_end_from_inside_a_run_and_at_the_last_byte():
    meta = b"\x41" * 5000 + b"\x80" * 3
    assert run_end(meta, 1234) == 5000
    assert run_end(meta, 4999) == 5000
    assert run_end(meta, 5002) == 5003
    # special regex characters as byte values
    for b in b".*+?[\\(":
        assert run_end(bytes([b]) * 9000 + b"\x00", 0) == 9000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 600)), min_size=1, max_size=12),
       st.integers(0, 1 << 20), st.sampled_from(["2020", "2021"]))
def test_byte_pages_counts_every_byte_whatever_the_defects(runs, base, fmt):
    from collections import Counter

    from allocview.model.layout import layout_for
    from allocview.model.pages import scan_blocks

    meta = b"".join(bytes([b]) * n for b, n in runs)
    got = scan_blocks(meta, base, layout_for("x86_64", fmt).encoding).byte_pages
    assert got == dict(Counter(meta))
