"""Deliberately naive reference implementations, the oracles of the property tests.

Per-patch Python loops with exact ``Fraction`` arithmetic: slow, obviously
right, and written without any of the core's tricks.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import prod

import numpy as np


def interval_overlap(a0: Fraction, a1: Fraction, b0: Fraction, b1: Fraction) -> Fraction:
    return max(Fraction(0), min(a1, b1) - max(a0, b0))


def exact_coverage(mask: np.ndarray, image_shape, start, stop) -> Fraction:
    """Area of the window ``[start, stop)`` (image pixels) covered by ``mask``.

    ``mask`` has one dimension per spatial axis; mask pixel ``i`` along an
    axis covers ``[i * n / m, (i + 1) * n / m)`` of an image axis of ``n``
    pixels. The window is clipped to the image.
    """
    total = Fraction(0)
    for index in zip(*np.nonzero(mask)):
        area = Fraction(1)
        for i, n, m, a, b in zip(index, image_shape, mask.shape, start, stop):
            foot0 = Fraction(int(i) * n, m)
            foot1 = Fraction((int(i) + 1) * n, m)
            area *= interval_overlap(Fraction(a), Fraction(min(b, n)), foot0, foot1)
            if area == 0:
                break
        total += area
    return total


def grid_positions(n: int, patch: int, stride: int, incomplete: bool) -> list[int]:
    out = []
    start = 0
    while start < n and (incomplete or start + patch <= n):
        out.append(start)
        start += stride
    return out


def reference_plan(
    image_shape, chunks, mask, patch, stride, min_area, incomplete
) -> list[tuple[tuple[int, ...], int, Fraction]]:
    """``(topleft, chunk_id, coverage)`` per samplable patch, chunk-major order.

    Sizes are the effective ones (axes of extent 1 already have patch 1).
    """
    tiles = [s * max(1, -(-c // s)) for c, s in zip(chunks, stride)]
    tile_grid = [-(-n // t) for n, t in zip(image_shape, tiles)]
    area = Fraction(min_area) * prod(patch) if min_area < 1 else Fraction(min_area)
    rows = []
    axes_positions = [grid_positions(n, p, s, incomplete) for n, p, s in zip(image_shape, patch, stride)]
    for topleft in itertools.product(*axes_positions):
        stop = tuple(t + p for t, p in zip(topleft, patch))
        if mask is None:
            cover = Fraction(prod(min(b, n) - a for a, b, n in zip(topleft, stop, image_shape)))
        else:
            cover = exact_coverage(mask, image_shape, topleft, stop)
            if cover < area:
                continue
        tile_index = tuple(t // s for t, s in zip(topleft, tiles))
        chunk_id = int(np.ravel_multi_index(tile_index, tile_grid))
        rows.append((topleft, chunk_id, cover))
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def patch_density(shape, extent, start, stop) -> np.ndarray:
    """Patch area over each canvas pixel's image region, over the region's area, by loops.

    Canvas pixel ``(i, j)`` shows ``[i * H / h, (i + 1) * H / h)`` by
    ``[j * W / w, (j + 1) * W / w)`` of an image of ``extent = (H, W)``.
    """
    (h, w), (big_h, big_w) = shape, extent
    out = np.zeros(shape)
    for (y0, x0), (y1, x1) in zip(np.asarray(start).tolist(), np.asarray(stop).tolist()):
        for i in range(h):
            for j in range(w):
                dy = interval_overlap(Fraction(y0), Fraction(y1), Fraction(i * big_h, h), Fraction((i + 1) * big_h, h))
                dx = interval_overlap(Fraction(x0), Fraction(x1), Fraction(j * big_w, w), Fraction((j + 1) * big_w, w))
                out[i, j] += dy * dx / (Fraction(big_h, h) * Fraction(big_w, w))
    return out


def nearest_window_start(centre: Fraction, size: int) -> int:
    """Start of the ``size``-pixel window whose centre is nearest to ``centre``; ties to the right.

    By search over the candidate starts, not by a formula.
    """
    guess = int(centre) - size
    candidates = range(guess - 2, guess + size + 3)
    return min(candidates, key=lambda s: (abs(s + Fraction(size, 2) - centre), -s))


def shape_ratio_centre(start: int, stop: int, n: int, m: int) -> Fraction:
    """Centre of the reference window ``[start, stop)`` in modality edges, corners aligned (``m / n``)."""
    return Fraction(m, n) * Fraction(start + stop, 2)


def physical_centre(start: int, stop: int, reference, modality) -> Fraction:
    """Centre of ``[start, stop)`` in modality edges through physical space.

    ``reference`` and ``modality`` are ``(scale, translation)``: pixel ``i``
    covers ``[t + s * (i - 1/2), t + s * (i + 1/2))``.
    """
    (s_ref, t_ref), (s_mod, t_mod) = reference, modality
    left = t_ref + s_ref * (start - Fraction(1, 2))
    right = t_ref + s_ref * (stop - Fraction(1, 2))
    middle = (left + right) / 2
    return (middle - t_mod) / s_mod + Fraction(1, 2)


def padded_read(full: np.ndarray, starts, sizes, mode: str, pad_value=0) -> np.ndarray:
    """``full[start:start + size]`` per axis, with the outside filled by ``numpy.pad``."""
    widths = [(max(0, -s), max(0, s + n - m)) for s, n, m in zip(starts, sizes, full.shape)]
    extra = {"constant_values": pad_value} if mode == "constant" else {}
    padded = np.pad(full, widths, mode=mode, **extra)
    return padded[tuple(slice(s + b, s + b + n) for s, n, (b, _) in zip(starts, sizes, widths))]
