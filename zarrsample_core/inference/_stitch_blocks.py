"""Building blocks of the Stitcher: blend weights, chunk accumulators, spills.

An output is accumulated per *block*: the spatial part of one storage chunk
(or shard) of the output array, holding every leading axis (channels,
classes) whole. A block's accumulator keeps ``values`` (a float64 weighted
sum, or the running maximum) and ``weight`` (float64, spatial only).
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from functools import reduce
from itertools import product
from pathlib import Path

import numpy as np

__all__ = [
    "Block",
    "BlockStore",
    "SpillStore",
    "cast_output",
    "default_chunks",
    "expected_counts",
    "normalise",
    "patch_weights",
    "touched_blocks",
]

#: Smallest gaussian weight: every pixel of a patch keeps a (negligible) say,
#: so a pixel covered only by patch borders never divides by an underflowed 0.
WEIGHT_FLOOR = 1e-12


def patch_weights(window: Sequence[int], *, blend: str, sigma: float) -> list[np.ndarray]:
    """Separable blend weights of a cropped patch: one float64 vector per spatial axis.

    Parameters
    ----------
    window : sequence of int
        Side of the cropped patch along each spatial axis.
    blend : {"mean", "gaussian", "max"}
        ``"gaussian"`` gives ``exp(-x**2 / (2 * (sigma * side)**2))`` with
        ``x`` the distance of the pixel centre from the window centre
        (floored at ``1e-12``); the others give ones.
    sigma : float
        Gaussian width as a fraction of the side.

    Returns
    -------
    list of numpy.ndarray
        The weight of a pixel is the product of its axes' entries.

    Examples
    --------
    >>> [w.round(3).tolist() for w in patch_weights([4, 1], blend="gaussian", sigma=0.5)]
    [[0.755, 0.969, 0.969, 0.755], [1.0]]
    """
    out = []
    for side in window:
        if blend == "gaussian":
            x = np.arange(side, dtype=np.float64) + 0.5 - side / 2
            out.append(np.maximum(np.exp(-(x**2) / (2 * (sigma * side) ** 2)), WEIGHT_FLOOR))
        else:
            out.append(np.ones(side))
    return out


class Block:
    """The accumulator of one output block (``values`` and ``weight``)."""

    __slots__ = ("values", "weight")

    def __init__(self, values: np.ndarray, weight: np.ndarray) -> None:
        self.values = values
        self.weight = weight

    @classmethod
    def empty(cls, leading: tuple[int, ...], shape: tuple[int, ...], blend: str) -> Block:
        fill = -np.inf if blend == "max" else 0.0
        return cls(np.full((*leading, *shape), fill), np.zeros(shape))

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.weight.nbytes

    def add(
        self, patch: np.ndarray, source: np.ndarray, inside: np.ndarray, blend: str,
        weights: list[np.ndarray], cropped: np.ndarray,
    ) -> None:
        """Blend ``patch`` region ``source`` into block region ``inside``.

        ``source``, ``inside`` and ``cropped`` are ``(2, D)`` ``[lo, hi)`` of the
        same pixels relative to the patch, the block and the cropped patch.
        """
        lead = (slice(None),) * (patch.ndim - source.shape[1])
        here = tuple(slice(a, b) for a, b in inside.T.tolist())
        data = patch[lead + tuple(slice(a, b) for a, b in source.T.tolist())]
        target = self.values[lead + here]
        if blend == "max":
            np.maximum(target, data, out=target)
            self.weight[here] += 1.0
        elif blend == "mean":
            np.add(target, data, out=target)
            self.weight[here] += 1.0
        else:
            w = reduce(np.multiply, np.ix_(*(v[a:b] for v, (a, b) in zip(weights, cropped.T.tolist()))))
            target += data * w
            self.weight[here] += w

    def merge(self, other: Block, blend: str) -> None:
        """Add another partial accumulator of the same block into this one."""
        if blend == "max":
            np.maximum(self.values, other.values, out=self.values)
        else:
            self.values += other.values
        self.weight += other.weight


def normalise(block: Block, blend: str) -> np.ndarray:
    """Final float64 values of a block: weighted mean (or max), 0 where nothing landed."""
    covered = block.weight > 0
    if blend == "max":
        return np.where(covered, block.values, 0.0)
    return np.divide(block.values, block.weight, out=np.zeros_like(block.values), where=covered)


def cast_output(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in the output dtype: integers are rounded and clipped to the dtype's range."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


class SpillStore:
    """Partial block accumulators on disk (``.npy`` files in a temporary directory).

    The directory is created at the first spill and removed by :meth:`close`
    (or when the store is garbage-collected).
    """

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._keys: set[int] = set()
        self.spills = 0

    @property
    def path(self) -> str | None:
        """The temporary directory, or None before the first spill / after close."""
        return None if self._tmp is None else self._tmp.name

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> set[int]:
        return set(self._keys)

    def _files(self, key: int) -> tuple[Path, Path]:
        assert self._tmp is not None
        return Path(self._tmp.name, f"{key}.values.npy"), Path(self._tmp.name, f"{key}.weight.npy")

    def save(self, key: int, block: Block, blend: str) -> None:
        """Store ``block`` for ``key``, merged with what is already stored for it."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="zarrsample-stitch-")
        self.pop(key, into=block, blend=blend)  # merged into block
        values, weight = self._files(key)
        np.save(values, block.values)
        np.save(weight, block.weight)
        self._keys.add(key)
        self.spills += 1

    def pop(self, key: int, *, into: Block | None = None, blend: str = "mean") -> Block | None:
        """The stored accumulator of ``key`` (removed from disk) merged into ``into``.

        ``into`` itself when nothing is stored for ``key`` (None if both are).
        """
        if key not in self._keys:
            return into
        self._keys.discard(key)
        values, weight = self._files(key)
        block = Block(np.load(values), np.load(weight))
        values.unlink()
        weight.unlink()
        if into is not None:
            into.merge(block, blend)
            return into
        return block

    def close(self) -> None:
        """Remove the temporary directory and everything in it."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._keys.clear()


class BlockStore:
    """The accumulators of unfinished blocks: in memory up to ``max_bytes``, spilled beyond it.

    Parameters
    ----------
    max_bytes : int
        Budget of the in-memory accumulators; the least recently used ones
        beyond it (never the newest) are spilled to a :class:`SpillStore`.
    blend : {"mean", "gaussian", "max"}
        How blocks accumulate (and merge).
    spill : bool
        False keeps every accumulator in memory (a numpy output is one block).
    """

    def __init__(self, max_bytes: int, blend: str, spill: bool = True) -> None:
        self.max_bytes, self.blend, self.can_spill = max_bytes, blend, spill
        self.memory: OrderedDict[int, Block] = OrderedDict()
        self.spill = SpillStore()
        self.pending_bytes = self.peak_bytes = 0

    def get(self, key: int, leading: tuple[int, ...], shape: tuple[int, ...]) -> Block:
        """The in-memory accumulator of ``key``, created empty (``(*leading, *shape)``) if absent."""
        block = self.memory.get(key)
        if block is not None:
            self.memory.move_to_end(key)
            return block
        block = self.memory[key] = Block.empty(leading, shape, self.blend)
        self.pending_bytes += block.nbytes
        self.peak_bytes = max(self.peak_bytes, self.pending_bytes)
        while self.can_spill and self.pending_bytes > self.max_bytes and len(self.memory) > 1:
            old, evicted = self.memory.popitem(last=False)
            self.pending_bytes -= evicted.nbytes
            self.spill.save(old, evicted, self.blend)
        return block

    def pop(self, key: int) -> Block | None:
        """The whole accumulator of ``key`` (memory and spill merged, both removed); None if none."""
        block = self.memory.pop(key, None)
        if block is not None:
            self.pending_bytes -= block.nbytes
        return self.spill.pop(key, into=block, blend=self.blend)

    def keys(self) -> set[int]:
        """Keys with an accumulator in memory or on disk."""
        return set(self.memory) | self.spill.keys()

    def close(self) -> None:
        """Drop every accumulator and remove the spill directory."""
        self.memory.clear()
        self.pending_bytes = 0
        self.spill.close()


def touched_blocks(
    lo: np.ndarray, hi: np.ndarray, block: np.ndarray, grid: tuple[int, ...]
) -> list[tuple[int, int, np.ndarray]]:
    """``(patch, block key, region)`` for every block each window ``[lo, hi)`` touches.

    ``region`` is the ``(2, D)`` ``[lo, hi)`` of the overlap in output pixels
    and the key is the block's flat C-order index in ``grid``.

    Examples
    --------
    >>> [(b, k, r.tolist()) for b, k, r in touched_blocks(
    ...     np.array([[2]]), np.array([[6]]), np.array([4]), (2,))]
    [(0, 0, [[2], [4]]), (0, 1, [[4], [6]])]
    """
    first, last = (lo // block).tolist(), ((hi - 1) // block).tolist()
    tasks = []
    for b in range(len(lo)):
        for index in product(*(range(f, e + 1) for f, e in zip(first[b], last[b]))):
            start = np.asarray(index, np.int64) * block
            region = np.stack([np.maximum(lo[b], start), np.minimum(hi[b], start + block)])
            tasks.append((b, int(np.ravel_multi_index(index, grid)), region))
    return tasks


def default_chunks(shape: tuple[int, ...], d: int) -> tuple[int, ...]:
    """Leading axes whole; 65536, 256 or 64 pixels per spatial axis for D = 1, 2, >= 3."""
    side = {1: 65536, 2: 256}.get(d, 64)
    lead = len(shape) - d
    return shape[:lead] + tuple(min(n, side) for n in shape[lead:])


def expected_counts(first: np.ndarray, last: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """How many windows touch each block, from per-window block ranges.

    Parameters
    ----------
    first, last : (n, D) int64
        First and last block index (inclusive) of each window along each axis.
    grid : tuple of int
        Blocks per axis.

    Returns
    -------
    numpy.ndarray
        ``grid``-shaped int64 counts, built from an n-D difference array
        (``2**D`` scatter-adds and ``D`` cumulative sums, no loop per window).

    Examples
    --------
    >>> expected_counts(np.array([[0, 0], [1, 1]]), np.array([[1, 1], [1, 1]]), (2, 2)).tolist()
    [[1, 1], [1, 2]]
    """
    d = len(grid)
    diff = np.zeros(tuple(g + 1 for g in grid), np.int64)
    for corner in range(2**d):
        upper = [(corner >> k) & 1 for k in range(d)]
        index = tuple(last[:, k] + 1 if upper[k] else first[:, k] for k in range(d))
        np.add.at(diff, index, -1 if sum(upper) % 2 else 1)
    for k in range(d):
        diff = np.cumsum(diff, axis=k)
    return diff[tuple(slice(0, g) for g in grid)]
