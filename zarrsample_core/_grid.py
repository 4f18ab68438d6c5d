"""Patch grids and chunk tiles: stride arithmetic on integer pixel coordinates."""

from __future__ import annotations

import numpy as np

__all__ = ["chunk_tile_shape", "grid_counts", "grid_windows"]


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
