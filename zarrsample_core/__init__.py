"""zarrsample core: exact, fast patch planning over chunked images (numpy only).

The package is laid out by pipeline stage: ``sources`` -> ``planning``,
``reading`` -> ``epochs`` -> ``inference``, with ``cli`` on top (see
ARCHITECTURE.md). This module only re-exports the public names.
"""

from __future__ import annotations

from . import _moved
from ._errors import ZarrsampleError, ZarrsampleWarning
from ._version import package_version
from .epochs import EpochIterator, PatchDataset, sample_spec
from .inference import Stitcher, tissue_mask
from .planning import (
    BlueNoisePatchSampler,
    ClassBalancedPatchSampler,
    PatchPlan,
    PatchSampler,
    PlanningError,
    RandomPatchSampler,
    plan_collections,
    poisson_disk_positions,
)
from .reading import ChunkReadError, PatchReader
from .sources import Image, ImageCollection, open_image

_moved.install()

__version__: str = package_version()

__all__ = [
    "BlueNoisePatchSampler",
    "ChunkReadError",
    "ClassBalancedPatchSampler",
    "EpochIterator",
    "Image",
    "ImageCollection",
    "PatchDataset",
    "PatchPlan",
    "PatchReader",
    "PatchSampler",
    "PlanningError",
    "RandomPatchSampler",
    "Stitcher",
    "ZarrsampleError",
    "ZarrsampleWarning",
    "open_image",
    "plan_collections",
    "poisson_disk_positions",
    "sample_spec",
    "tissue_mask",
]
