"""The exact set of samplable top-lefts, every integer pixel position, as boxes and small leaves.

A top-left ``t`` is samplable when every criterion (a mask and its
``min_area``, a label class and its ``min_class_area``) covers its window
``[t, t + patch)`` by at least the criterion's threshold. The positions are
found by refining a grid of cells: all windows of a cell contain the
window of its last top-left ∩ first top-left (the *intersection* window)
and lie in the *union* window, and coverage only grows with the window, so
a cell whose intersection passes every criterion is samplable as a whole,
a cell whose union fails one criterion holds no samplable position, and any
other cell is halved along each axis. Cells of at most :data:`LEAF` pixels
per axis are tested position by position and kept as a bit pattern. The
result is exact, and drawing from it is exactly uniform: pick a position
index in ``[0, total)`` and find its box or leaf bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from ._summed_area import SummedArea

__all__ = ["Criterion", "SamplableSet", "samplable_set"]

#: Largest leaf side per axis: a leaf holds at most ``LEAF ** D <= 64`` positions (one uint64).
LEAF = 4
#: Most cells evaluated at once (bounds the working memory).
_BATCH = 1 << 18


@dataclass(frozen=True)
class Criterion:
    """One coverage test: ``table.coverage(window) >= threshold`` (numerators)."""

    table: SummedArea
    threshold: int


@dataclass(frozen=True, eq=False)
class SamplableSet:
    """Every samplable top-left, as whole boxes plus leaves with a bit per position.

    Attributes
    ----------
    box_start, box_size : (b, D) int64
        Boxes whose every position is samplable.
    leaf_start : (l, D) int64
        Leaves of shape ``leaf_shape`` (clipped to the valid range:
        positions past it have their bit off).
    leaf_bits : (l,) uint64
        Bit ``j`` is on when the position at C-order index ``j`` of
        ``leaf_shape`` inside the leaf is samplable.
    leaf_shape : (D,) int64
    total : int
        Number of samplable positions.
    """

    box_start: np.ndarray
    box_size: np.ndarray
    leaf_start: np.ndarray
    leaf_bits: np.ndarray
    leaf_shape: np.ndarray

    def __post_init__(self) -> None:
        counts = np.concatenate([
            np.prod(self.box_size, axis=1, dtype=np.int64),
            _popcount(self.leaf_bits),
        ])
        object.__setattr__(self, "_ends", np.cumsum(counts))

    @property
    def total(self) -> int:
        """Number of samplable positions."""
        ends: np.ndarray = self._ends  # type: ignore[attr-defined]
        return int(ends[-1]) if len(ends) else 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        ends: np.ndarray = self._ends  # type: ignore[attr-defined]
        return sum(a.nbytes for a in (self.box_start, self.box_size, self.leaf_start, self.leaf_bits, ends))

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` positions drawn independently and uniformly, ``(size, D)`` int64.

        Raises
        ------
        ValueError
            ``size > 0`` from an empty set.
        """
        d = self.leaf_shape.size
        if size == 0:
            return np.zeros((0, d), np.int64)
        if self.total == 0:
            raise ValueError("no samplable position to draw from")
        ends: np.ndarray = self._ends  # type: ignore[attr-defined]
        picks = rng.integers(0, self.total, size=size, dtype=np.int64)
        cell = np.searchsorted(ends, picks, side="right")
        rank = picks - np.where(cell > 0, ends[np.maximum(cell - 1, 0)], 0)
        out = np.empty((size, d), np.int64)
        boxes = len(self.box_start)
        in_box = cell < boxes
        if in_box.any():
            c = cell[in_box]
            out[in_box] = self.box_start[c] + _unravel(rank[in_box], self.box_size[c])
        if (~in_box).any():
            leaf = cell[~in_box] - boxes
            bits = self.leaf_bits[leaf]
            # Position of the rank-th set bit: unpack the 64 bits and count.
            unpacked = (bits[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
            seen = np.cumsum(unpacked, axis=1)
            j = np.argmax(seen > rank[~in_box, None].astype(np.uint64), axis=1)
            out[~in_box] = self.leaf_start[leaf] + np.stack(np.unravel_index(j, tuple(self.leaf_shape)), axis=-1)
        return out


def _unravel(rank: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """C-order coordinates of ``rank[i]`` in a box of shape ``shape[i]``, ``(k, D)``."""
    out = np.empty(shape.shape, np.int64)
    rest = rank.copy()
    for k in range(shape.shape[1] - 1, -1, -1):
        rest, out[:, k] = np.divmod(rest, shape[:, k])
    return out


def _popcount(bits: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(bits).astype(np.int64)
    counts = np.zeros(len(bits), np.int64)  # pragma: no cover - numpy < 2.0
    for j in range(64):
        counts += ((bits >> np.uint64(j)) & np.uint64(1)).astype(np.int64)
    return counts


def samplable_set(
    extent: Sequence[int] | np.ndarray,
    patch: Sequence[int] | np.ndarray,
    criteria: Sequence[Criterion],
    *,
    cell: Sequence[int] | None = None,
) -> SamplableSet:
    """The exact set of top-lefts in ``[0, extent)`` whose windows pass every criterion.

    Parameters
    ----------
    extent : (D,) int
        Valid top-lefts per axis are ``0 .. extent - 1`` (e.g. ``n - patch + 1``
        for complete patches, ``n`` with incomplete ones).
    patch : (D,) int
        Window size per axis.
    criteria : sequence of Criterion
        Coverage tests; none makes every position samplable (one box).
    cell : (D,) int, optional
        Side of the first cells (rounded up to ``LEAF`` times a power of
        two); default about half the patch, which lets cells inside the
        mask pass whole.

    Returns
    -------
    SamplableSet

    Notes
    -----
    Each cell costs two coverage queries per criterion (``4**D`` lookups
    each); only cells that straddle a threshold are refined, so the work is
    the first grid plus a multiple of the threshold's boundary length.
    Leaves cost one query per position (at most ``LEAF**D``).
    """
    extent_v = np.asarray(extent, np.int64)
    patch_v = np.asarray(patch, np.int64)
    d = extent_v.size
    leaf = np.minimum(LEAF, np.maximum(extent_v, 1))
    empty = np.zeros((0, d), np.int64)
    if (extent_v <= 0).any():
        return SamplableSet(empty, empty, empty, np.zeros(0, np.uint64), leaf)
    if not criteria:
        return SamplableSet(np.zeros((1, d), np.int64), extent_v[None].copy(), empty, np.zeros(0, np.uint64), leaf)
    want = np.maximum(1, patch_v // 2) if cell is None else np.asarray(cell, np.int64)
    side = leaf.copy()
    while ((side < want) & (side < extent_v)).any():
        side = np.where((side < want) & (side < extent_v), side * 2, side)
    grid = [np.arange(0, e, s, dtype=np.int64) for e, s in zip(extent_v.tolist(), side.tolist())]
    starts = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, d)
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    leaves: list[tuple[np.ndarray, np.ndarray]] = []
    level = [(starts, np.broadcast_to(side, starts.shape))]
    while level:
        nxt = []
        for start, size in level:
            for a in range(0, len(start), _BATCH):
                s, z = start[a : a + _BATCH], np.minimum(size[a : a + _BATCH], extent_v - start[a : a + _BATCH])
                split_s, split_z = _classify(s, z, patch_v, leaf, criteria, boxes, leaves)
                if len(split_s):
                    nxt.append((split_s, split_z))
        level = nxt
    box_start = np.concatenate([b[0] for b in boxes]) if boxes else empty
    box_size = np.concatenate([b[1] for b in boxes]) if boxes else empty
    box_start, box_size = _merge_runs(box_start, box_size)
    leaf_start = np.concatenate([v[0] for v in leaves]) if leaves else empty
    leaf_bits = np.concatenate([v[1] for v in leaves]) if leaves else np.zeros(0, np.uint64)
    return SamplableSet(box_start, box_size, leaf_start, leaf_bits, leaf)


def _merge_runs(start: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes side by side along the last axis, with equal extents on the others, merged into one."""
    if len(start) < 2:
        return start, size
    d = start.shape[1]
    others = reversed(range(d - 1))
    order = np.lexsort((start[:, -1], *(size[:, k] for k in others), *(start[:, k] for k in reversed(range(d - 1)))))
    start, size = start[order], size[order]
    same = (start[1:, :-1] == start[:-1, :-1]).all(axis=1) & (size[1:, :-1] == size[:-1, :-1]).all(axis=1)
    touching = start[1:, -1] == start[:-1, -1] + size[:-1, -1]
    first = np.flatnonzero(np.concatenate([[True], ~(same & touching)]))
    merged = size[first].copy()
    merged[:, -1] = np.add.reduceat(size[:, -1], first)
    return start[first], merged


def _classify(
    start: np.ndarray, size: np.ndarray, patch: np.ndarray, leaf: np.ndarray,
    criteria: Sequence[Criterion], boxes: list, leaves: list,
) -> tuple[np.ndarray, np.ndarray]:
    """Sort cells into whole boxes, leaves and cells to split; return the children to test next."""
    union_stop = start + size - 1 + patch
    inner_start = start + size - 1
    inner_stop = start + patch
    alive = np.ones(len(start), bool)
    whole = np.ones(len(start), bool)
    for c in criteria:
        alive &= c.table.coverage(start, union_stop) >= c.threshold
        nonempty = (inner_stop > inner_start).all(axis=1)
        inner = np.full(len(start), 0 >= c.threshold)
        if nonempty.any():
            inner[nonempty] = c.table.coverage(inner_start[nonempty], inner_stop[nonempty]) >= c.threshold
        whole &= inner
    whole &= alive
    if whole.any():
        boxes.append((start[whole], np.ascontiguousarray(size[whole])))
    rest = alive & ~whole
    small = rest & (size <= leaf).all(axis=1)
    if small.any():
        leaves.append(_leaf_bits(start[small], size[small], patch, leaf, criteria))
    split = rest & ~small
    if not split.any():
        return np.zeros((0, len(patch)), np.int64), np.zeros((0, len(patch)), np.int64)
    s, z = start[split], size[split]
    half = np.where(z > leaf, -(-z // 2), z)
    children_s, children_z = [], []
    for corner in product((0, 1), repeat=len(patch)):
        pick = np.asarray(corner, np.int64)
        offset = half * pick
        valid = ((pick == 0) | (z > leaf)).all(axis=1) & (offset < z).all(axis=1)
        children_s.append((s + offset)[valid])
        children_z.append(np.where(pick == 1, z - half, np.minimum(half, z))[valid])
    return np.concatenate(children_s), np.concatenate(children_z)


def _leaf_bits(
    start: np.ndarray, size: np.ndarray, patch: np.ndarray, leaf: np.ndarray, criteria: Sequence[Criterion]
) -> tuple[np.ndarray, np.ndarray]:
    """Leaves re-anchored at ``start`` with the bit of every position that passes."""
    offsets = np.stack(np.unravel_index(np.arange(int(np.prod(leaf))), tuple(leaf.tolist())), axis=-1)
    points = (start[:, None, :] + offsets[None]).reshape(-1, len(patch))
    inside = (offsets[None] < size[:, None, :]).all(axis=2).reshape(-1)
    passed = inside.copy()
    for c in criteria:  # each criterion tests only the positions that passed the ones before
        grid = c.table.grid_coverage(start, leaf, patch)
        if grid is not None:  # the leaves' windows share their table entries
            passed &= grid.reshape(-1) >= c.threshold
            continue
        alive = np.flatnonzero(passed)
        passed[alive] = c.table.coverage(points[alive], points[alive] + patch) >= c.threshold
    weights = np.uint64(1) << np.arange(offsets.shape[0], dtype=np.uint64)
    bits = (passed.reshape(len(start), -1).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    keep = bits != 0
    return start[keep], bits[keep]
