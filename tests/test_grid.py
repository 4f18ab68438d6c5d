"""Grid helpers: chunk-major positions and tile-row blocks against naive loops."""

from __future__ import annotations

import itertools
from itertools import pairwise
from math import prod

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from zarrsample_core.planning._grid import chunk_major_positions, tile_row_bounds


@st.composite
def keep_grids(draw):
    d = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(0, 9)) for _ in range(d))
    per_tile = [draw(st.integers(1, 5)) for _ in range(d)]
    bits = draw(st.lists(st.booleans(), min_size=prod(shape), max_size=prod(shape)))
    return np.array(bits, dtype=bool).reshape(shape), per_tile


@given(keep_grids())
def test_chunk_major_positions_match_a_sorted_loop(case):
    keep, per_tile = case
    naive = sorted(
        (index for index in itertools.product(*map(range, keep.shape)) if keep[index]),
        key=lambda index: (tuple(i // p for i, p in zip(index, per_tile)), index),
    )
    got = chunk_major_positions(keep, per_tile)
    assert [tuple(row) for row in got.tolist()] == naive
    assert got.shape == (len(naive), keep.ndim)
    assert got.dtype.kind == "u" and got.dtype.itemsize == (1 if max(keep.shape, default=0) <= 255 else 2)


def test_chunk_major_positions_use_the_smallest_dtype():
    keep = np.zeros((3, 300), bool)
    keep[2, 299] = True
    got = chunk_major_positions(keep, [2, 256])
    assert got.dtype == np.uint16 and got.tolist() == [[2, 299]]


@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=3),
    st.lists(st.integers(1, 7), min_size=3, max_size=3),
    st.integers(1, 500),
)
def test_tile_row_bounds_split_whole_tile_rows(counts, per_tile, max_positions):
    per_tile = per_tile[: len(counts)]
    bounds = tile_row_bounds(counts, per_tile, max_positions=max_positions)
    assert bounds[0] == 0 and bounds[-1] == counts[0]
    assert all(a < b for a, b in pairwise(bounds))
    assert all(b % per_tile[0] == 0 for b in bounds[1:-1])
    tile_row = per_tile[0] * max(1, prod(counts[1:]))
    # Blocks hold at most max_positions, unless one tile row is already more.
    assert all((b - a) * max(1, prod(counts[1:])) <= max(max_positions, tile_row)
               for a, b in pairwise(bounds))
