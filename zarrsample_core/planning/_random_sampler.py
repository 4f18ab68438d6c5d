"""RandomPatchSampler: fresh random crops every epoch, uniform over every samplable pixel position."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from math import isfinite, prod
from numbers import Integral, Real
from typing import cast

import numpy as np

from .._checks import check_int, check_seed
from .._errors import ZarrsampleError
from ..sources._collection import ImageCollection
from ._coverage import axis_scales, denominator, points_coverage, threshold_numerator
from ._grid import chunk_tile_shape
from ._plan import PatchPlan
from ._samplable import Criterion, SamplableSet, samplable_set
from ._sampler import Geometry, PatchSampler, _warn_if_no_patch_fits
from ._summed_area import SummedArea, TableCache, summed_area

__all__ = ["RandomPatchSampler", "epoch_generator"]

#: Tells the random crops' streams apart from other uses of the same seed.
_STREAM_TAG = 0x52414E44  # "RAND"


def epoch_generator(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one image's crops in one epoch: ``SeedSequence([seed, tag, epoch, stream])``."""
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAM_TAG, epoch, stream]))


class RandomPatchSampler(PatchSampler):
    """Random crops drawn anew every epoch, uniformly over every samplable top-left pixel.

    Parameters
    ----------
    patch_size : int, sequence of int or dict
        As for :class:`PatchSampler`.
    num_patches : int or float
        Crops per image per epoch: an int, or a float ``f`` for
        ``round(f * A / prod(patch_size))`` where ``A`` is the number of
        samplable top-lefts of the image (``f = 1``: about as many crops as
        non-overlapping patches fit in the samplable area).
    pad, min_area, spatial_axes, allow_incomplete_patches, max_plan_bytes
        As for :class:`PatchSampler`; ``max_plan_bytes`` also bounds the
        mask's summed-area table (4 bytes per mask pixel).
    seed : int or None
        Seed of the crops; None draws one from the operating system once.

    Raises
    ------
    TypeError, ZarrsampleError
        A parameter of the wrong type or value; the message names it.

    Notes
    -----
    Epoch ``e`` of image ``s`` (its index in a :class:`PatchDataset`) draws
    its crops from ``SeedSequence([seed, tag, e, s])``: independent and
    uniform over the *exact* set of integer top-lefts whose window the mask
    covers by ``min_area`` (the grid sampler's arithmetic, at every pixel
    position, for masks at any scale). That set is found once per image and
    kept (:func:`._samplable.samplable_set`, over the mask's summed-area
    table); an epoch's plan then costs ``O(num_patches log)``. The crops of
    an epoch come chunk tile by chunk tile (the storage chunk), so
    ``draw_same_chunk`` and ``shuffle_window`` keep reads local. Crops may
    repeat (independent draws).

    Memory per image: the samplable set (boxes and leaves, a few MB for a
    65536^2 slide), kept while the collection lives and pickled with it
    (spawned workers do not search again); the mask's summed-area table
    (4 bytes per mask pixel) only for the most recent images, up to 256
    MiB in all; without it a plan's coverage values are read from the mask.

    :meth:`plan` gives epoch 0 of stream 0 (what the CLI previews and the
    seed-compatible methods show); :class:`PatchDataset` asks
    :meth:`epoch_plan` for each epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, RandomPatchSampler, open_image
    >>> mask = np.zeros((8, 8), bool); mask[:4, :4] = True
    >>> coll = ImageCollection({
    ...     "images": open_image(np.zeros((256, 256), np.uint8), axes="YX"),
    ...     "masks": open_image(mask, axes="YX")}, spatial_axes="YX")
    >>> sampler = RandomPatchSampler(32, num_patches=100, min_area=0.9, spatial_axes="YX", seed=0)
    >>> plan0 = sampler.epoch_plan(coll, epoch=0, stream=0)
    >>> plan1 = sampler.epoch_plan(coll, epoch=1, stream=0)
    >>> len(plan0), bool((plan0.toplefts < 128).all()), bool((plan0.toplefts != plan1.toplefts).any())
    (100, True, True)
    """

    #: Positions change every epoch: :class:`PatchDataset` calls :meth:`epoch_plan`.
    per_epoch = True

    def __init__(
        self,
        patch_size: int | tuple[int, ...] | Mapping[str, int],
        num_patches: int | float,
        pad: int | tuple[int, ...] | Mapping[str, int] | None = None,
        min_area: float = 1,
        spatial_axes: str = "ZYX",
        allow_incomplete_patches: bool = False,
        *,
        seed: int | None = None,
        max_plan_bytes: int | None = 2**31,
    ) -> None:
        super().__init__(
            patch_size, stride=1, pad=pad, min_area=min_area, spatial_axes=spatial_axes,
            allow_incomplete_patches=allow_incomplete_patches, max_plan_bytes=max_plan_bytes,
        )
        self.num_patches: int | float = check_num_patches(num_patches)
        self.seed: int = check_seed(seed)
        self._sets: dict[int, tuple[weakref.ref, tuple]] = {}
        self._tables = TableCache()

    def __getstate__(self) -> dict[str, object]:
        # The samplable sets travel with their collections (a dataset pickles both, so
        # they arrive as the same objects): spawned workers need not find them again.
        state = super().__getstate__()
        state["_sets"] = [(coll, found) for ref, found in self._sets.values() if (coll := ref()) is not None]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        kept = cast(list, state.pop("_sets", []))
        self.__dict__.update(state)
        self._sets = {id(coll): (weakref.ref(coll), found) for coll, found in kept}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self._patch_size}, num_patches={self.num_patches!r}, "
            f"pad={self._pad}, min_area={self.min_area}, spatial_axes={self.spatial_axes!r}, "
            f"allow_incomplete_patches={self.allow_incomplete_patches}, seed={self.seed})"
        )

    # -- the samplable set, once per collection ------------------------------

    def _prepared(self, collection: ImageCollection, geo: Geometry) -> tuple:
        """What :meth:`_prepare` found for ``collection`` (kept while it lives)."""
        key = id(collection)
        entry = self._sets.get(key)
        if entry is not None and entry[0]() is collection:
            return entry[1]
        for k in [k for k, (ref, _) in self._sets.items() if ref() is None]:
            del self._sets[k]
        found = self._prepare(collection, geo)
        if found[1] is not None:  # the mask's table: kept apart, within a memory budget
            self._tables.put(collection, found[1])
            found = (found[0], True, *found[2:])
        self._sets[key] = (weakref.ref(collection), found)
        return found

    def _mask_criterion(self, collection: ImageCollection, geo: Geometry) -> tuple[Criterion, SummedArea] | None:
        if collection.mask is None:
            return None
        mask_name = cast(str, collection.mask_name)
        scales = axis_scales(geo.shape.tolist(), collection.spatial_extent(mask_name, self.spatial_axes))
        table = summed_area(
            collection.mask_reader(self.spatial_axes), scales, max_bytes=self.max_plan_bytes,
            what=f"the mask {collection[mask_name].name}",
        )
        return Criterion(table, threshold_numerator(self.min_area, geo.patch.tolist(), scales)), table

    def _prepare(self, collection: ImageCollection, geo: Geometry) -> tuple:
        masked = self._mask_criterion(collection, geo)
        criteria = [] if masked is None else [masked[0]]
        found = samplable_set(self._extent(geo), geo.patch, criteria)
        return found, None if masked is None else masked[1]

    def _coverage(self, collection: ImageCollection, geo: Geometry, toplefts: np.ndarray) -> np.ndarray:
        """Exact mask coverage of the windows at ``toplefts`` (their area inside the image without a mask)."""
        if not self._prepared(collection, geo)[1]:
            return np.prod(np.minimum(toplefts + geo.patch, geo.shape) - toplefts, axis=1).astype(np.float64)
        table = self._tables.get(collection)
        if table is not None:
            return table.coverage(toplefts, toplefts + geo.patch).astype(np.float64) / table.denominator
        # The table was dropped (memory budget, or another process): read the mask.
        scales = axis_scales(geo.shape.tolist(), collection.spatial_extent(cast(str, collection.mask_name),
                                                                           self.spatial_axes))
        rows = toplefts[:, 0] // max(1, int(geo.chunks[0]))
        numer = points_coverage(collection.mask_reader(self.spatial_axes), scales, toplefts, geo.patch, rows)
        return numer.astype(np.float64) / denominator(scales)

    def _extent(self, geo: Geometry) -> np.ndarray:
        """Valid top-lefts per axis: ``0 .. extent - 1``."""
        if self.allow_incomplete_patches:
            return geo.shape.copy()
        return np.maximum(geo.shape - geo.patch + 1, 0)

    def samplable(self, collection: ImageCollection) -> SamplableSet:
        """The exact set of top-lefts this sampler draws from on ``collection``."""
        return cast(SamplableSet, self._prepared(collection, self.geometry(collection))[0])

    # -- plans -----------------------------------------------------------------

    def count(self, collection: ImageCollection) -> int:
        """Crops per epoch on ``collection`` (``num_patches`` resolved)."""
        return self._count(self.samplable(collection), self.geometry(collection))

    def _count(self, found: SamplableSet, geo: Geometry) -> int:
        if found.total == 0:
            return 0
        if isinstance(self.num_patches, Integral):
            return int(self.num_patches)
        return max(1, round(self.num_patches * found.total / prod(geo.patch.tolist())))

    def plan(self, collection: ImageCollection) -> PatchPlan:
        """The crops of epoch 0 of stream 0 (see :meth:`epoch_plan`)."""
        return self.epoch_plan(collection, epoch=0, stream=0)

    def epoch_plan(self, collection: ImageCollection, *, epoch: int, stream: int = 0) -> PatchPlan:
        """The crops of one epoch of one image, chunk tile by chunk tile.

        Parameters
        ----------
        collection : ImageCollection
        epoch : int >= 0
        stream : int >= 0
            Which image of a dataset (its index), so that images draw apart.

        Returns
        -------
        PatchPlan
            ``count(collection)`` top-lefts, with their mask coverage.

        Raises
        ------
        ZarrsampleError
            A negative ``epoch`` or ``stream``; the mask's summed-area table
            beyond ``max_plan_bytes``.
        """
        epoch, stream = check_int(epoch, "epoch"), check_int(stream, "stream")
        geo = self.geometry(collection)
        if not self.allow_incomplete_patches:
            _warn_if_no_patch_fits(collection, geo, self.spatial_axes, stacklevel=3)
        rng = epoch_generator(self.seed, epoch, stream)
        toplefts = self._draw(collection, geo, rng)
        return self._sorted_plan(collection, geo, toplefts)

    def _draw(self, collection: ImageCollection, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
        found = self._prepared(collection, geo)[0]
        return found.draw(rng, self._count(found, geo))

    def _sorted_plan(self, collection: ImageCollection, geo: Geometry, toplefts: np.ndarray) -> PatchPlan:
        tile = chunk_tile_shape(geo.chunks, geo.stride)
        grid = -(-geo.shape // tile)
        ids = np.ravel_multi_index(tuple((toplefts // tile).T), tuple(grid.tolist())) if len(toplefts) else None
        if ids is not None:
            toplefts = toplefts[np.lexsort(tuple(toplefts.T[::-1]) + (ids,))]
        return self._make_plan(geo, tile, toplefts, self._coverage(collection, geo, toplefts))


def check_num_patches(num_patches: object) -> int | float:
    """``num_patches`` as an int >= 1 or a finite float > 0."""
    if isinstance(num_patches, bool) or not isinstance(num_patches, Real):
        raise TypeError(f"num_patches must be an int or a float, got {num_patches!r}")
    if isinstance(num_patches, Integral):
        if num_patches < 1:
            raise ZarrsampleError(f"num_patches must be >= 1 when an int, got {num_patches}")
        return int(num_patches)
    value = float(num_patches)
    if not isfinite(value) or value <= 0:
        raise ZarrsampleError(
            f"num_patches must be a finite float > 0 (crops per patch area of samplable positions), "
            f"got {num_patches!r}"
        )
    return value
