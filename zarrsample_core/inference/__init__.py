"""Inference: patch predictions stitched back into whole images, tissue masks.

The :class:`Stitcher` (blending, bounded memory, chunks written as they
complete) and :func:`tissue_mask`.

May import: ``sources``, ``planning``, ``reading``, ``epochs`` and the
shared leaves.
"""

from __future__ import annotations

from ._stitch import Stitcher
from ._tissue import tissue_mask

__all__ = ["Stitcher", "tissue_mask"]
