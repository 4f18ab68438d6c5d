"""The background grid behind the Poisson-disk functions of ``_bluenoise.py``.

A :class:`Grid` holds a batch of equal boxes ("tiles"), each with its own
background grid padded by ``REACH`` empty cells, so that no cell of one tile
ever sees a cell of another. Randomness comes from a draw source:

- :class:`GeneratorDraws` takes everything from one ``numpy.random.Generator``
  in the order the cells are resolved (one tile; the historical stream of
  ``poisson_disk_positions``);
- :class:`HashDraws` gives every cell its own SplitMix64 stream, seeded by a
  hash of the tile's key and the cell's position in the tile. A tile's
  points then depend on its key alone, never on the other tiles of the batch
  or on the rounds in which its cells are resolved.
"""

from __future__ import annotations

import math
from typing import Protocol, cast

import numpy as np

#: Deepest sub-cell refinement per dimension (a sub-cell side is cell / 2**level).
MAX_LEVEL = {1: 10, 2: 5, 3: 3}
#: Most sub-cells a cell may hold before it stops refining.
MAX_SUBCELLS = 64
#: Darts a cell throws per iteration after its first dart, while it still refines.
DARTS = 4
#: Most darts per cell and iteration once it no longer refines (bounds memory for huge ``attempts``).
BULK_DARTS = 256
#: Cells adjacent to a cell on every axis within +-REACH may hold a conflicting point.
REACH = 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32, _S11 = (np.uint64(s) for s in (30, 27, 31, 32, 11))


def mix(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, a bijection of uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64).reshape(-1)  # never a 0-d array: scalars warn on wrap
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return cast(np.ndarray, z ^ (z >> _S31))


def squared_norm(v: np.ndarray) -> np.ndarray:
    """``(v0 * v0 + v1 * v1) + v2 * v2`` over the last axis, left to right, in float64."""
    acc = v[..., 0] * v[..., 0]
    for k in range(1, v.shape[-1]):
        acc = acc + v[..., k] * v[..., k]
    return acc


def _ragged(rows: np.ndarray, values: np.ndarray, n: int, dim: int) -> np.ndarray:
    """Pack ``values`` (sorted by ``rows``) into ``(n, K, dim)``, padded with +inf."""
    count = np.bincount(rows, minlength=n)
    width = max(int(count.max(initial=0)), 1)
    slot = np.arange(rows.size) - (np.cumsum(count) - count)[rows]
    out = np.full((n, width, dim), np.inf)
    out[rows, slot] = values
    return out


def _box_covered(lo: np.ndarray, hi: np.ndarray, disks: np.ndarray, r2: float) -> np.ndarray:
    """True where one of the open disks ``(m, K, D)`` holds every corner of box ``m``."""
    far = np.maximum(np.abs(disks - lo[:, None, :]), np.abs(disks - hi[:, None, :]))
    return cast(np.ndarray, (squared_norm(far) < r2).any(axis=1))  # (m,): ``far`` is 3-D


