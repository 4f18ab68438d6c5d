"""PatchPlan: the patches of one image as a few numpy arrays."""

from __future__ import annotations

import bisect
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .._errors import ZarrsampleError
from ..sources._collection import ImageCollection
from ._grid import chunk_tile_shape
from ._plan_io import plan_fields, plan_header, read_plan_file, write_plan_file

__all__ = ["PatchPlan", "check_plan_fits"]


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
    coverage : (n,) float64
        Image pixels of the patch window (pad excluded) covered by the mask;
        without a mask, the window's area inside the image.
    chunk_ids : (n,) int64
        Flat C-order index of each patch's chunk tile, non-decreasing;
        derived from ``toplefts`` on each access (not stored).

    Notes
    -----
    Memory is ``8 * (D + 1)`` bytes per patch (24 for 2-D, 32 for 3-D):
    only ``toplefts`` and ``coverage`` are stored. ``chunk_ids`` is
    ``ravel_multi_index(toplefts // tile_shape, tile_grid)``, computed in
    O(n) time and ``8 * n`` temporary bytes per access; code that needs it
    repeatedly keeps its own copy (or run lengths), and
    :meth:`patches_in_chunk` finds a tile's rows by bisection in O(log n)
    without it.

    Examples
    --------
    >>> plan = PatchPlan(spatial_axes="YX", image_shape=(8, 8), patch_size=(4, 4),
    ...                  stride=(4, 4), pad=(0, 0), tile_shape=(4, 8),
    ...                  toplefts=[[0, 0], [0, 4], [4, 4]], coverage=[16, 16, 8])
    >>> plan.chunk_ids.tolist(), plan.patches_in_chunk(1), plan.nbytes // len(plan)
    ([0, 0, 1], slice(2, 3, None), 24)
    """

    spatial_axes: str
    image_shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    tile_shape: tuple[int, ...]
    toplefts: np.ndarray
    coverage: np.ndarray

    def __post_init__(self) -> None:
        d = len(self.spatial_axes)
        tl = _frozen(self.toplefts, np.int64).reshape(-1, d)
        object.__setattr__(self, "toplefts", tl)
        object.__setattr__(self, "coverage", _frozen(self.coverage, np.float64).reshape(-1))
        if len(self.coverage) != len(tl):
            raise ZarrsampleError(
                f"toplefts and coverage must have the same length, got {len(tl)} and {len(self.coverage)}"
            )

    def __setstate__(self, state: dict[str, object]) -> None:
        for key, value in state.items():  # unpickled arrays come back writeable
            object.__setattr__(self, key, value)
        self.__post_init__()

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
    def chunk_ids(self) -> np.ndarray:
        """Flat C-order chunk tile of each patch, ``(n,)`` int64, computed on access."""
        if not len(self):
            return np.zeros(0, np.int64)
        tiles = self.toplefts // np.asarray(self.tile_shape, np.int64)
        return np.ravel_multi_index(tuple(tiles.T), self.tile_grid).astype(np.int64, copy=False)

    @property
    def nbytes(self) -> int:
        """Bytes held by the plan's arrays (``8 * (D + 1)`` per patch)."""
        return self.toplefts.nbytes + self.coverage.nbytes

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
        """The rows of the plan whose top-left lies in chunk tile ``chunk_id``.

        Bisection over the rows (sorted by tile): O(log n), no ``chunk_ids`` array.
        """
        tile, grid, toplefts = self.tile_shape, self.tile_grid, self.toplefts

        def tile_of(row: int) -> int:
            flat = 0
            for x, t, g in zip(toplefts[row].tolist(), tile, grid):
                flat = flat * g + x // t
            return flat

        rows = range(len(self))
        lo = bisect.bisect_left(rows, chunk_id, key=tile_of)
        hi = bisect.bisect_left(rows, chunk_id + 1, lo=lo, key=tile_of)
        return slice(lo, hi)

    def chunk_slices(self) -> list[dict[str, slice]]:
        """``{axis: slice}`` of each chunk tile holding at least one patch."""
        ids = self.chunk_ids
        ids = ids[np.diff(ids, prepend=-1) != 0]  # sorted: the first row of each run
        starts = self.chunk_starts(ids)
        stops = np.minimum(starts + np.asarray(self.tile_shape), np.asarray(self.image_shape))
        return _to_slices(self.spatial_axes, starts, stops)

    def patch_slices(self, rows: slice | np.ndarray | None = None) -> list[dict[str, slice]]:
        """``{axis: slice}`` per patch, the pad included on both sides."""
        tl = self.toplefts if rows is None else self.toplefts[rows]
        pad = np.asarray(self.pad, np.int64)
        return _to_slices(self.spatial_axes, tl - pad, tl + np.asarray(self.patch_size) + pad)

    def windows(self, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """``[start, stop)`` per spatial axis of each patch, pad included: ``(n, D, 2)`` int64.

        What ``PatchDataset(..., return_positions=True)`` gives as
        ``"position"``, for all rows at once (e.g. ``Stitcher(positions=...)``).

        Examples
        --------
        >>> plan = PatchPlan(spatial_axes="YX", image_shape=(8, 8), patch_size=(4, 4),
        ...                  stride=(4, 4), pad=(1, 1), tile_shape=(8, 8),
        ...                  toplefts=[[0, 4]], coverage=[16])
        >>> plan.windows().tolist()
        [[[-1, 5], [3, 9]]]
        """
        tl = self.toplefts if rows is None else self.toplefts[rows]
        pad = np.asarray(self.pad, np.int64)
        return np.stack([tl - pad, tl + np.asarray(self.patch_size, np.int64) + pad], axis=-1)

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

    # -- files ---------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the plan to ``path``: a ``.npz`` file, or a zarr group.

        Parameters
        ----------
        path : str or os.PathLike
            Ends with ``.zarr`` (or is an existing directory): a zarr group
            with arrays ``toplefts`` and ``coverage`` and the other fields in
            its attributes. Otherwise a numpy ``.npz`` file (the suffix is not
            added), readable with ``allow_pickle=False``.
        overwrite : bool
            Replace an existing file or directory at ``path``.

        Raises
        ------
        FileExistsError
            ``path`` exists and ``overwrite`` is False.
        TypeError
            ``path`` or ``overwrite`` of a wrong type.

        Notes
        -----
        Stores ``8 * (D + 1)`` bytes per patch before compression plus a
        small JSON header with a format version (see :meth:`load`).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> plan = PatchPlan(spatial_axes="YX", image_shape=(8, 8), patch_size=(4, 4),
        ...                  stride=(4, 4), pad=(0, 0), tile_shape=(8, 8),
        ...                  toplefts=[[0, 0], [4, 4]], coverage=[16, 16])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     plan.save(pathlib.Path(tmp) / "plan.npz")
        ...     PatchPlan.load(pathlib.Path(tmp) / "plan.npz").toplefts.tolist()
        [[0, 0], [4, 4]]
        """
        fields = {k: getattr(self, k) for k in ("image_shape", "patch_size", "stride", "pad", "tile_shape")}
        header = plan_header(self.spatial_axes, fields, len(self))
        write_plan_file(path, header, self.toplefts, self.coverage, overwrite=overwrite)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, collection: ImageCollection | None = None
    ) -> PatchPlan:
        """Read a plan written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.npz`` file or a zarr group directory.
        collection : ImageCollection, optional
            Check that the plan was made for this collection: same spatial
            axes present, same reference extents, and a chunk tile that
            matches the reference's storage chunks.

        Returns
        -------
        PatchPlan

        Raises
        ------
        FileNotFoundError
            Nothing at ``path``.
        ZarrsampleError
            Not a plan file, an unknown format version, a field of a wrong
            type or shape, top-lefts outside the image or out of chunk order,
            or (with ``collection``) a plan made for another image; the
            message says what differs.

        Notes
        -----
        Reads everything into memory (``8 * (D + 1)`` bytes per patch) and
        checks it in O(n).
        """
        if collection is not None and not isinstance(collection, ImageCollection):
            raise TypeError(
                f"collection must be an ImageCollection or None, got {type(collection).__name__}"
            )
        header, toplefts, coverage = read_plan_file(path)
        plan = cls(**plan_fields(header, toplefts, coverage, str(path)))
        if collection is not None:
            check_plan_fits(plan, collection, name=f"the plan in {path}")
        return plan



def check_plan_fits(plan: PatchPlan, collection: ImageCollection, *, name: str = "plan") -> None:
    """Raise unless ``plan`` was made for ``collection``'s reference image.

    Parameters
    ----------
    plan : PatchPlan
    collection : ImageCollection
    name : str
        How messages call the plan (e.g. ``"plans[3]"``).

    Raises
    ------
    TypeError
        ``collection`` is not an ImageCollection.
    ZarrsampleError
        The reference image lacks an axis the plan samples along, its extents
        differ, or the plan's chunk tile is not the reference's storage chunk
        rounded up to the stride (the tile a sampler would use), which would
        break chunk-by-chunk reading. The message says what differs.

    Examples
    --------
    >>> from zarrsample_core import ImageCollection, PatchSampler, open_image
    >>> coll = ImageCollection({"images": open_image(np.zeros((8, 8)), axes="YX")}, spatial_axes="YX")
    >>> plan = PatchSampler(4, spatial_axes="YX").plan(coll)
    >>> check_plan_fits(plan, coll)
    >>> other = ImageCollection({"images": open_image(np.zeros((8, 9)), axes="YX")}, spatial_axes="YX")
    >>> check_plan_fits(plan, other)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zarrsample_core._errors.ZarrsampleError: plan was made for an image of shape (8, 8) along 'YX', ...
    """
    if not isinstance(collection, ImageCollection):
        raise TypeError(f"collection must be an ImageCollection, got {type(collection).__name__}")
    axes = plan.spatial_axes
    ref = collection.reference
    missing = [a for a, n in zip(axes, plan.image_shape) if n > 1 and a not in ref.axes]
    if missing:
        raise ZarrsampleError(
            f"{name} samples along axes {missing} that the reference image {ref.name!r} "
            f"(axes {ref.axes!r}) lacks"
        )
    shape = collection.spatial_extent(collection.reference_name, axes)
    if tuple(shape) != tuple(plan.image_shape):
        raise ZarrsampleError(
            f"{name} was made for an image of shape {plan.image_shape} along {axes!r}, but the "
            f"reference image {ref.name!r} has {tuple(shape)}"
        )
    real = np.asarray(plan.image_shape) > 1
    expected = chunk_tile_shape(np.asarray(collection.spatial_chunks(axes)), np.asarray(plan.stride))
    if not np.array_equal(np.asarray(plan.tile_shape)[real], expected[real]):
        raise ZarrsampleError(
            f"{name} has chunk tile {plan.tile_shape} along {axes!r}, but the reference image "
            f"{ref.name!r} has storage chunks {collection.spatial_chunks(axes)}, i.e. tile "
            f"{tuple(expected.tolist())} for stride {plan.stride}: the plan was made for "
            f"another chunking"
        )


def _to_slices(axes: str, starts: np.ndarray, stops: np.ndarray) -> list[dict[str, slice]]:
    starts = starts.tolist()
    stops = stops.tolist()
    return [
        {ax: slice(a, b) for ax, a, b in zip(axes, start, stop)}
        for start, stop in zip(starts, stops)
    ]
