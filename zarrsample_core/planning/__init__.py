"""Planning: which patches exist, as a :class:`PatchPlan` of numpy arrays.

Chunk grids, exact mask coverage at any scale, Bridson Poisson-disk
positions, the zarrdataset-compatible samplers, random and class-balanced
crops drawn anew every epoch, plan files, and planning
many collections at once.

May import: ``sources`` and the shared leaves.
"""

from __future__ import annotations

from ._balanced_sampler import ClassBalancedPatchSampler
from ._bluenoise import poisson_disk_positions
from ._bluenoise_sampler import BlueNoisePatchSampler
from ._plan import PatchPlan
from ._planning import PlanningError, plan_collections
from ._random_sampler import RandomPatchSampler
from ._sampler import PatchSampler

__all__ = [
    "BlueNoisePatchSampler",
    "ClassBalancedPatchSampler",
    "PatchPlan",
    "PatchSampler",
    "PlanningError",
    "RandomPatchSampler",
    "plan_collections",
    "poisson_disk_positions",
]