class Draws(Protocol):
    """A source of cell priorities and darts for :meth:`Grid.sample`."""

    #: True: each cell picks its dart count per iteration from its own state. Only for
    #: sources whose n-th dart of a cell is the same however darts are grouped into
    #: iterations: the result is then the same as with one count for all cells.
    local: bool

    def priority(self, grid: Grid) -> np.ndarray:
        """``(tiles, *grid.shape)`` int64 >= 0, distinct within a tile."""
        ...

    def darts(
        self, grid: Grid, cells: np.ndarray, count: np.ndarray, per_cell: np.ndarray, thrown: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sub-cell picks in ``[0, count)`` ``(P,)`` and uniforms in [0, 1) ``(P, D)``.

        ``P = per_cell.sum()``; rows are cell-major (``per_cell[i]`` darts of
        ``cells[i]`` in a row), ``thrown`` darts have already been thrown.
        """
        ...


class GeneratorDraws:
    """Everything from one generator, in resolution order (one tile only)."""

    local = False

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def priority(self, grid: Grid) -> np.ndarray:
        return self.rng.permutation(math.prod(grid.shape)).reshape((1,) + grid.shape)

    def darts(
        self, grid: Grid, cells: np.ndarray, count: np.ndarray, per_cell: np.ndarray, thrown: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n, darts = cells.size, int(per_cell[0])  # the same count for every cell
        pick = self.rng.integers(0, count[:, None], size=(n, darts))
        return pick.reshape(-1), self.rng.random((n, darts, grid.dim)).reshape(-1, grid.dim)


class HashDraws:
    """One SplitMix64 stream per cell, seeded by ``mix(key ^ mix((cell + 1) * golden))``.

    Draw 0 of a cell's stream is its priority, draws ``1 + n * (D + 1) + k``
    are its ``n``-th dart (``k = 0``: the sub-cell, ``k >= 1``: the offset on
    axis ``k - 1``); ``cell`` is the C-order index in the padded tile grid.
    A cell's first accepted dart is thus the same whatever the number of
    darts per iteration (sub-cells change only when the cell itself refines,
    after the same darts either way), so each cell may throw its remaining
    darts at once as soon as it stops refining.
    """

    local = True

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = np.asarray(keys, dtype=np.uint64).reshape(-1)

    def _cell_keys(self, grid: Grid, cells: np.ndarray) -> np.ndarray:
        tile, local = np.divmod(cells, grid.tile_cells)
        return self.keys[tile] ^ mix((local.astype(np.uint64) + np.uint64(1)) * _GOLDEN)

    def priority(self, grid: Grid) -> np.ndarray:
        cells = np.arange(math.prod(grid.padded), dtype=np.int64).reshape(grid.padded)[grid.inner]
        bits = (math.prod(grid.shape) - 1).bit_length()  # room for the in-tile index below the hash
        hashed = mix(self._cell_keys(grid, cells.reshape(-1))) >> np.uint64(bits + 1)
        order = np.arange(math.prod(grid.shape), dtype=np.uint64)
        ranks = (hashed << np.uint64(bits)).reshape(grid.tiles, -1) | order  # < 2**63, distinct per tile
        return ranks.astype(np.int64).reshape(cells.shape)

    def darts(
        self, grid: Grid, cells: np.ndarray, count: np.ndarray, per_cell: np.ndarray, thrown: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        row = np.repeat(np.arange(cells.size), per_cell)
        serial = np.arange(row.size) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell) + thrown[row]
        base = np.repeat(self._cell_keys(grid, cells), per_cell)
        width = np.uint64(grid.dim + 1)
        first = serial.astype(np.uint64) * width + np.uint64(1)
        words = [mix(base + (first + np.uint64(k)) * _GOLDEN) for k in range(grid.dim + 1)]
        # Lemire's multiply-shift: floor(count * u32 / 2**32), exact for count < 2**32.
        pick = ((words[0] >> _S32) * np.repeat(count, per_cell).astype(np.uint64)) >> _S32
        uniform = np.stack([(w >> _S11).astype(np.float64) for w in words[1:]], -1) * 2.0**-53
        return pick.astype(np.int64), uniform


class Grid:
    """Background grids of ``tiles`` equal boxes, each padded by ``REACH`` empty cells."""

    def __init__(self, extent: np.ndarray, radius: float, shape: tuple[int, ...], tiles: int = 1) -> None:
        dim = extent.size
        self.dim, self.extent, self.side, self.r2 = dim, extent, radius / math.sqrt(dim), radius * radius
        self.shape, self.tiles = shape, tiles
        self.padded = (tiles,) + tuple(c + 2 * REACH for c in shape)
        self.tile_cells = math.prod(self.padded[1:])
        self.inner = (slice(None),) + (slice(REACH, -REACH),) * dim
        strides = np.cumprod((1,) + self.padded[:0:-1])[::-1].astype(np.int64)
        span = np.arange(-REACH, REACH + 1)
        offsets = np.stack(np.meshgrid(*[span] * dim, indexing="ij"), -1).reshape(-1, dim)
        self.offsets = offsets[(offsets != 0).any(axis=1)]  # (5**D - 1, D)
        self.flat_offsets = self.offsets @ strides[1:]
        self.children = np.stack(np.meshgrid(*[np.arange(2)] * dim, indexing="ij"), -1).reshape(-1, dim)
        self.below = np.nextafter(extent, 0.0)  # the largest float64 inside [0, extent)
        self.max_level = MAX_LEVEL[dim]

    def sample(self, draws: Draws, attempts: int) -> tuple[np.ndarray, np.ndarray]:
        """Resolve every cell in random priority order.

        Returns the points ``(n, D)`` in (tile, C cell) order and their tiles ``(n,)``.
        """
        size, inner = math.prod(self.padded), self.inner
        self.points = np.full((size, self.dim), np.inf)
        self.filled = np.zeros(size, bool)
        priority = np.full(self.padded, -1, np.int64)
        priority[inner] = draws.priority(self)
        # For each cell, how many cells within +-2 have a higher priority.
        higher = np.zeros(self.padded, np.int16)
        centre = priority[inner]
        for offset in self.offsets:
            view = (slice(None),) + tuple(slice(REACH + o, p - REACH + o) for o, p in zip(offset, self.padded[1:]))
            higher[inner] += priority[view] > centre
        priority, higher = priority.reshape(-1), higher.reshape(-1)
        ready = np.flatnonzero((higher == 0) & (priority >= 0))
        marks = np.zeros(size, bool)
        while ready.size:  # about 50 rounds for a million cells
            self._resolve(ready, draws, attempts)
            targets = ready[:, None] + self.flat_offsets
            lower = priority[targets]
            targets = targets[(lower >= 0) & (lower < priority[ready][:, None])]
            priority[ready] = -1
            np.subtract.at(higher, targets, np.int16(1))
            marks[targets[higher[targets] == 0]] = True
            ready = np.flatnonzero(marks)
            marks[ready] = False
        keep = self.filled.reshape(self.padded)[inner].reshape(-1)
        out = self.points.reshape(*self.padded, self.dim)[inner].reshape(-1, self.dim)[keep]
        owner = np.repeat(np.arange(self.tiles, dtype=np.int64), math.prod(self.shape))[keep]
        del self.points, self.filled
        return np.ascontiguousarray(out), owner

    def _resolve(self, cells: np.ndarray, draws: Draws, attempts: int) -> None:
        """Throw darts into ``cells`` (no two within +-2 of each other), keep at most one each."""
        n, dim, r2 = cells.size, self.dim, self.r2
        lo = (np.stack(np.unravel_index(cells, self.padded), -1)[:, 1:] - REACH) * self.side
        width = np.minimum(self.side, self.extent - lo)
        # Stored neighbours whose disk meets the cell: they prune sub-cells and darts.
        around = cells[:, None] + self.flat_offsets
        stored = np.flatnonzero(self.filled[around])
        rows = stored // self.flat_offsets.size
        found = self.points[around.reshape(-1)[stored]]
        high = lo + width
        nearest = np.clip(found, lo[rows], high[rows])
        meets = squared_norm(nearest - found) < r2
        disks = _ragged(rows[meets], found[meets], n, dim)
        # Sub-cells, grouped by cell: owner index and integer position at the cell's level.
        owner = np.flatnonzero(~_box_covered(lo, high, disks, r2))
        index = np.zeros((owner.size, dim), np.int64)
        level = np.zeros(n, np.int64)
        failures = np.zeros(n, np.int64)
        darts = np.ones(n, np.int64)
        while owner.size:  # at most `attempts` iterations, usually a handful
            count = np.bincount(owner, minlength=n)
            active = np.flatnonzero(count)
            per_cell = darts[active]
            sub, uniform = draws.darts(self, cells[active], count[active], per_cell, failures[active])
            row = np.repeat(np.arange(active.size), per_cell)  # dart -> position in `active`
            serial = np.arange(row.size) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
            pick = (np.cumsum(count) - count)[active][row] + sub
            step = np.ldexp(width[active], -level[active][:, None])[row]
            x = lo[active][row] + (index[pick] + uniform) * step
            x = np.minimum(np.minimum(x, high[active][row]), self.below)
            ok = (squared_norm(x[:, None, :] - disks[active][row]) >= r2).all(axis=1)
            ok &= serial < (attempts - failures[active])[row]
            passing = np.flatnonzero(ok)
            first = passing[np.r_[True, row[passing][1:] != row[passing][:-1]]] if passing.size else passing
            hit = row[first]  # the first passing dart of each cell that has one
            self.points[cells[active[hit]]] = x[first]
            self.filled[cells[active[hit]]] = True
            failures[active] += per_cell
            live = np.zeros(n, bool)
            live[active] = True
            live[active[hit]] = False
            live &= failures < attempts
            keep = live[owner]
            owner, index = owner[keep], index[keep]
            split = live & (level < self.max_level)
            split &= np.bincount(owner, minlength=n) * len(self.children) <= MAX_SUBCELLS
            owner, index = self._refine(owner, index, split, lo, width, level, disks)
            level[split] += 1
            bulk = np.minimum(attempts - failures, BULK_DARTS)
            if draws.local:  # each cell from its own state only
                darts = np.where(split, np.minimum(2 * darts, DARTS), bulk)
            elif split.any():
                darts[:] = min(2 * int(darts[0]), DARTS)
            elif live.any():  # no cell refines any more: spend the remaining darts in bulk
                darts[:] = bulk[live].max()

    def _refine(
        self,
        owner: np.ndarray,
        index: np.ndarray,
        split: np.ndarray,
        lo: np.ndarray,
        width: np.ndarray,
        level: np.ndarray,
        disks: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Halve the sub-cells of the cells in ``split``; drop halves one disk covers."""
        parents = np.flatnonzero(split[owner])
        if not parents.size:
            return owner, index
        dim, kids = self.dim, len(self.children)
        cell = owner[parents]
        half = np.ldexp(width[cell], -(level[cell] + 1)[:, None])
        base = 2 * index[parents]
        # Squared farthest distance per axis from each disk centre to the low / high half.
        q = disks[cell]
        edge = [(q - (lo[cell] + (base + t) * half)[:, None, :]) ** 2 for t in range(3)]
        halves = np.stack([np.maximum(edge[0], edge[1]), np.maximum(edge[1], edge[2])], -1)
        acc = halves[:, :, 0, :]
        for k in range(1, dim):  # same left-to-right sum as squared_norm
            acc = acc[..., None] + halves[:, :, k, :].reshape((len(cell), q.shape[1]) + (1,) * k + (2,))
        free = ~(acc < self.r2).any(axis=1).reshape(len(cell), kids)
        # Each parent row becomes its free children, in place, keeping rows grouped by cell.
        rows_out = np.ones(owner.size, np.int64)
        per_parent = free.sum(axis=1)
        rows_out[parents] = per_parent
        first = np.cumsum(rows_out) - rows_out
        new_owner = np.repeat(owner, rows_out)
        new_index = np.repeat(index, rows_out, axis=0)
        parent, child = np.nonzero(free)
        rank = np.arange(parent.size) - (np.cumsum(per_parent) - per_parent)[parent]
        new_index[first[parents[parent]] + rank] = base[parent] + self.children[child]
        return new_owner, new_index
