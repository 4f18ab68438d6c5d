"""zarrsample for JAX: a Grain data source and MapDataset over a PatchDataset.

``import zarrsample_jax`` is cheap: jax and Grain are imported the first
time one of its names is accessed, so that the core stays usable without
them.

Examples
--------
>>> import zarrsample_jax
>>> zarrsample_jax.__all__
['EpochMapDataset', 'GrainSource', 'as_grain_dataset', 'to_jax']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zarrsample_core._lazy import lazy_exports

__all__ = ["EpochMapDataset", "GrainSource", "as_grain_dataset", "to_jax"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from ._grain import EpochMapDataset, GrainSource, as_grain_dataset, to_jax


__getattr__, __dir__ = lazy_exports(
    __name__, __all__, implementation="._grain", requires=["jax", "grain"], extra="jax"
)
