"""zarrsample core: exact, fast patch planning over chunked images (numpy only)."""

from __future__ import annotations

from ._collection import ImageCollection
from ._errors import ZarrsampleError
from ._io import Image, open_image
from ._plan import PatchPlan
from ._sampler import PatchSampler

__all__ = [
    "Image",
    "ImageCollection",
    "PatchPlan",
    "PatchSampler",
    "ZarrsampleError",
    "open_image",
]
