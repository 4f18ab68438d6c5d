"""The plans of one epoch and their index arithmetic (fixed plans, or drawn anew per epoch)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ZarrsampleError
from .._progress import progress
from ..planning._plan import PatchPlan, check_plan_fits
from ..sources._collection import ImageCollection
from ._state import config_fingerprint

__all__ = ["EpochPlans", "EpochViews", "fixed_plans", "plan_digest", "whole_image_plan"]


def whole_image_plan(collection: ImageCollection) -> PatchPlan:
    """A plan with one patch: the whole reference image (``sampler=None``)."""
    shape = collection.spatial_shape
    d = len(shape)
    return PatchPlan(
        spatial_axes=collection.spatial_axes, image_shape=shape, patch_size=shape, stride=shape,
        pad=(0,) * d, tile_shape=shape, toplefts=np.zeros((1, d), np.int64),
        coverage=np.array([float(np.prod(shape))]),
    )


def plan_digest(plan: PatchPlan) -> int:
    """A fingerprint of everything in ``plan`` that the samples depend on."""
    return config_fingerprint(
        axes=plan.spatial_axes, image=plan.image_shape, patch=plan.patch_size, pad=plan.pad,
        tile=plan.tile_shape, toplefts=plan.toplefts, chunks=plan.chunk_ids,
    )


def fixed_plans(
    collections: Sequence[ImageCollection], sampler: Any, plans: Sequence[PatchPlan] | None
) -> list[PatchPlan]:
    """The plans of a dataset whose positions do not change between epochs.

    Raises
    ------
    TypeError
        ``sampler`` has no ``plan`` method.
    ZarrsampleError
        ``plans`` does not hold one fitting :class:`PatchPlan` per collection.
    """
    if plans is None:
        if sampler is None:
            return [whole_image_plan(c) for c in collections]
        if not hasattr(sampler, "plan"):
            raise TypeError(f"sampler must be a PatchSampler or None, got {sampler!r}")
        return [sampler.plan(c) for c in collections]
    plans = list(plans)
    if len(plans) != len(collections) or not all(isinstance(p, PatchPlan) for p in plans):
        raise ZarrsampleError(
            f"plans must hold one PatchPlan per collection ({len(collections)}), got {len(plans)}"
        )
    for i, (plan, coll) in enumerate(zip(plans, collections)):
        check_plan_fits(plan, coll, name=f"plans[{i}]")  # axes, extents, chunk tile
    return plans


@dataclass(frozen=True, eq=False)
class EpochPlans:
    """The plans of one epoch: dataset index ``i`` is a row of one image's plan.

    Attributes
    ----------
    epoch : int
        The epoch (every epoch, for fixed plans: -1).
    plans : tuple of PatchPlan
        One per collection.
    offsets : (k + 1,) int64
        First dataset index of each image, then the total.
    chunk_sizes : (G,) int64
        Patches per run of one chunk, over all images in plan order: the
        unit of locality of the epoch orders.
    """

    epoch: int
    plans: tuple[PatchPlan, ...]
    offsets: np.ndarray
    chunk_sizes: np.ndarray
    starts: tuple[int, ...]

    @classmethod
    def of(cls, plans: Sequence[PatchPlan], epoch: int = -1) -> EpochPlans:
        """Index arithmetic over ``plans``."""
        sizes = np.array([len(p) for p in plans], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        runs = [np.diff(np.flatnonzero(np.diff(p.chunk_ids, prepend=-1, append=-1))) for p in plans]
        chunk_sizes = np.concatenate(runs).astype(np.int64) if runs else np.zeros(0, np.int64)
        return cls(epoch, tuple(plans), offsets, chunk_sizes, tuple(offsets.tolist()))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def image_of(self, i: int) -> int:
        """The image (collection index) of dataset index ``i``."""
        return bisect.bisect_right(self.starts, i) - 1  # per sample: a list beats numpy on one int

    def window(self, i: int) -> tuple[int, PatchPlan, np.ndarray, np.ndarray]:
        """``(image, plan, start, stop)`` of dataset index ``i``, pad included."""
        k = self.image_of(i)
        plan = self.plans[k]
        topleft = plan.toplefts[i - self.starts[k]]
        pad = np.asarray(plan.pad, np.int64)
        return k, plan, topleft - pad, topleft + np.asarray(plan.patch_size, np.int64) + pad


class EpochViews:
    """The :class:`EpochPlans` of every epoch of a dataset: one for fixed plans, else planned on demand.

    A sampler whose positions change every epoch (``per_epoch``) is asked
    for ``epoch_plan(collection, epoch=e, stream=k)`` of each collection
    ``k``; the plans of the last two epochs asked for are kept.
    """

    def __init__(self, collections: Sequence[ImageCollection], sampler: Any, plans: Sequence[PatchPlan] | None):
        self.collections = list(collections)
        self.sampler = sampler
        #: Whether the positions change every epoch.
        self.per_epoch = plans is None and bool(getattr(sampler, "per_epoch", False))
        self._fixed = None if self.per_epoch else EpochPlans.of(fixed_plans(self.collections, sampler, plans))
        self._kept: dict[int, EpochPlans] = {}

    def __getitem__(self, epoch: int) -> EpochPlans:
        if self._fixed is not None:
            return self._fixed
        view = self._kept.get(epoch)
        if view is None:
            # The first epoch also finds each image's samplable positions: a bar on a terminal.
            first = not self._kept and len(self.collections) > 1
            images = progress(enumerate(self.collections), total=len(self.collections), unit="image",
                              desc=f"planning with {type(self.sampler).__name__}", quiet=not first)
            plans = [self.sampler.epoch_plan(c, epoch=epoch, stream=k) for k, c in images]
            view = EpochPlans.of(plans, epoch)
            self._kept = {e: v for e, v in self._kept.items() if e == epoch - 1}
            self._kept[epoch] = view
        return view

    def saved_epoch(self, state: Any, epoch: int | None) -> int:
        """The epoch a saved ``state`` belongs to (else ``epoch``, else 0), to count its patches."""
        saved = state.get("epoch") if isinstance(state, Mapping) else None
        return saved if isinstance(saved, int) and saved >= 0 else (epoch or 0)
