"""Reading the samples of a PatchDataset: one by index, or many as a batch, in any epoch's plans."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..planning._plan import PatchPlan
from ..reading._chunk_reads import ChunkRequest
from ..reading._context import window_positions
from ..reading._faults import SkipLog
from ..reading._reader import PatchReader
from ..sources._collection import ImageCollection
from ._batch import batch_indices, read_batch
from ._views import EpochPlans

__all__ = ["SampleAccess"]

Sample = dict[str, Any]


class SampleAccess:
    """The reads of :class:`~zarrsample_core.PatchDataset` (a base class that holds no state).

    Dataset index ``i`` is a row of one image's plan in an epoch's
    :class:`._views.EpochPlans` (``view``; default: the dataset's current
    epoch).
    """

    collections: list[ImageCollection]
    reader: PatchReader
    return_positions: bool
    transform: Callable[[Sample], Any] | None
    on_error: str
    _skip: SkipLog
    _view: EpochPlans

    def __len__(self) -> int:
        return len(self._view)

    def _window(self, i: int, view: EpochPlans | None = None) -> tuple[int, PatchPlan, np.ndarray, np.ndarray]:
        return (view or self._view).window(i)

    def _sample(self, i: int, view: EpochPlans | None = None) -> Any:
        view = view or self._view
        if self.on_error == "skip":
            return self._skip.sample(i, len(view), partial(self._read_sample, view=view), view.image_of)
        return self._read_sample(i, view)

    def _image_of(self, i: int, view: EpochPlans | None = None) -> int:
        return (view or self._view).image_of(i)

    def _read_sample(self, i: int, view: EpochPlans | None = None) -> Any:
        k, plan, start, stop = self._window(i, view)
        sample: Sample = self.reader.read(
            self.collections[k], start, stop, spatial_axes=plan.spatial_axes, key=k
        )
        if self.return_positions:
            sample["position"] = np.stack([start, stop], axis=1)
            sample["image_index"] = k
            if self.reader.window:
                sample.update(window_positions(
                    self.collections[k], start, stop, plan.spatial_axes, self.reader.window
                ))
        return sample if self.transform is None else self.transform(sample)

    def _chunk_requests(self, i: int, view: EpochPlans | None = None) -> list[ChunkRequest]:
        """The storage chunks patch ``i`` reads (for the read-ahead)."""
        k, plan, start, stop = self._window(i, view)
        return self.reader.chunk_requests(
            self.collections[k], start, stop, spatial_axes=plan.spatial_axes, key=k
        )

    def read_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Samples ``indices`` as one batch: what stacking ``[ds[i] for i in indices]`` gives.

        Parameters
        ----------
        indices : sequence of int
            Dataset indices (negative ones count from the end), any order.

        Returns
        -------
        dict of str to numpy.ndarray
            Per modality a ``(B, ...)`` array; with ``return_positions``
            also ``"position"`` ``(B, D, 2)`` int64, ``"image_index"``
            ``(B,)`` int64 and ``"<name>_position"`` ``(B, D, 2)`` int64
            per modality in ``window``. Without a ``transform`` each patch
            is copied from the cached chunks straight into its slot; with
            one, the transformed samples (dicts of arrays and numbers) are
            stacked.

        Raises
        ------
        TypeError
            ``indices`` not a sequence of ints.
        IndexError
            An index out of range.
        ZarrsampleError
            No indices, or samples of different shapes (patches of images
            whose modalities scale differently); and what reading raises
            (``on_error`` applies to each sample as for ``ds[i]``).
        """
        return read_batch(self, batch_indices(indices, len(self)), self._view)

    def stats(self) -> dict[str, int]:
        """Counters of this process: ``chunk_reads``, ``cache_hits``, ``evictions``,
        ``cached_bytes`` (the reader's), ``skipped_patches``, ``unreadable_patches`` and
        ``shard_index_reads`` (indexes of sharded arrays fetched, each shard's at most once)."""
        shard_reads = sum(getattr(c[k], "shard_index_reads", 0) for c in self.collections for k in c)
        return {**self.reader.stats(), **self._skip.stats(), "shard_index_reads": shard_reads}

