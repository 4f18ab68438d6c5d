"""Inference: patch predictions stitched back into whole images, tissue masks.

The :class:`Stitcher` (blending, bounded memory, chunks written as they
complete; OME-Zarr pyramids placed like the source, or a label of an
existing OME-Zarr image) and :func:`tissue_mask`.

May import: ``sources``, ``planning``, ``reading``, ``epochs`` and the
shared leaves.
"""

from __future__ import annotations

from ._stitch import Stitcher
from ._tissue import tissue_mask

__all__ = ["Stitcher", "tissue_mask"]
