"""The plans of a dataset: planned by its sampler, given, or whole images; and their digest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import ZarrsampleError
from ..planning._plan import PatchPlan, check_plan_fits
from ..sources._collection import ImageCollection
from ._state import config_fingerprint

__all__ = ["dataset_plans", "plan_digest", "whole_image_plan"]


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
    """The fingerprint of a plan's geometry and patches (for a dataset's configuration fingerprint)."""
    return config_fingerprint(
        axes=plan.spatial_axes, image=plan.image_shape, patch=plan.patch_size, pad=plan.pad,
        tile=plan.tile_shape, toplefts=plan.toplefts, chunks=plan.chunk_ids,
    )


def dataset_plans(
    collections: Sequence[ImageCollection], sampler: Any, plans: Sequence[PatchPlan] | None
) -> list[PatchPlan]:
    """One plan per collection: ``plans`` checked against them, else planned by ``sampler``.

    ``sampler=None`` gives one patch per whole image.

    Raises
    ------
    TypeError
        ``sampler`` has no ``plan`` method.
    ZarrsampleError
        ``plans`` not one :class:`PatchPlan` per collection, or a plan that
        does not fit its collection (axes, extents, chunk tile).
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
