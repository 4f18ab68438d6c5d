"""Epochs: plans and reads put together into a dataset that can be iterated.

:class:`PatchDataset` (random access and epochs), seeded and sharded epoch
orders, resumable iterator state, and the per-sample array spec the
adapters build their framework types from.

May import: ``sources``, ``planning``, ``reading`` and the shared leaves.
"""

from __future__ import annotations

from ._dataset import PatchDataset
from ._epoch import EpochIterator
from ._spec import sample_spec

__all__ = ["EpochIterator", "PatchDataset", "sample_spec"]
