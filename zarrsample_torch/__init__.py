"""zarrsample for PyTorch: map-style and iterable datasets over a PatchDataset.

``import zarrsample_torch`` is cheap: torch is imported the first time one
of the classes is accessed, so that the core stays usable without torch.

Examples
--------
>>> import zarrsample_torch
>>> sorted(zarrsample_torch.__all__)
['PatchIterableDataset', 'PatchMapDataset']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zarrsample_core._lazy import lazy_exports

__all__ = ["PatchIterableDataset", "PatchMapDataset"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from ._datasets import PatchIterableDataset, PatchMapDataset


__getattr__, __dir__ = lazy_exports(
    __name__, __all__, implementation="._datasets", requires=["torch"], extra="torch"
)
