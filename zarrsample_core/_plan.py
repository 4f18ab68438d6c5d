"""PatchPlan: the patches of one image as a few numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["PatchPlan"]


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class PatchPlan:
    """Where the patches of one image are: arrays, not per-patch objects.

    Patches are ordered chunk tile by chunk tile (tiles in C order), and in C
    order of their top-left inside a tile.

    Attributes
    ----------
    spatial_axes : str
        Axis letters of the columns of ``toplefts``.
    image_shape : tuple of int
        Reference-image extent per spatial axis (1 where absent).
    patch_size, stride, pad : tuple of int
        Effective sizes per spatial axis (1, 1 and 0 on axes of extent 1).
    tile_shape : tuple of int
        Chunk tile per spatial axis; tile ``i`` along an axis holds the
        top-lefts in ``[i * tile, (i + 1) * tile)``.
    toplefts : (n, D) int64
        Patch top-left corners (pad excluded) in reference-image pixels.
    chunk_ids : (n,) int64
        Flat C-order index of each patch's chunk tile, non-decreasing.
    coverage : (n,) float64
        Image pixels of the patch window (pad excluded) covered by the mask;
        without a mask, the window's area inside the image.

    Notes
    -----
    Memory is ``8 * (D + 2)`` bytes per patch.
    """

    spatial_axes: str
    image_shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    tile_shape: tuple[int, ...]
    toplefts: np.ndarray
    chunk_ids: np.ndarray
    coverage: np.ndarray

    def __post_init__(self) -> None:
        d = len(self.spatial_axes)
        tl = _frozen(self.toplefts, np.int64).reshape(-1, d)
        object.__setattr__(self, "toplefts", tl)
        object.__setattr__(self, "chunk_ids", _frozen(self.chunk_ids, np.int64).reshape(-1))
        object.__setattr__(self, "coverage", _frozen(self.coverage, np.float64).reshape(-1))
        if not (len(self.chunk_ids) == len(self.coverage) == len(tl)):
            raise ValueError("toplefts, chunk_ids and coverage must have the same length")

    def __len__(self) -> int:
        return len(self.toplefts)

    def __repr__(self) -> str:
        return (
            f"PatchPlan({len(self)} patches, axes={self.spatial_axes!r}, image={self.image_shape}, "
            f"patch={self.patch_size}, stride={self.stride}, pad={self.pad}, tile={self.tile_shape})"
        )

    @property
    def tile_grid(self) -> tuple[int, ...]:
        """Number of chunk tiles per spatial axis."""
        return tuple(-(-n // t) for n, t in zip(self.image_shape, self.tile_shape))

    @property
    def nbytes(self) -> int:
        """Bytes held by the plan's arrays."""
        return self.toplefts.nbytes + self.chunk_ids.nbytes + self.coverage.nbytes

    def chunk_starts(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Top-left pixel of each chunk tile, ``(k, D)`` int64."""
        idx = np.unravel_index(np.asarray(chunk_ids, dtype=np.int64), self.tile_grid)
        return np.stack(idx, axis=-1).astype(np.int64) * np.asarray(self.tile_shape, np.int64)

    def chunk_bounds(self, chunk_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``[start, stop)`` of one chunk tile, clipped to the image."""
        start = self.chunk_starts(np.array([chunk_id]))[0]
        stop = np.minimum(start + np.asarray(self.tile_shape), np.asarray(self.image_shape))
        return start, stop

    def patches_in_chunk(self, chunk_id: int) -> slice:
        """The rows of the plan whose top-left lies in chunk tile ``chunk_id``."""
        lo, hi = np.searchsorted(self.chunk_ids, [chunk_id, chunk_id + 1])
        return slice(int(lo), int(hi))

    def chunk_slices(self) -> list[dict[str, slice]]:
        """``{axis: slice}`` of each chunk tile holding at least one patch."""
        ids = np.unique(self.chunk_ids)
        starts = self.chunk_starts(ids)
        stops = np.minimum(starts + np.asarray(self.tile_shape), np.asarray(self.image_shape))
        return _to_slices(self.spatial_axes, starts, stops)

    def patch_slices(self, rows: slice | np.ndarray | None = None) -> list[dict[str, slice]]:
        """``{axis: slice}`` per patch, the pad included on both sides."""
        tl = self.toplefts if rows is None else self.toplefts[rows]
        pad = np.asarray(self.pad, np.int64)
        return _to_slices(self.spatial_axes, tl - pad, tl + np.asarray(self.patch_size) + pad)

    def rows_in_box(self, box: Mapping[str, slice]) -> np.ndarray:
        """Rows whose top-left lies in ``box`` (``{axis: slice}``; absent = all)."""
        keep = np.ones(len(self), dtype=bool)
        for k, ax in enumerate(self.spatial_axes):
            s = box.get(ax, slice(None))
            if s.start is not None:
                keep &= self.toplefts[:, k] >= s.start
            if s.stop is not None:
                keep &= self.toplefts[:, k] < s.stop
        return np.flatnonzero(keep)


def _to_slices(axes: str, starts: np.ndarray, stops: np.ndarray) -> list[dict[str, slice]]:
    starts = starts.tolist()
    stops = stops.tolist()
    return [
        {ax: slice(a, b) for ax, a, b in zip(axes, start, stop)}
        for start, stop in zip(starts, stops)
    ]
