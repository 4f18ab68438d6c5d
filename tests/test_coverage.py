"""Mask coverage block by block against the exact naive area."""

from __future__ import annotations

from itertools import pairwise
from math import prod
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference import exact_coverage
from zarrsample_core.planning._coverage import axis_scales, coverage_blocks, denominator, windows_coverage


@st.composite
def block_cases(draw):
    d = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(d))
    mshape = tuple(draw(st.integers(1, 6)) for _ in range(d))
    bits = draw(st.lists(st.booleans(), min_size=prod(mshape), max_size=prod(mshape)))
    mask = np.array(bits, dtype=bool).reshape(mshape)
    windows = []
    for n in shape:  # non-decreasing starts, possibly overlapping or sticking out
        starts = np.array(sorted(draw(st.lists(st.integers(0, n), min_size=0, max_size=6))), np.int64)
        windows.append((starts, starts + draw(st.integers(1, 5))))
    cuts = sorted(draw(st.lists(st.integers(0, len(windows[0][0])), max_size=4)))
    strip = draw(st.integers(1, 64))
    return shape, mask, windows, [0, *cuts, len(windows[0][0])], strip


@given(block_cases())
def test_blocks_match_the_exact_area(case):
    shape, mask, windows, bounds, strip = case
    scales = axis_scales(shape, mask.shape)
    reads = []

    def read_block(lo, hi):
        reads.append((lo, hi))
        return mask[lo:hi]

    with mock.patch("zarrsample_core.planning._coverage.STRIP_ELEMENTS", strip):
        blocks = list(coverage_blocks(read_block, scales, windows, bounds))
        whole = windows_coverage(read_block, scales, windows)
    counts = tuple(len(w[0]) for w in windows)
    assert [len(b) for b in blocks] == [b - a for a, b in pairwise(bounds)]
    assert all(b.shape[1:] == counts[1:] and b.dtype == np.int64 for b in blocks)
    got = np.concatenate(blocks) if blocks else np.zeros(counts, np.int64)
    np.testing.assert_array_equal(got, whole)
    denom = denominator(scales)
    for index in np.ndindex(*counts):
        start = [int(windows[k][0][i]) for k, i in enumerate(index)]
        stop = [int(windows[k][1][i]) for k, i in enumerate(index)]
        assert got[index] == exact_coverage(mask, shape, start, stop) * denom
    assert all(0 <= lo < hi <= mask.shape[0] for lo, hi in reads)


def test_strips_are_read_once_and_shared_by_blocks():
    mask = np.ones((64, 8), bool)
    scales = axis_scales((1024, 128), mask.shape)
    starts = np.arange(0, 1024, 16, dtype=np.int64)
    windows = [(starts, starts + 16), (starts[:8], starts[:8] + 16)]
    reads = []

    def read_block(lo, hi):
        reads.append((lo, hi))
        return mask[lo:hi]

    with mock.patch("zarrsample_core.planning._coverage.STRIP_ELEMENTS", 16 * 8 * 16):  # 16 rows of 8 sums
        blocks = list(coverage_blocks(read_block, scales, windows, list(range(0, 65, 4))))
    assert reads == [(lo, lo + 16) for lo in range(0, 64, 16)]  # 16 rows per strip, 4 blocks each
    assert all((b == 256).all() for b in blocks)
