"""Patch grids and chunk tiles: stride arithmetic on integer pixel coordinates."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from math import prod

import numpy as np

__all__ = [
    "chunk_major_positions",
    "chunk_tile_shape",
    "fill_positions",
    "grid_counts",
    "grid_windows",
    "tile_row_bounds",
]


def grid_counts(
    shape: np.ndarray, patch: np.ndarray, stride: np.ndarray, *, incomplete: bool
) -> np.ndarray:
    """Number of grid positions per axis.

    Positions are ``j * stride`` for ``j >= 0``. A complete patch must fit in
    the image (``start + patch <= shape``); with ``incomplete=True`` every
    position whose patch starts inside the image counts (``start < shape``),
    so that every pixel is covered when ``stride <= patch``.

    Parameters
    ----------
    shape, patch, stride : (D,) int64
        Image extent, patch size and stride per axis.
    incomplete : bool
        Whether border patches that stick out of the image count.

    Returns
    -------
    (D,) int64
        Positions per axis (0 where none fits).

    Examples
    --------
    >>> grid_counts(np.array([10]), np.array([4]), np.array([2]), incomplete=False)
    array([4])
    >>> grid_counts(np.array([10]), np.array([4]), np.array([2]), incomplete=True)
    array([5])
    """
    shape = np.asarray(shape, dtype=np.int64)
    patch = np.asarray(patch, dtype=np.int64)
    stride = np.asarray(stride, dtype=np.int64)
    if incomplete:
        return -(-shape // stride)
    return np.where(shape >= patch, (shape - patch) // stride + 1, 0)


def grid_windows(count: int, patch: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (pad excluded) of the ``count`` grid windows on one axis."""
    starts = np.arange(count, dtype=np.int64) * stride
    return starts, starts + patch


def chunk_tile_shape(chunks: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """Chunk tile per axis: the storage chunk rounded up to a multiple of the stride.

    Examples
    --------
    >>> chunk_tile_shape(np.array([1000, 1]), np.array([256, 1]))
    array([1024,    1])
    """
    chunks = np.asarray(chunks, dtype=np.int64)
    stride = np.asarray(stride, dtype=np.int64)
    return stride * np.maximum(1, -(-chunks // stride))


def tile_row_bounds(counts: Sequence[int], per_tile: Sequence[int], *, max_positions: int) -> list[int]:
    """Split the first grid axis into blocks of whole chunk-tile rows.

    Parameters
    ----------
    counts : (D,) int
        Grid positions per axis.
    per_tile : (D,) int
        Grid positions per chunk tile per axis.
    max_positions : int
        About how many grid positions a block may hold; a block holds at
        least one tile row, however large.

    Returns
    -------
    list of int
        Grid-row bounds ``[0, ..., counts[0]]``, every inner one a multiple
        of ``per_tile[0]``; ``[0]`` for an empty first axis.

    Examples
    --------
    >>> tile_row_bounds([10, 4], [3, 2], max_positions=24)
    [0, 6, 10]
    >>> tile_row_bounds([10, 4], [3, 2], max_positions=1)
    [0, 3, 6, 9, 10]
    """
    n0, p0 = int(counts[0]), int(per_tile[0])
    tile_row = p0 * max(1, prod(int(c) for c in counts[1:]))
    step = p0 * max(1, max_positions // tile_row)
    return list(range(0, n0, step)) + [n0]


def chunk_major_positions(keep: np.ndarray, per_tile: Sequence[int]) -> np.ndarray:
    """Grid indices of the true elements of ``keep``, chunk tile by chunk tile.

    Parameters
    ----------
    keep : ndarray of bool
        One element per grid position of a block whose origin is a tile corner.
    per_tile : (D,) int
        Grid positions per chunk tile per axis.

    Returns
    -------
    (k, D) ndarray
        Indices into ``keep`` ordered by tile (C order of the tiles), then C
        order inside the tile; the smallest unsigned dtype that holds them.

    Notes
    -----
    The block is padded to whole tiles, viewed as ``(t0, g0, t1, g1, ...)``
    and read as ``(t0, t1, ..., g0, g1, ...)``: no sort. Memory is two bytes
    per position of the block plus ``8 * (2 D + 1)`` bytes per true element.

    Examples
    --------
    >>> keep = np.ones((2, 4), bool); keep[0, 1] = False
    >>> chunk_major_positions(keep, [2, 2]).tolist()
    [[0, 0], [1, 0], [1, 1], [0, 2], [0, 3], [1, 2], [1, 3]]
    """
    d = keep.ndim
    per = [int(p) for p in per_tile]
    tiles = [-(-n // p) for n, p in zip(keep.shape, per)]
    padded_shape = tuple(t * p for t, p in zip(tiles, per))
    padded = keep
    if padded_shape != keep.shape:
        padded = np.zeros(padded_shape, dtype=bool)
        padded[tuple(slice(0, n) for n in keep.shape)] = keep
    blocks = padded.reshape([v for pair in zip(tiles, per) for v in pair])
    blocks = blocks.transpose(list(range(0, 2 * d, 2)) + list(range(1, 2 * d, 2)))
    flat = np.flatnonzero(blocks)  # ravel copies the block in (tiles, inside) order
    del padded, blocks
    coords = np.unravel_index(flat, tuple(tiles) + tuple(per))
    del flat
    out = np.empty((len(coords[0]), d), dtype=np.min_scalar_type(max(padded_shape, default=0)))
    for k in range(d):
        out[:, k] = coords[k] * per[k] + coords[d + k]
    return out


def fill_positions(
    blocks: Iterator[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]],
    bounds: list[int],
    stride: np.ndarray,
    capacity: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-lefts ``(n, D)`` int64 and coverage ``(n,)`` float64, block after block.

    ``blocks`` yields, per block of grid rows ``bounds[i]:bounds[i + 1]``, the
    kept block-local grid indices in chunk-major order and a function giving
    their coverage from their grid indices. The arrays are allocated for
    ``capacity`` patches (every grid position) but only the pages written are
    ever resident; they are cut to the patches found in place at the end.
    """
    toplefts = np.empty((capacity, len(stride)), dtype=np.int64)
    cover = np.empty(capacity, dtype=np.float64)
    at = 0
    for a, (idx, coverage) in zip(bounds, blocks):
        grid = toplefts[at : at + len(idx)]
        grid[:] = idx
        grid[:, 0] += a
        cover[at : at + len(idx)] = coverage(grid)
        grid *= stride
        at += len(idx)
        del grid, idx, coverage
    try:  # in place: the unused tail was never touched, so it was never resident
        toplefts.resize((at, len(stride)))
        cover.resize(at)
    except ValueError:  # something else holds a reference (a debugger): copy instead
        return toplefts[:at].copy(), cover[:at].copy()
    return toplefts, cover
