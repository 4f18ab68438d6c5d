"""Exact mask coverage of patch windows, for masks at any scale.

A mask with ``m`` pixels along an axis on which the reference image has ``n``
pixels gives mask pixel ``i`` the footprint ``[i * n / m, (i + 1) * n / m)`` in
image pixels. With ``g = gcd(n, m)``, ``n' = n / g`` and ``m' = m / g``,
multiplying image coordinates by ``m'`` turns every footprint boundary and
every window boundary into an integer, so the covered area of a window is an
integer *numerator* over the denominator ``prod(m')``: no float, no epsilon.

The area is separable: one axis at a time, a window ``[a, b)`` sums the mask
with weights equal to the overlap of the window with each footprint, which is
``I(b * m') - I(a * m')`` with the running integral
``I(t) = n' * S[t // n'] + (t % n') * x[t // n']`` (``S`` the prefix sum).
The mask is read in strips along the first spatial axis, so memory stays
bounded by the strip, whatever the mask size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from itertools import pairwise
from math import gcd, prod

import numpy as np

from ..sources._collection import BlockReader

__all__ = [
    "AxisScale",
    "axis_scales",
    "coverage_blocks",
    "points_coverage",
    "threshold_numerator",
    "windows_coverage",
]

#: Mask elements read and summed at once (bounds the working memory).
STRIP_ELEMENTS = 1 << 23


class AxisScale(tuple):
    """``(n, m, n_reduced, m_reduced)`` for one axis: image and mask extents."""

    __slots__ = ()

    def __new__(cls, n: int, m: int) -> AxisScale:
        g = gcd(n, m)
        return super().__new__(cls, (n, m, n // g, m // g))

    n = property(lambda self: self[0])
    m = property(lambda self: self[1])
    n_reduced = property(lambda self: self[2])
    m_reduced = property(lambda self: self[3])


def axis_scales(image_shape: Sequence[int], mask_shape: Sequence[int]) -> tuple[AxisScale, ...]:
    """One :class:`AxisScale` per spatial axis."""
    return tuple(AxisScale(int(n), int(m)) for n, m in zip(image_shape, mask_shape))


def denominator(scales: Sequence[AxisScale]) -> int:
    """The common denominator of coverage numerators (``prod(m')``)."""
    return prod(s.m_reduced for s in scales)


def threshold_numerator(min_area: float, patch: Sequence[int], scales: Sequence[AxisScale]) -> int:
    """Smallest coverage numerator that passes ``min_area``.

    ``min_area`` in [0, 1) is a fraction of the full patch area (incomplete
    border patches included), ``>= 1`` a count of image pixels. The float's
    exact binary value is used (``Fraction``), so the test is exact.
    """
    area = Fraction(min_area)
    if area < 1:
        area *= prod(int(p) for p in patch)
    target = area * denominator(scales)
    return -((-target.numerator) // target.denominator)


def _numerator_dtype(scales: Sequence[AxisScale]) -> type:
    # The largest intermediate is bounded by prod(n * m'): the running integral
    # over a whole axis, times window sums of the axes reduced before it.
    bound = prod(s.n * s.m_reduced + s.n_reduced for s in scales)
    return np.int64 if bound < 2**62 else object


def _reduce_axis(
    x: np.ndarray, axis: int, lo: int, starts: np.ndarray, stops: np.ndarray, scale: AxisScale, dtype: type
) -> np.ndarray:
    """Weighted window sums of ``x`` along ``axis`` (mask pixels ``lo ..``)."""
    length = x.shape[axis]
    n_red, m_red = scale.n_reduced, scale.m_reduced
    qa, ra = np.divmod(np.clip(starts, 0, scale.n) * m_red, n_red)
    qb, rb = np.divmod(np.clip(stops, 0, scale.n) * m_red, n_red)
    qa -= lo
    qb -= lo
    seg_dtype = np.int32 if x.dtype == bool and length < 2**31 else dtype
    span = qb - qa
    if not ra.any() and not rb.any() and span[0] > 0 and (span == span[0]).all() and (qa[1:] == qb[:-1]).all():
        # Aligned, equal, back-to-back windows (the usual grid): block sums.
        index = [slice(None)] * x.ndim
        index[axis] = slice(int(qa[0]), int(qb[-1]))
        blocks = x[tuple(index)]
        blocks = blocks.reshape(x.shape[:axis] + (len(qa), int(span[0])) + x.shape[axis + 1 :])
        sums = blocks.sum(axis=axis + 1, dtype=seg_dtype).astype(dtype)
        sums *= n_red
        return sums
    # The prefix sum S is needed only at the rows the windows start or stop
    # at: sum the segments between those rows (one pass, no full cumsum).
    points = np.unique(np.concatenate([[0], qa, qb]))
    segments = np.add.reduceat(x, points[points < length], axis=axis, dtype=seg_dtype)
    shape = list(segments.shape)
    shape[axis] += 1
    prefix: np.ndarray = np.zeros(shape, dtype=dtype)
    body = [slice(None)] * x.ndim
    body[axis] = slice(1, None)
    np.cumsum(segments, axis=axis, dtype=dtype, out=prefix[tuple(body)])
    del segments
    bcast = [1] * x.ndim
    bcast[axis] = -1

    def integral(q: np.ndarray, r: np.ndarray) -> np.ndarray:
        # In place where possible: a few output-sized temporaries at most.
        at = np.take(prefix, np.searchsorted(points, q), axis=axis)
        at *= n_red
        # r == 0 whenever q == length, so the clipped index is never weighted.
        at += np.take(x, np.minimum(q, length - 1), axis=axis) * r.reshape(bcast).astype(dtype)
        return at

    out = integral(qb, rb)
    out -= integral(qa, ra)
    return out


def windows_coverage(
    read_block: BlockReader,
    scales: Sequence[AxisScale],
    windows: Sequence[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Covered area numerators for every combination of per-axis windows.

    Parameters
    ----------
    read_block : callable
        ``read_block(lo, hi)`` returns mask rows ``[lo, hi)`` of the first
        spatial axis and everything on the others, one dimension per spatial
        axis, any dtype (non-zero = covered).
    scales : sequence of AxisScale
        Image and mask extents per spatial axis.
    windows : sequence of (starts, stops)
        Per axis, int64 image-pixel windows ``[start, stop)``; starts along the
        first axis must be non-decreasing. Windows are clipped to the image.

    Returns
    -------
    ndarray
        Shape ``(len(windows[0][0]), ..., len(windows[-1][0]))``; divide by
        :func:`denominator` for the area in image pixels. int64, or Python
        ints in an object array when int64 could overflow.

    Notes
    -----
    Time is linear in the mask pixels read plus the output size; memory is
    one strip of about ``STRIP_ELEMENTS`` mask pixels plus the output.
    :func:`coverage_blocks` gives the same numerators a block of rows at a
    time, without holding the whole output.
    """
    counts = tuple(len(w[0]) for w in windows)
    out: np.ndarray = np.zeros(counts, dtype=_numerator_dtype(scales))
    if 0 in counts:
        return out
    bounds = _strip_bounds(_mask_rows(scales[0], windows[0])[0], _rows_per_strip(scales, counts))
    for a, b, block in zip(bounds[:-1], bounds[1:], coverage_blocks(read_block, scales, windows, bounds)):
        out[a:b] = block
    return out


def coverage_blocks(
    read_block: BlockReader,
    scales: Sequence[AxisScale],
    windows: Sequence[tuple[np.ndarray, np.ndarray]],
    bounds: Sequence[int],
) -> Iterator[np.ndarray]:
    """The numerators of :func:`windows_coverage`, one block of first-axis windows at a time.

    Parameters
    ----------
    read_block, scales, windows
        As for :func:`windows_coverage`.
    bounds : sequence of int
        Non-decreasing window indices along the first axis, from 0 to
        ``len(windows[0][0])``: block ``i`` holds windows
        ``bounds[i]:bounds[i + 1]``.

    Yields
    ------
    ndarray
        ``windows_coverage(...)[bounds[i]:bounds[i + 1]]``, same dtype, one
        block per consecutive pair of ``bounds``.

    Notes
    -----
    The mask is read in strips of about ``STRIP_ELEMENTS`` pixels, each
    reduced along the other axes once (to about ``STRIP_ELEMENTS / 16``
    partial sums) and shared by every block it holds; a block that crosses
    a strip's end starts a new strip. Memory is one strip plus one block.
    """
    dtype = _numerator_dtype(scales)
    counts = tuple(len(w[0]) for w in windows)
    first = scales[0]
    row_lo, row_hi = _mask_rows(first, windows[0])
    rows_per_strip = _rows_per_strip(scales, counts)
    strip_lo = strip_hi = 0
    x: np.ndarray | None = None
    for a, b in pairwise(bounds):
        a, b = int(a), int(b)
        if a == b or 0 in counts:
            yield np.zeros((b - a,) + counts[1:], dtype=dtype)
            continue
        lo = min(int(row_lo[a:b].min()), first.m - 1)
        hi = max(int(row_hi[a:b].max()), lo + 1)
        if x is None or lo < strip_lo or hi > strip_hi:
            # The strip serves every window starting within rows_per_strip of lo.
            end = int(np.searchsorted(row_lo, lo + rows_per_strip, side="left"))
            strip_lo = lo
            strip_hi = min(first.m, max(hi, int(row_hi[a:max(end, b)].max())))
            x = None  # free the previous strip before reading the next
            x = np.asarray(read_block(strip_lo, strip_hi))
            if x.dtype != bool:
                x = x != 0
            for axis in range(len(scales) - 1, 0, -1):
                x = _reduce_axis(x, axis, 0, windows[axis][0], windows[axis][1], scales[axis], dtype)
        part = x[lo - strip_lo : hi - strip_lo]
        yield _reduce_axis(part, 0, lo, windows[0][0][a:b], windows[0][1][a:b], first, dtype)


def _mask_rows(first: AxisScale, window: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mask rows ``[row_lo, row_hi)`` holding every footprint that meets each first-axis window."""
    starts = np.clip(window[0], 0, first.n) * first.m_reduced
    stops = np.clip(window[1], 0, first.n) * first.m_reduced
    return starts // first.n_reduced, np.minimum(-(-stops // first.n_reduced), first.m)


def _rows_per_strip(scales: Sequence[AxisScale], counts: Sequence[int]) -> int:
    """Mask rows read at once: about STRIP_ELEMENTS mask pixels, a sixteenth as many partial sums."""
    mask_row = max(1, prod(s.m for s in scales[1:]))
    sums_row = max(1, prod(counts[1:]))
    return max(1, min(STRIP_ELEMENTS // mask_row, STRIP_ELEMENTS // (16 * sums_row)))


def _strip_bounds(row_lo: np.ndarray, rows_per_strip: int) -> list[int]:
    """Window indices splitting the first axis into strips of ``rows_per_strip`` mask rows."""
    bounds = [0]
    while bounds[-1] < len(row_lo):
        lo = int(row_lo[bounds[-1]])
        bounds.append(max(bounds[-1] + 1, int(np.searchsorted(row_lo, lo + rows_per_strip, side="left"))))
    return bounds


def points_coverage(
    read_block: BlockReader,
    scales: Sequence[AxisScale],
    starts: np.ndarray,
    patch: np.ndarray,
    groups: np.ndarray,
) -> np.ndarray:
    """Covered area numerators of arbitrary windows ``[starts, starts + patch)``.

    Parameters
    ----------
    read_block, scales
        As for :func:`windows_coverage`.
    starts : (n, D) int64
        Window starts in image pixels.
    patch : (D,) int64
        Window size.
    groups : (n,) int64
        A non-decreasing group label per window (e.g. the chunk-tile row along
        the first axis); each group is evaluated on the grid of its distinct
        per-axis starts, which keeps the work proportional to the windows
        when windows are clustered.

    Returns
    -------
    (n,) ndarray
        Numerators as :func:`windows_coverage` returns them.
    """
    n = len(starts)
    out: np.ndarray = np.zeros(n, dtype=_numerator_dtype(scales))
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for sel in np.split(np.arange(n), bounds):
        if len(sel) == 0:
            continue
        pts = starts[sel]
        uniques, inverse = zip(*(np.unique(pts[:, k], return_inverse=True) for k in range(pts.shape[1])))
        windows = [(u, u + patch[k]) for k, u in enumerate(uniques)]
        table = windows_coverage(read_block, scales, windows)
        out[sel] = table[tuple(inv.ravel() for inv in inverse)]
    return out
