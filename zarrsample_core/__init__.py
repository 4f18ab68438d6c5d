"""zarrsample core: exact, fast patch planning over chunked images (numpy only)."""

from __future__ import annotations

from ._bluenoise import poisson_disk_positions
from ._bluenoise_sampler import BlueNoisePatchSampler
from ._collection import ImageCollection
from ._dataset import PatchDataset
from ._epoch import EpochIterator
from ._errors import ZarrsampleError
from ._faults import ChunkReadError
from ._image import Image
from ._io import open_image
from ._plan import PatchPlan
from ._planning import PlanningError, plan_collections
from ._reader import PatchReader
from ._sampler import PatchSampler
from ._spec import sample_spec
from ._stitch import Stitcher
from ._tissue import tissue_mask

__all__ = [
    "BlueNoisePatchSampler",
    "ChunkReadError",
    "EpochIterator",
    "Image",
    "ImageCollection",
    "PatchDataset",
    "PatchPlan",
    "PatchReader",
    "PatchSampler",
    "PlanningError",
    "Stitcher",
    "ZarrsampleError",
    "open_image",
    "plan_collections",
    "poisson_disk_positions",
    "sample_spec",
    "tissue_mask",
]
