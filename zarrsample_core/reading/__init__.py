"""Reading: pixels of patch windows, every modality aligned and padded.

The chunk cache, runs of chunk reads, padding at borders, the
:class:`PatchReader`, and faults (retries, skips, :class:`ChunkReadError`).

May import: ``sources`` and the shared leaves (not ``planning``: a reader
takes windows, not plans).
"""

from __future__ import annotations

from ._faults import ChunkReadError
from ._reader import PatchReader

__all__ = ["ChunkReadError", "PatchReader"]
