"""ClassBalancedPatchSampler: random crops per epoch, balanced across the classes of a label image."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from math import isfinite
from numbers import Integral, Real
from typing import cast

import numpy as np

from .._errors import ZarrsampleError
from ..sources._collection import ImageCollection
from ._coverage import axis_scales, threshold_numerator
from ._random_sampler import RandomPatchSampler
from ._samplable import Criterion, SamplableSet, samplable_set
from ._sampler import Geometry
from ._summed_area import SummedArea, check_table_bytes, summed_area

__all__ = ["ClassBalancedPatchSampler"]


class ClassBalancedPatchSampler(RandomPatchSampler):
    """Random crops per epoch whose classes follow given ratios.

    Each crop first picks a class ``c`` with probability
    ``class_ratios[c]`` (renormalised over the classes present in the
    image), then a top-left uniformly among the integer positions whose
    window the label image covers with class ``c`` by at least
    ``min_class_area`` (and, with a mask, the mask by ``min_area``).

    Parameters
    ----------
    patch_size, num_patches
        As for :class:`RandomPatchSampler` (a float ``num_patches`` counts
        the samplable positions of the mask alone, or of the image).
    class_ratios : dict of int to float
        Relative frequency of each class (integer label values), e.g.
        ``{0: 0.2, 1: 0.4, 2: 0.4}``; values >= 0 with a positive sum, not
        necessarily summing to 1. Classes not listed are never targeted
        (they may still appear in crops).
    labels : str
        The label modality of the collection (default ``"labels"``): any
        scale, integer or bool values, one value per pixel.
    min_class_area : float
        How much of the window the target class must cover, with
        ``min_area``'s meaning: in [0, 1) a fraction of the patch area,
        ``>= 1`` image pixels (default 1: the class touches the window).
    pad, min_area, spatial_axes, allow_incomplete_patches, seed, max_plan_bytes
        As for :class:`RandomPatchSampler`; ``max_plan_bytes`` bounds each
        class's summed-area table (4 bytes per label pixel).

    Raises
    ------
    TypeError, ZarrsampleError
        A parameter of the wrong type or value; the message names it.

    Notes
    -----
    The classes of one epoch's crops are a multinomial draw with the
    renormalised ratios, from the same ``(seed, epoch, image)`` stream as
    the positions. Coverage is the exact area arithmetic of masks, per
    class. Per image, the label image is read once and one summed-area
    table and samplable set is kept per listed class (found on first use);
    a class whose set is empty is absent from that image.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ClassBalancedPatchSampler, ImageCollection, open_image
    >>> labels = np.zeros((16, 16), np.uint8); labels[:2, :2] = 1
    >>> coll = ImageCollection({
    ...     "images": open_image(np.zeros((256, 256), np.uint8), axes="YX"),
    ...     "labels": open_image(labels, axes="YX")}, spatial_axes="YX")
    >>> sampler = ClassBalancedPatchSampler(16, 1000, class_ratios={0: 0.5, 1: 0.5},
    ...                                     min_class_area=0.5, spatial_axes="YX", seed=0)
    >>> plan = sampler.epoch_plan(coll, epoch=0)
    >>> in_class_1 = (plan.toplefts < 32 - 8).all(axis=1)
    >>> 400 < int(in_class_1.sum()) < 600
    True
    """

    def __init__(
        self,
        patch_size: int | tuple[int, ...] | Mapping[str, int],
        num_patches: int | float,
        class_ratios: Mapping[int, float],
        labels: str = "labels",
        min_class_area: float = 1,
        pad: int | tuple[int, ...] | Mapping[str, int] | None = None,
        min_area: float = 1,
        spatial_axes: str = "ZYX",
        allow_incomplete_patches: bool = False,
        *,
        seed: int | None = None,
        max_plan_bytes: int | None = 2**31,
    ) -> None:
        super().__init__(
            patch_size, num_patches, pad=pad, min_area=min_area, spatial_axes=spatial_axes,
            allow_incomplete_patches=allow_incomplete_patches, seed=seed, max_plan_bytes=max_plan_bytes,
        )
        self.class_ratios: dict[int, float] = _check_ratios(class_ratios)
        if not isinstance(labels, str):
            raise TypeError(f"labels must be the name of a modality (a str), got {labels!r}")
        self.labels = labels
        if isinstance(min_class_area, bool) or not isinstance(min_class_area, Real):
            raise TypeError(f"min_class_area must be a number, got {min_class_area!r}")
        if not isfinite(min_class_area) or min_class_area < 0:
            raise ZarrsampleError(
                f"min_class_area must be a finite number >= 0 (a fraction in [0, 1) or a pixel count >= 1), "
                f"got {min_class_area!r}"
            )
        self.min_class_area: float = float(min_class_area)

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1]
            + f", class_ratios={self.class_ratios}, labels={self.labels!r}, min_class_area={self.min_class_area})"
        )

    def _prepare(self, collection: ImageCollection, geo: Geometry) -> tuple:
        if self.labels not in collection:
            raise ZarrsampleError(
                f"{type(self).__name__} needs the label modality {self.labels!r}, but the collection has "
                f"{list(collection)}; pass labels= with the name of the label image"
            )
        image = collection[self.labels]
        if np.dtype(image.dtype).kind not in "biu":
            raise ZarrsampleError(
                f"the label modality {self.labels!r} ({image.name}) must hold integer classes, got dtype {image.dtype}"
            )
        masked = self._mask_criterion(collection, geo)
        base = [] if masked is None else [masked[0]]
        extent = self._extent(geo)
        # The mask's own set is needed for a float num_patches only (or samplable()).
        everywhere = None if isinstance(self.num_patches, Integral) else samplable_set(extent, geo.patch, base)
        label_shape = collection.spatial_extent(self.labels, self.spatial_axes)
        scales = axis_scales(geo.shape.tolist(), label_shape)
        threshold = threshold_numerator(self.min_class_area, geo.patch.tolist(), scales)
        check_table_bytes(label_shape, self.max_plan_bytes, f"the label image {image.name}")  # before reading it
        read = collection.block_reader(self.labels, self.spatial_axes, purpose="the class labels")
        values = np.asarray(read(0, label_shape[0]))
        per_class: dict[int, SamplableSet] = {}
        for c in self.class_ratios:
            if self.class_ratios[c] == 0:
                continue
            table = _class_table(values, c, scales, self.max_plan_bytes, image.name)
            found = samplable_set(extent, geo.patch, base + [Criterion(table, threshold)])
            if found.total:
                per_class[c] = found
        del values
        return everywhere, None if masked is None else masked[1], per_class

    def classes(self, collection: ImageCollection) -> dict[int, float]:
        """The classes present in ``collection`` with their renormalised ratios."""
        per_class = self._prepared(collection, self.geometry(collection))[2]
        total = sum(self.class_ratios[c] for c in per_class)
        return {c: self.class_ratios[c] / total for c in per_class}

    def samplable(self, collection: ImageCollection) -> SamplableSet:
        """The top-lefts that pass the mask alone (what a float ``num_patches`` counts)."""
        geo = self.geometry(collection)
        found = self._prepared(collection, geo)
        if found[0] is None:  # not needed for an int num_patches: found on demand
            masked = self._mask_criterion(collection, geo)
            everywhere = samplable_set(self._extent(geo), geo.patch, [] if masked is None else [masked[0]])
            found = (everywhere, *found[1:])
            self._sets[id(collection)] = (weakref.ref(collection), found)
        return cast(SamplableSet, found[0])

    def count(self, collection: ImageCollection) -> int:
        """Crops per epoch on ``collection``: 0 when none of the classes is present."""
        return self._crops(collection, self.geometry(collection))

    def _crops(self, collection: ImageCollection, geo: Geometry) -> int:
        if not self._prepared(collection, geo)[2]:
            return 0
        if isinstance(self.num_patches, Integral):
            return int(self.num_patches)
        return self._count(self.samplable(collection), geo)

    def _draw(self, collection: ImageCollection, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
        per_class = self._prepared(collection, geo)[2]
        d = len(geo.shape)
        n = self._crops(collection, geo)
        if not n:
            return np.zeros((0, d), np.int64)
        classes = sorted(per_class)
        ratios = np.array([self.class_ratios[c] for c in classes], np.float64)
        counts = rng.multinomial(n, ratios / ratios.sum())
        parts = [per_class[c].draw(rng, int(k)) for c, k in zip(classes, counts)]
        return np.concatenate(parts) if parts else np.zeros((0, d), np.int64)


def _class_table(values: np.ndarray, c: int, scales: tuple, max_bytes: int | None, name: str) -> SummedArea:
    return summed_area(
        lambda lo, hi: values[lo:hi], scales, max_bytes=max_bytes, what=f"the label image {name}", equals=c,
    )


def _check_ratios(class_ratios: object) -> dict[int, float]:
    if not isinstance(class_ratios, Mapping) or not class_ratios:
        raise TypeError(f"class_ratios must be a non-empty dict {{class: ratio}}, got {class_ratios!r}")
    out: dict[int, float] = {}
    for c, r in class_ratios.items():
        if isinstance(c, bool) or not isinstance(c, Integral):
            raise TypeError(f"class_ratios keys must be int classes, got {c!r}")
        if isinstance(r, bool) or not isinstance(r, Real) or not isfinite(r) or r < 0:
            raise ZarrsampleError(f"class_ratios values must be finite numbers >= 0, got {r!r} for class {c}")
        out[int(c)] = float(r)
    if sum(out.values()) <= 0:
        raise ZarrsampleError(f"class_ratios must have a positive sum, got {class_ratios!r}")
    return dict(sorted(out.items()))
