"""BlueNoisePatchSampler: Poisson-disk patch positions inside each chunk tile."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from functools import partial
from math import sqrt
from typing import TypedDict, Unpack, cast

import numpy as np

from .._checks import check_int, check_seed
from .._errors import ZarrsampleError
from ..sources._collection import BlockReader, ImageCollection
from ._bluenoise import poisson_disk_positions, poisson_disk_tiles, stream_keys
from ._coverage import AxisScale, denominator, points_coverage, windows_coverage
from ._grid import chunk_tile_shape
from ._plan import PatchPlan
from ._sampler import Geometry, PatchSampler

__all__ = ["BlueNoisePatchSampler"]


class _SamplerOptions(TypedDict, total=False):
    """The :class:`PatchSampler` options ``**kwargs`` passes on (for type checkers)."""

    stride: int | tuple[int, ...] | Mapping[str, int] | None
    pad: int | tuple[int, ...] | Mapping[str, int] | None
    min_area: float
    spatial_axes: str
    allow_incomplete_patches: bool
    max_plan_bytes: int | None


class BlueNoisePatchSampler(PatchSampler):
    """Patches at blue-noise (Poisson-disk) positions inside each chunk tile.

    Parameters
    ----------
    patch_size : int, sequence of int or dict
        As for :class:`PatchSampler`.
    resample_positions : bool
        Draw a fresh pattern for every chunk tile instead of repeating one
        base pattern in all tiles.
    allow_overlap : bool
        False (default): no two returned patches overlap. True: top-left
        corners (hence centres) are at least one patch apart in patch units,
        ``sum((d_k / patch_k) ** 2) >= 1``: the patch side for square patches.
    seed : int or None
        Seed of the patterns; the same seed gives the same positions on every
        machine. None draws a seed from the operating system once, at
        construction.
    resample_per_epoch : bool
        Draw a fresh pattern for every chunk tile in every epoch
        (:meth:`epoch_plan`); implies ``resample_positions``, whatever its
        value. :meth:`plan` is then the plan of epoch 0 of stream 0.
    **kwargs
        ``stride``, ``pad``, ``min_area``, ``spatial_axes`` and
        ``allow_incomplete_patches`` as for :class:`PatchSampler`.

    Attributes
    ----------
    per_epoch : bool
        ``resample_per_epoch``: True when the positions change every epoch,
        so that :class:`~zarrsample_core.PatchDataset` asks
        :meth:`epoch_plan` for each epoch's plan.

    Notes
    -----
    A tile is the storage chunk rounded up to a multiple of the stride and
    at least one patch; positions keep each patch inside its tile, so patches
    of different tiles never overlap either (they differ by at least the
    patch size on the axis of the tile border). Inside a tile, with ``D'``
    axes of extent > 1 and largest patch side ``p``, the Poisson-disk radius
    is ``p * sqrt(D')`` without overlap (then some axis differs by at least
    ``p``, which flooring to whole pixels preserves) and ``p + sqrt(D')`` with
    overlap (flooring moves a point by less than ``sqrt(D')``). Every patch
    also passes the exact ``min_area`` mask test.

    Planning is vectorised over tiles with one base pattern; with
    ``resample_positions=True`` one pattern is drawn per tile the mask
    touches, all tiles at once (:func:`._bluenoise.poisson_disk_tiles`, in
    blocks of bounded memory). A tile's pattern is keyed by ``(seed, draw,
    chunk id)`` alone (:func:`._bluenoise.stream_keys`), and with
    ``resample_per_epoch`` by ``(seed, draw, epoch, stream, chunk id)``, so
    it does not depend on which other tiles or epochs are planned, nor on the
    machine.

    The base pattern (``resample_positions=False``, the default, as in
    zarrdataset's sampler) is the same in every tile and every epoch, so the
    patches of all tiles sit at the same offsets of their tiles. With few
    patches per tile this is a lattice: 256-pixel patches in 512-pixel
    chunks leave 257 top-left positions per axis, room for one patch per
    tile (the disk radius is ``256 * sqrt(2)``), so every top-left sits at
    the same offset of its tile, in every epoch, and most pixels are never
    the centre of a patch. ``resample_positions=True`` draws each tile's
    pattern apart (the same in every epoch); ``resample_per_epoch=True``
    also draws it anew in every epoch and for every image, so that over the
    epochs the patches of a tile take many different positions.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import BlueNoisePatchSampler, ImageCollection, open_image
    >>> coll = ImageCollection({"images": open_image(np.zeros((512, 512), np.uint8), axes="YX")},
    ...                        spatial_axes="YX")
    >>> plan = BlueNoisePatchSampler(64, seed=0, spatial_axes="YX").plan(coll)
    >>> len(plan) > 0
    True
    """

    #: The tiles the mask touches: (collection, key, chunk ids) of the last plan.
    _touched: tuple[weakref.ref, tuple, np.ndarray] | None = None

    def __init__(
        self,
        patch_size: int | tuple[int, ...] | Mapping[str, int],
        resample_positions: bool = False,
        allow_overlap: bool = False,
        seed: int | None = None,
        *,
        resample_per_epoch: bool = False,
        **kwargs: Unpack[_SamplerOptions],
    ) -> None:
        super().__init__(patch_size, **kwargs)
        for name, value in (
            ("resample_positions", resample_positions),
            ("allow_overlap", allow_overlap),
            ("resample_per_epoch", resample_per_epoch),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        self.resample_positions = resample_positions
        self.allow_overlap = allow_overlap
        self.seed = check_seed(seed)
        self.per_epoch = resample_per_epoch
        self._draw = 0
        self._tile: tuple[int, ...] | None = None
        self._base: np.ndarray | None = None
        self._base_key: tuple | None = None

    @property
    def resample_per_epoch(self) -> bool:
        """Whether every epoch draws fresh patterns (the same as :attr:`per_epoch`)."""
        return self.per_epoch

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1]
            + f", resample_positions={self.resample_positions}, allow_overlap={self.allow_overlap}, "
            f"seed={self.seed}" + (", resample_per_epoch=True)" if self.per_epoch else ")")
        )

    # -- patterns --------------------------------------------------------

    def _tile_shape(self, geo: Geometry) -> np.ndarray:
        return chunk_tile_shape(np.maximum(geo.chunks, geo.patch), geo.stride)

    def _room(self, tile: np.ndarray, patch: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Top-left room per axis, the axes with room > 1, and the disk radius on them."""
        room = tile - patch + 1
        active = np.flatnonzero(room > 1)
        side = float(patch[active].max()) if len(active) else 1.0
        dims = sqrt(len(active))
        return room, active, side + dims if self.allow_overlap else side * dims

    def _pattern(self, tile: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Integer top-left offsets in ``[0, tile - patch]`` per axis, ``(k, D)``."""
        room, active, radius = self._room(tile, patch)
        if len(active) == 0:
            return np.zeros((1, len(tile)), np.int64)
        points = poisson_disk_positions(room[active].astype(float), radius, rng=rng)
        out = np.zeros((len(points), len(tile)), np.int64)
        out[:, active] = np.floor(points).astype(np.int64)
        return out

    def _tile_patterns(
        self, tile: np.ndarray, patch: np.ndarray, chunk_ids: np.ndarray, entropy: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A fresh pattern per chunk tile: offsets ``(k, D)`` and each offset's index in ``chunk_ids``."""
        room, active, radius = self._room(tile, patch)
        if len(active) == 0 or len(chunk_ids) == 0:
            return np.zeros((len(chunk_ids), len(tile)), np.int64), np.arange(len(chunk_ids))
        keys = stream_keys(entropy, chunk_ids)
        points, owner = poisson_disk_tiles(room[active].astype(float), radius, keys)
        out = np.zeros((len(points), len(tile)), np.int64)
        out[:, active] = np.floor(points).astype(np.int64)
        return out, owner

    def compute_sampling_positions(self, force: bool = False) -> None:
        """Compute (or reuse) the base pattern of the last planned tile shape.

        Parameters
        ----------
        force : bool
            Draw a new base pattern even if one exists (the next draw of the
            seed's sequence).

        Raises
        ------
        ZarrsampleError
            No collection has been planned yet, so the tile shape is unknown.
        """
        if self._tile is None:
            raise ZarrsampleError(
                "compute_sampling_positions needs the chunk tile shape: call compute_chunks, "
                "compute_patches or plan on a collection first"
            )
        if force:
            self._draw += 1
        self._base_pattern(np.asarray(self._tile), np.asarray(self._patch_for_tile))

    def _base_pattern(self, tile: np.ndarray, patch: np.ndarray) -> np.ndarray:
        key = (tuple(tile.tolist()), tuple(patch.tolist()), self._draw)
        if self._base_key != key:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self._draw]))
            self._base = self._pattern(tile, patch, rng)
            self._base_key = key
        return cast(np.ndarray, self._base)  # set above whenever _base_key is

    # -- planning --------------------------------------------------------

    def plan(self, collection: ImageCollection) -> PatchPlan:
        """All patches of ``collection``, chunk tile by chunk tile.

        With ``resample_per_epoch=True`` this is the plan of epoch 0 of
        stream 0, ``epoch_plan(collection, epoch=0, stream=0)``, and so is
        what :meth:`compute_chunks`, :meth:`compute_patches` and
        ``zarrsample plan`` show. Returns and raises as
        :meth:`PatchSampler.plan`.
        """
        if self.per_epoch:
            return self._epoch_plan(collection, 0, 0)
        return self._cached_plan(collection, self._cache_key(), self._plan, stacklevel=4)

    def epoch_plan(self, collection: ImageCollection, *, epoch: int, stream: int) -> PatchPlan:
        """The patches of ``collection`` in one epoch.

        Parameters
        ----------
        collection : ImageCollection
        epoch : int
            The epoch, ``>= 0``.
        stream : int
            The image's index among the images planned together (e.g. in a
            :class:`~zarrsample_core.PatchDataset`), ``>= 0``, so that two
            images of the same shape get different patterns.

        Returns
        -------
        PatchPlan
            As :meth:`plan`: sorted chunk-major, every patch inside its tile,
            no two overlapping (or centres a patch apart with
            ``allow_overlap``), every one passing the ``min_area`` test. Without
            ``resample_per_epoch`` it is :meth:`plan` for every epoch.

        Raises
        ------
        TypeError
            ``epoch`` or ``stream`` is not an int.
        ZarrsampleError
            ``epoch`` or ``stream`` is negative, or as :meth:`PatchSampler.plan`.

        Notes
        -----
        A tile's pattern is keyed by ``(seed, draw, epoch, stream, chunk
        id)`` (``draw`` counts ``compute_sampling_positions(force=True)``), so
        it is the same on every machine and in every process, whichever
        epochs and tiles were planned before. The cost is that of a
        ``resample_positions=True`` plan; the tiles the mask touches are found
        once per collection and reused by the following epochs. Only the last
        plan is kept: asking for another epoch or stream plans anew.

        Examples
        --------
        >>> import numpy as np
        >>> from zarrsample_core import BlueNoisePatchSampler, ImageCollection, open_image
        >>> coll = ImageCollection({"images": open_image(np.zeros((512, 512), np.uint8), axes="YX")},
        ...                        spatial_axes="YX")
        >>> sampler = BlueNoisePatchSampler(64, seed=0, spatial_axes="YX", resample_per_epoch=True)
        >>> first = sampler.epoch_plan(coll, epoch=0, stream=0).toplefts
        >>> second = sampler.epoch_plan(coll, epoch=1, stream=0).toplefts
        >>> bool(np.array_equal(first, sampler.plan(coll).toplefts)), np.array_equal(first, second)
        (True, False)
        """
        epoch = check_int(epoch, "epoch")
        stream = check_int(stream, "stream")
        if not self.per_epoch:
            return self._cached_plan(collection, self._cache_key(), self._plan, stacklevel=4)
        return self._epoch_plan(collection, epoch, stream)

    def _epoch_plan(self, collection: ImageCollection, epoch: int, stream: int) -> PatchPlan:
        make = partial(self._plan, epoch_stream=(epoch, stream))
        return self._cached_plan(collection, self._cache_key() + (epoch, stream), make, stacklevel=5)

    def _cache_key(self) -> tuple:
        return (self._draw,)

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_touched"] = None  # holds a weakref
        return state

    def _touched_tiles(
        self, collection: ImageCollection, reader: BlockReader, scales: tuple[AxisScale, ...],
        tile: np.ndarray, tile_grid: np.ndarray,
    ) -> np.ndarray:
        """Ids of the tiles the mask touches, kept for the next epochs of the same collection."""
        key = (tuple(tile.tolist()), tuple(tile_grid.tolist()))
        cached = self._touched
        if cached is not None and cached[0]() is collection and cached[1] == key:
            return cached[2]
        starts = [np.arange(g, dtype=np.int64) * t for g, t in zip(tile_grid, tile)]
        windows = [(s, s + t) for s, t in zip(starts, tile)]
        ids = np.flatnonzero((windows_coverage(reader, scales, windows) > 0).ravel())
        self._touched = (weakref.ref(collection), key, ids)
        return ids

    def _plan(
        self, collection: ImageCollection, geo: Geometry, epoch_stream: tuple[int, int] | None = None
    ) -> PatchPlan:
        tile = self._tile_shape(geo)
        self._tile, self._patch_for_tile = tuple(tile.tolist()), tuple(geo.patch.tolist())
        tile_grid = -(-geo.shape // tile)
        candidate_tiles = np.arange(int(np.prod(tile_grid)), dtype=np.int64)
        mask = collection.mask
        if mask is not None:
            reader, scales, threshold = self._mask_inputs(collection, geo)
            if threshold > 0:  # skip tiles the mask does not touch at all
                candidate_tiles = self._touched_tiles(collection, reader, scales, tile, tile_grid)
        tile_starts = np.stack(np.unravel_index(candidate_tiles, tuple(tile_grid)), -1) * tile
        if epoch_stream is not None or self.resample_positions:
            # Third word: 1 keys a pattern by tile, 2 by tile, epoch and stream.
            per = [1] if epoch_stream is None else [2, *epoch_stream]
            offsets, owner = self._tile_patterns(tile, geo.patch, candidate_tiles, [self.seed, self._draw, *per])
            chunk_ids = candidate_tiles[owner]
            toplefts = tile_starts[owner] + offsets
        else:
            base = self._base_pattern(tile, geo.patch)
            chunk_ids = np.repeat(candidate_tiles, len(base))
            toplefts = (tile_starts[:, None, :] + base[None, :, :]).reshape(-1, len(tile))
        limit = geo.shape if self.allow_incomplete_patches else geo.shape - geo.patch + 1
        inside = np.all(toplefts < limit, axis=1)
        toplefts, chunk_ids = toplefts[inside], chunk_ids[inside]
        if mask is None:
            stops = np.minimum(toplefts + geo.patch, geo.shape)
            cover = np.prod(stops - toplefts, axis=1)
        else:
            rows = toplefts[:, 0] // tile[0]
            numer = points_coverage(reader, scales, toplefts, geo.patch, rows)
            keep = numer >= threshold
            toplefts, chunk_ids = toplefts[keep], chunk_ids[keep]
            cover = numer[keep] / denominator(scales)
        # Chunk-major order; within a tile, C order of the top-left.
        order = np.lexsort(tuple(toplefts[:, k] for k in range(toplefts.shape[1] - 1, -1, -1)) + (chunk_ids,))
        return self._make_plan(geo, tile, toplefts[order], np.asarray(cover)[order])
