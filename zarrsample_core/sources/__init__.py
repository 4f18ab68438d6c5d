"""Sources: where pixels and metadata come from.

Opens a path, URL, zarr node or numpy array as an :class:`Image` (axes,
pyramid level, region of interest, OME-Zarr metadata, a handle re-opened in
every process) and groups modalities into an :class:`ImageCollection`.
Validates metadata before anything large is allocated.

May import: the shared leaves (``zarrsample_core._errors``, ``_checks``,
``_lazy``, ``_progress``) only; no other stage.
"""

from __future__ import annotations

from ._collection import ImageCollection
from ._image import Image
from ._io import open_image

__all__ = ["Image", "ImageCollection", "open_image"]
