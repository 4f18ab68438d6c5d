"""PatchSampler: a masked grid of patches, planned as numpy arrays."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from math import isfinite
from numbers import Real
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

from .._errors import Hint, ZarrsampleError, ZarrsampleWarning, spelled
from ..sources._axes import check_axes, per_axis
from ..sources._collection import BlockReader, ImageCollection
from ._budget import check_max_bytes, check_plan_budget
from ._coverage import (
    AxisScale,
    axis_scales,
    coverage_blocks,
    denominator,
    threshold_numerator,
)
from ._grid import (
    chunk_major_positions,
    chunk_tile_shape,
    fill_positions,
    grid_counts,
    grid_windows,
    tile_row_bounds,
)
from ._plan import PatchPlan

__all__ = ["Geometry", "PatchSampler"]

#: Grid positions planned at once, in whole chunk-tile rows (bounds the working memory).
BLOCK_POSITIONS = 1 << 18


@dataclass(frozen=True)
class Geometry:
    """Effective per-axis sizes of a sampler on one collection, ``(D,)`` int64 each."""

    shape: np.ndarray
    patch: np.ndarray
    stride: np.ndarray
    pad: np.ndarray
    chunks: np.ndarray


class PatchSampler:
    """Patches on a regular grid, kept where a mask covers enough of them.

    Parameters
    ----------
    patch_size : int, sequence of int or dict
        Patch size in pixels: one int for every axis, one value per axis of
        ``spatial_axes`` (in that order), or ``{axis: size}`` (absent axes 1).
    stride : int, sequence of int, dict or None
        Step between grid positions; None means ``patch_size``. A stride
        below the patch size gives overlapping patches.
    pad : int, sequence of int, dict or None
        Pixels added on both sides of each returned patch slice (context);
        the pad plays no part in mask coverage.
    min_area : float
        In [0, 1): the fraction of the full patch area the mask must cover;
        ``>= 1``: the number of image pixels it must cover. ``0`` makes every
        grid position samplable. The default 1 keeps every patch that the
        mask touches by at least one image pixel (``zarrsample plan
        --min-area`` has the same default). A mask pixel covers its
        footprint where it is non-zero, whatever its dtype (see
        :class:`ImageCollection`).
    spatial_axes : str
        Axes patches are taken along; axes absent from (or of size 1 in) an
        image get patch size 1, stride 1 and pad 0.
    allow_incomplete_patches : bool
        Also yield border patches that stick out of the image (every grid
        position that starts inside the image). Without it, a patch larger
        than the image on some axis gives an empty plan, with a
        :class:`~zarrsample_core.ZarrsampleWarning` that says so.
    max_plan_bytes : int or None
        Memory budget of :meth:`plan` (default 2 GiB): a grid whose plan
        would need more is refused before anything is allocated, with the
        estimate in the message. None: no limit.

    Attributes
    ----------
    per_epoch : bool
        False: every epoch has the patches of :meth:`plan`. True (a sampler
        with ``epoch_plan(collection, *, epoch, stream)``): they change.

    Raises
    ------
    TypeError, ZarrsampleError
        A parameter of the wrong type or value; the message names it.

    Notes
    -----
    Planning costs one pass over the mask pixels plus the grid, block by
    block of whole chunk-tile rows (about ``BLOCK_POSITIONS`` grid positions
    each), with the mask read in strips of bounded size (see
    :func:`zarrsample_core.planning._coverage.coverage_blocks`). Each block's patches
    come out in chunk-tile order (no sort) and go straight into the plan's
    arrays, so the peak memory is the plan plus one block's working set.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchSampler, open_image
    >>> mask = np.zeros((4, 4), bool); mask[:2, :2] = True
    >>> coll = ImageCollection({
    ...     "images": open_image(np.zeros((64, 64), np.uint8), axes="YX"),
    ...     "masks": open_image(mask, axes="YX")}, spatial_axes="YX")
    >>> sampler = PatchSampler(16, min_area=0.5, spatial_axes="YX")
    >>> [(p["Y"].start, p["X"].start) for p in sampler.compute_patches(coll, {"Y": slice(None), "X": slice(None)})]
    [(0, 0), (0, 16), (16, 0), (16, 16)]
    """

    per_epoch: bool = False

    def __init__(
        self,
        patch_size: int | tuple[int, ...] | Mapping[str, int],
        stride: int | tuple[int, ...] | Mapping[str, int] | None = None,
        pad: int | tuple[int, ...] | Mapping[str, int] | None = None,
        min_area: float = 1,
        spatial_axes: str = "ZYX",
        allow_incomplete_patches: bool = False,
        *,
        max_plan_bytes: int | None = 2**31,
    ) -> None:
        self.spatial_axes: str = check_axes(spatial_axes, name="spatial_axes")
        self.max_plan_bytes: int | None = check_max_bytes(max_plan_bytes)
        axes = self.spatial_axes
        self._patch_size = per_axis(patch_size, name="patch_size", spatial_axes=axes)
        self._stride = (
            dict(self._patch_size)
            if stride is None
            else per_axis(stride, name="stride", spatial_axes=axes)
        )
        self._pad = per_axis(pad, name="pad", spatial_axes=axes, default=0, minimum=0)
        if isinstance(min_area, bool) or not isinstance(min_area, Real):
            raise TypeError(f"min_area must be a number, got {min_area!r}")
        if not isfinite(min_area) or min_area < 0:
            raise ZarrsampleError(
                f"min_area must be a finite number >= 0 (a fraction in [0, 1) or a pixel "
                f"count >= 1), got {min_area!r}"
            )
        if not isinstance(allow_incomplete_patches, bool):
            raise TypeError(f"allow_incomplete_patches must be a bool, got {allow_incomplete_patches!r}")
        self.min_area: float = min_area
        self.allow_incomplete_patches: bool = allow_incomplete_patches
        self._cache: tuple[weakref.ref, tuple, PatchPlan] | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_cache"] = None  # a weakref to the last collection does not pickle
        return state

    @property
    def patch_size(self) -> dict[str, int]:
        """Patch size per spatial axis."""
        return dict(self._patch_size)

    @property
    def stride(self) -> dict[str, int]:
        """Grid step per spatial axis."""
        return dict(self._stride)

    @property
    def pad(self) -> dict[str, int]:
        """Context pad per spatial axis."""
        return dict(self._pad)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self._patch_size}, stride={self._stride}, "
            f"pad={self._pad}, min_area={self.min_area}, spatial_axes={self.spatial_axes!r}, "
            f"allow_incomplete_patches={self.allow_incomplete_patches})"
        )

    # -- geometry ---------------------------------------------------------

    def geometry(self, collection: ImageCollection) -> Geometry:
        """Effective sizes on ``collection`` (axes of extent 1 get 1, 1, 0)."""
        if not isinstance(collection, ImageCollection):
            raise TypeError(f"collection must be an ImageCollection, got {type(collection).__name__}")
        axes = self.spatial_axes
        shape = np.asarray(collection.spatial_extent(collection.reference_name, axes), np.int64)
        flat = shape == 1
        pick = lambda d, one: np.where(flat, one, np.array([d[a] for a in axes], np.int64))  # noqa: E731
        return Geometry(
            shape=shape,
            patch=pick(self._patch_size, 1),
            stride=pick(self._stride, 1),
            pad=pick(self._pad, 0),
            chunks=np.asarray(collection.spatial_chunks(axes), np.int64),
        )

    def _tile_shape(self, geo: Geometry) -> np.ndarray:
        return chunk_tile_shape(geo.chunks, geo.stride)

    def _mask_inputs(
        self, collection: ImageCollection, geo: Geometry
    ) -> tuple[BlockReader, tuple[AxisScale, ...], int]:
        # Called only when collection.mask is not None, i.e. mask_name is a str.
        mask_shape = collection.spatial_extent(cast(str, collection.mask_name), self.spatial_axes)
        scales = axis_scales(geo.shape.tolist(), mask_shape)
        threshold = threshold_numerator(self.min_area, geo.patch.tolist(), scales)
        return collection.mask_reader(self.spatial_axes), scales, threshold

    # -- fast path -----------------------------------------------------------

    def plan(self, collection: ImageCollection) -> PatchPlan:
        """All samplable patches of ``collection``, chunk tile by chunk tile.

        Returns
        -------
        PatchPlan
            Top-lefts ``(n, D)`` int64 in reference-image pixels, chunk ids
            and mask coverage.

        Raises
        ------
        ZarrsampleError
            Planning would allocate more than ``max_plan_bytes`` (estimated
            from the grid size before anything is allocated, see
            :func:`._budget.plan_bytes`).

        Notes
        -----
        Time is linear in the mask pixels read plus the grid positions.
        Memory: the plan's arrays are reserved for every grid position, but
        only the pages holding samplable patches are ever written (they are
        cut to size in place at the end); besides them, one block of about
        ``BLOCK_POSITIONS`` positions and one mask strip are alive at a time.
        """
        return self._cached_plan(collection, self._cache_key(), self._plan, stacklevel=4)

    def _cached_plan(
        self, collection: ImageCollection, key: tuple,
        make: Callable[[ImageCollection, Geometry], PatchPlan], *, stacklevel: int,
    ) -> PatchPlan:
        """``make(collection, geometry)``, checked, cached per collection and ``key``; warns at ``stacklevel``."""
        cached = self._cache
        if cached is not None and cached[0]() is collection and cached[1] == key:
            return cached[2]
        geo = self.geometry(collection)
        if not self.allow_incomplete_patches:
            _warn_if_no_patch_fits(collection, geo, self.spatial_axes, stacklevel=stacklevel)
        counts = grid_counts(geo.shape, geo.patch, geo.stride, incomplete=self.allow_incomplete_patches)
        check_plan_budget(
            counts.tolist(), masked=collection.mask is not None, max_bytes=self.max_plan_bytes,
            where=f"{collection[collection.reference_name].name}",
        )
        plan = make(collection, geo)
        self._cache = (weakref.ref(collection), key, plan)
        return plan

    def _cache_key(self) -> tuple:
        """What besides the collection a cached plan depends on."""
        return ()

    def _plan(self, collection: ImageCollection, geo: Geometry) -> PatchPlan:
        counts = grid_counts(geo.shape, geo.patch, geo.stride, incomplete=self.allow_incomplete_patches)
        windows = [grid_windows(int(c), int(p), int(s)) for c, p, s in zip(counts, geo.patch, geo.stride)]
        tile = self._tile_shape(geo)
        per_tile = (tile // geo.stride).tolist()
        if all(c <= p for c, p in zip(counts[1:].tolist(), per_tile[1:])):
            per_tile[0] = 1  # one tile across: chunk-major is C order, blocks may split tile rows
        bounds = tile_row_bounds(counts.tolist(), per_tile, max_positions=BLOCK_POSITIONS)
        if collection.mask is None:
            rest = tuple(counts[1:].tolist())
            lengths = [np.minimum(stop, n) - start for (start, stop), n in zip(windows, geo.shape)]
            blocks: Iterator[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]] = (
                (chunk_major_positions(np.ones((b - a,) + rest, dtype=bool), per_tile),
                 lambda grid: np.prod([length[grid[:, k]] for k, length in enumerate(lengths)], axis=0))
                for a, b in pairwise(bounds)
            )
        else:
            reader, scales, threshold = self._mask_inputs(collection, geo)
            denom = denominator(scales)

            def masked(numer: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
                idx = chunk_major_positions(numer >= threshold, per_tile)
                kept = numer[tuple(idx.T)]
                return idx, lambda _: kept / denom

            blocks = (masked(numer) for numer in coverage_blocks(reader, scales, windows, bounds))
        toplefts, cover = fill_positions(blocks, bounds, geo.stride, int(np.prod(counts)))
        return self._make_plan(geo, tile, toplefts, cover)

    def _make_plan(
        self,
        geo: Geometry,
        tile: np.ndarray,
        toplefts: np.ndarray,
        coverage: ArrayLike,
    ) -> PatchPlan:
        return PatchPlan(
            spatial_axes=self.spatial_axes,
            image_shape=tuple(geo.shape.tolist()),
            patch_size=tuple(geo.patch.tolist()),
            stride=tuple(geo.stride.tolist()),
            pad=tuple(geo.pad.tolist()),
            tile_shape=tuple(tile.tolist()),
            toplefts=toplefts,
            coverage=np.asarray(coverage, dtype=np.float64),
        )

    # -- seed-compatible surface --------------------------------------------

    def compute_chunks(self, collection: ImageCollection) -> list[dict[str, slice]]:
        """The chunk tiles holding at least one samplable patch top-left.

        A tile is the reference storage chunk rounded up to a multiple of the
        stride, per spatial axis; slices are clipped to the image.
        """
        return self.plan(collection).chunk_slices()

    def compute_patches(
        self, collection: ImageCollection, chunk_tlbr: Mapping[str, slice]
    ) -> list[dict[str, slice]]:
        """The samplable patches whose top-left lies in ``chunk_tlbr``.

        Parameters
        ----------
        collection : ImageCollection
        chunk_tlbr : dict of str to slice
            A region of the reference image, usually one item of
            :meth:`compute_chunks` (absent axes mean the whole axis).

        Returns
        -------
        list of dict
            ``{axis: slice}`` per patch, pad included on both sides. The union
            over :meth:`compute_chunks` is every samplable patch, each once.
        """
        if not isinstance(chunk_tlbr, Mapping) or not all(
            isinstance(s, slice) for s in chunk_tlbr.values()
        ):
            raise TypeError(f"chunk_tlbr must be a dict {{axis: slice}}, got {chunk_tlbr!r}")
        plan = self.plan(collection)
        chunk_id = _exact_tile(plan, chunk_tlbr)
        rows = plan.patches_in_chunk(chunk_id) if chunk_id is not None else plan.rows_in_box(chunk_tlbr)
        return plan.patch_slices(rows)


def _warn_if_no_patch_fits(collection: ImageCollection, geo: Geometry, axes: str, *, stacklevel: int) -> None:
    """Warn that the plan is empty because the patch is larger than the image on some axis."""
    larger = [(a, int(p), int(n)) for a, p, n in zip(axes, geo.patch, geo.shape) if p > n]
    if not larger:
        return
    reference = collection.reference
    odd = [a for a, _, _ in larger if a not in "ZYX"]
    usual = "".join(a for a in reference.axes if a in "ZYX")
    hints: list[Hint] = [("allow_incomplete_patches", True)]
    note = ""
    if odd and usual:
        verb = "is" if len(odd) == 1 else "are"
        note = f"; {' and '.join(odd)} {verb} not a spatial axis: {spelled('spatial_axes', usual)}?"
        hints.append(("spatial_axes", usual))
    sizes = ", ".join(f"{p} > {n} along {a}" for a, p, n in larger)
    warnings.warn(ZarrsampleWarning(
        f"the patch is larger than the image {reference.name} (axes {reference.axes!r}): {sizes}, so no "
        f"patch fits and the plan is empty; {spelled('allow_incomplete_patches', True)} keeps the patches "
        f"that cross the border (padded){note}", hints=hints,
    ), stacklevel=stacklevel)


def _exact_tile(plan: PatchPlan, box: Mapping[str, slice]) -> int | None:
    """The chunk id when ``box`` is exactly one of the plan's tiles, else None."""
    idx = []
    for ax, n, t in zip(plan.spatial_axes, plan.image_shape, plan.tile_shape):
        s = box.get(ax, slice(None))
        start = 0 if s.start is None else s.start
        stop = n if s.stop is None else s.stop
        if start % t or start < 0 or start >= n or stop != min(start + t, n):
            return None
        idx.append(start // t)
    return int(np.ravel_multi_index(idx, plan.tile_grid))
