"""Planning: which patches exist, as a :class:`PatchPlan` of numpy arrays.

Chunk grids, exact mask coverage at any scale, Bridson Poisson-disk
positions, the zarrdataset-compatible samplers, plan files, and planning
many collections at once.

May import: ``sources`` and the shared leaves.
"""

from __future__ import annotations

from ._bluenoise import poisson_disk_positions
from ._bluenoise_sampler import BlueNoisePatchSampler
from ._plan import PatchPlan
from ._planning import PlanningError, plan_collections
from ._sampler import PatchSampler

__all__ = [
    "BlueNoisePatchSampler",
    "PatchPlan",
    "PatchSampler",
    "PlanningError",
    "plan_collections",
    "poisson_disk_positions",
]
