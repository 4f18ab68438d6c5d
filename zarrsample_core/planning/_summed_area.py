"""Exact coverage of arbitrary windows in O(1) each: summed-area tables of masks at any scale.

With the conventions of :mod:`._coverage` (mask pixel ``i`` covers
``[i * n / m, (i + 1) * n / m)`` image pixels; image coordinates times
``m'`` are integers ``u``), the covered area of ``[0, u)`` on one axis is
``I(u) = (n' - r) * S[q] + r * S[q + 1]`` with ``q, r = divmod(u, n')`` and
``S`` the prefix sum of the mask. In ``D`` dimensions the same holds axis by
axis: ``I`` is the multilinear interpolation, with integer weights, of the
``D``-dimensional prefix-sum table ``S``, and a window's coverage is the
inclusion-exclusion of ``I`` over its ``2**D`` corners. Every window costs
``4**D`` lookups (16 in 2-D), whatever its size: random positions need no
grid and no strip of the mask.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from math import prod

import numpy as np

from .._errors import ZarrsampleError
from ..sources._collection import BlockReader
from ._coverage import AxisScale, denominator

__all__ = ["SummedArea", "TableCache", "check_table_bytes", "summed_area"]

#: Mask rows summed at once while building a table (bounds the working memory).
_STRIP_ELEMENTS = 1 << 24
#: Windows evaluated at once by :meth:`SummedArea.coverage`.
_BLOCK = 1 << 13


class SummedArea:
    """The prefix-sum table of a mask and the exact coverage of windows over it.

    Parameters
    ----------
    table : ndarray
        ``(m_0 + 1, ..., m_{D-1} + 1)`` prefix sums, ``table[i] =
        mask[:i_0, ..., :i_{D-1}].sum()``, int32 or int64.
    scales : sequence of AxisScale
        Image and mask extents per spatial axis.

    Notes
    -----
    Memory is the table: ``4`` (or ``8`` beyond ``2**31`` covered pixels)
    bytes per mask pixel. :meth:`coverage` of ``k`` windows costs ``4**D``
    gathers of ``k`` elements.
    """

    def __init__(self, table: np.ndarray, scales: Sequence[AxisScale]) -> None:
        self.table = table
        self.scales = tuple(scales)
        self.denominator = denominator(self.scales)
        self._flat = table.reshape(-1)
        self._steps = np.array([prod(table.shape[k + 1 :]) for k in range(table.ndim)], np.int64)
        bound = prod(s.n * s.m_reduced + s.n_reduced for s in self.scales) * 4 ** len(self.scales)
        self._exact_int64 = bound < 2**62

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return int(self.table.nbytes)

    @property
    def total(self) -> int:
        """Covered mask pixels (the table's last entry)."""
        return int(self._flat[-1])

    def coverage(self, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Covered-area numerators of the windows ``[start, stop)``.

        Parameters
        ----------
        start, stop : (k, D) int64
            Window bounds in image pixels; clipped to the image.

        Returns
        -------
        (k,) ndarray
            Numerators over :attr:`denominator` (image pixels covered times
            it), as :func:`._coverage.windows_coverage` gives them: int64,
            or Python ints in an object array when int64 could overflow.
        """
        start = np.asarray(start, np.int64).reshape(-1, len(self.scales))
        stop = np.asarray(stop, np.int64).reshape(-1, len(self.scales))
        if len(start) <= _BLOCK:
            return self._coverage(start, stop)
        # In blocks that stay in the CPU caches (several times faster than one pass).
        return np.concatenate([
            self._coverage(start[a : a + _BLOCK], stop[a : a + _BLOCK]) for a in range(0, len(start), _BLOCK)
        ])

    def _coverage(self, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        dtype: type = np.int64 if self._exact_int64 else object
        # Per axis, up to four (index, weight) terms: +I(stop) and -I(start), two cells each;
        # the second cell drops out where no bound falls inside a mask pixel (r == 0).
        combos: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(len(start), np.int64), np.ones(len(start), dtype))]
        for k, s in enumerate(self.scales):
            axis_terms = []
            for bound, sign in ((stop[:, k], 1), (start[:, k], -1)):
                q, r = np.divmod(np.minimum(np.maximum(bound, 0), s.n) * s.m_reduced, s.n_reduced)
                axis_terms.append((q * self._steps[k], (s.n_reduced - r) if sign > 0 else (r - s.n_reduced)))
                if r.any():
                    top = np.minimum(q + 1, s.m)  # r == 0 whenever q == m
                    axis_terms.append((top * self._steps[k], r if sign > 0 else -r))
            if dtype is object:
                axis_terms = [(i, w.astype(object)) for i, w in axis_terms]
            combos = [(i + j, w * v) for i, w in combos for j, v in axis_terms]
        out: np.ndarray = np.zeros(len(start), dtype=dtype)
        for index, weight in combos:
            values = np.take(self._flat, index)
            out += (values.astype(object) if dtype is object else values) * weight
        return out


    def grid_coverage(self, start: np.ndarray, shape: np.ndarray, patch: np.ndarray) -> np.ndarray | None:
        """Numerators of the windows ``[start + o, start + o + patch)`` for every ``o`` in a small grid.

        Parameters
        ----------
        start : (L, D) int64
            Grid origins (e.g. the leaves of :func:`._samplable.samplable_set`).
        shape : (D,) int
            Grid offsets ``o`` per axis: ``0 .. shape - 1``.
        patch : (D,) int
            Window size.

        Returns
        -------
        (L, *shape) int64, or None
            As :meth:`coverage` of each window; None where the per-window
            lookups are cheaper (masks much finer than the image) or int64
            could overflow.

        Notes
        -----
        Windows of one grid share most prefix-sum entries: along each axis
        their bounds fall in two short runs of mask rows. The entries of
        those runs are gathered once per grid (``prod(2 W)`` lookups, ``W``
        the run length) and every window is a multilinear form over them,
        instead of ``4**D`` lookups per window.
        """
        d = len(self.scales)
        shape = np.asarray(shape, np.int64)
        if not self._exact_int64 or len(start) == 0:
            return None
        weights, rows = [], []
        lanes = np.arange(len(start))[:, None]
        for k, s in enumerate(self.scales):
            offsets = np.arange(int(shape[k]), dtype=np.int64)
            runs = []  # per bound (start, stop): first row, rows relative to it, remainders, sign
            for bound, sign in ((start[:, k, None] + offsets, -1), (start[:, k, None] + offsets + patch[k], 1)):
                q, r = np.divmod(np.minimum(np.maximum(bound, 0), s.n) * s.m_reduced, s.n_reduced)
                runs.append((q[:, :1], q - q[:, :1], r, sign))
            width = max(int(local.max()) for _, local, _, _ in runs) + 2
            if 2 * width > 4 * int(shape[k]):
                return None  # long runs: the per-window lookups are cheaper
            matrix = np.zeros((len(start), int(shape[k]), 2 * width), np.int64)
            firsts = []
            for j, (first, local, r, sign) in enumerate(runs):
                matrix[lanes, offsets[None, :], j * width + local] += sign * (s.n_reduced - r)
                matrix[lanes, offsets[None, :], j * width + local + 1] += sign * r
                firsts.append(first + np.arange(width, dtype=np.int64))
            weights.append(matrix)
            rows.append(np.minimum(np.concatenate(firsts, axis=1), s.m) * self._steps[k])
        # The block of prefix sums each grid needs, then one contraction per axis.
        index = rows[0].reshape((len(start), -1) + (1,) * (d - 1))
        for k in range(1, d):
            index = index + rows[k].reshape((len(start),) + (1,) * k + (-1,) + (1,) * (d - 1 - k))
        block = np.take(self._flat, index).astype(np.int64)
        letters = "abcdefgh"[:d]
        outputs = "ijklmnop"[:d]
        terms = ",".join(f"z{o}{a}" for o, a in zip(outputs, letters))
        return np.einsum(f"z{letters},{terms}->z{outputs}", block, *weights, optimize=True)


def check_table_bytes(shape: Sequence[int], max_bytes: int | None, what: str) -> type:
    """The dtype of the summed-area table of a mask of ``shape``, refused beyond ``max_bytes``.

    Raises
    ------
    ZarrsampleError
        The table would exceed ``max_bytes``; the message gives its size and the remedies.
    """
    pixels = prod(shape)
    dtype = np.int32 if pixels < 2**31 else np.int64
    nbytes = prod(m + 1 for m in shape) * np.dtype(dtype).itemsize
    if max_bytes is not None and nbytes > max_bytes:
        raise ZarrsampleError(
            f"{what} has {pixels} pixels along the sampled axes: its summed-area table would take "
            f"{nbytes / 2**20:.0f} MiB, more than max_plan_bytes={max_bytes}; use a coarser mask "
            "(e.g. a lower pyramid level) or raise max_plan_bytes"
        )
    return dtype


def summed_area(
    read_block: BlockReader,
    scales: Sequence[AxisScale],
    *,
    max_bytes: int | None,
    what: str,
    equals: int | None = None,
) -> SummedArea:
    """Build the :class:`SummedArea` of a mask (or of one label class), strip by strip.

    Parameters
    ----------
    read_block : callable
        ``read_block(lo, hi)`` gives mask rows ``[lo, hi)`` along the first
        spatial axis, one dimension per spatial axis.
    scales : sequence of AxisScale
        Image and mask extents per spatial axis.
    max_bytes : int or None
        Refuse a table larger than this (None: no limit).
    what : str
        How the error message calls the mask.
    equals : int, optional
        Count the pixels equal to this value (a label class) instead of the
        non-zero ones.

    Raises
    ------
    ZarrsampleError
        The table would exceed ``max_bytes``; the message gives its size.
    """
    shape = tuple(s.m for s in scales)
    dtype = check_table_bytes(shape, max_bytes, what)
    table = np.zeros(tuple(m + 1 for m in shape), dtype=dtype)
    inner = tuple(slice(1, None) for _ in shape[1:])
    rows = max(1, _STRIP_ELEMENTS // max(1, prod(shape[1:])))
    for lo in range(0, shape[0], rows):
        hi = min(shape[0], lo + rows)
        block = np.asarray(read_block(lo, hi))
        block = (block == equals) if equals is not None else (block != 0)
        target = table[(slice(lo + 1, hi + 1), *inner)]
        target[...] = block
        for axis in range(1, target.ndim):
            np.cumsum(target, axis=axis, out=target)
        # Along the first axis row after row: numpy's cumsum across rows is many
        # times slower here than adding each (vectorised) row to the one before.
        for row in range(lo + 1, hi + 1):
            np.add(table[row], table[row - 1], out=table[row])
    return SummedArea(table, scales)


class TableCache:
    """Summed-area tables of live collections, least recently used dropped beyond ``max_bytes``.

    A table is 4 bytes per mask pixel (67 MB for a 4096 x 4096 mask), so a
    sampler over many slides keeps only the recent ones; without its table a
    plan's coverage is computed from the mask itself (a strip read, slower).
    Nothing is pickled: each process starts empty.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[int, tuple[weakref.ref, SummedArea]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"])  # type: ignore[misc]

    def get(self, owner: object) -> SummedArea | None:
        """The table kept for ``owner`` (a collection), or None."""
        entry = self._tables.get(id(owner))
        if entry is None or entry[0]() is not owner:
            return None
        self._tables.move_to_end(id(owner))
        return entry[1]

    def put(self, owner: object, table: SummedArea) -> None:
        """Keep ``table`` for ``owner`` if it fits, dropping the least recently used."""
        self._tables.pop(id(owner), None)
        if table.nbytes > self.max_bytes:
            return
        self._tables[id(owner)] = (weakref.ref(owner), table)
        held = sum(t.nbytes for ref, t in self._tables.values() if ref() is not None)
        while held > self.max_bytes:
            _, (ref, old) = self._tables.popitem(last=False)
            held -= old.nbytes if ref() is not None else 0
        for key in [k for k, (ref, _) in self._tables.items() if ref() is None]:
            del self._tables[key]
