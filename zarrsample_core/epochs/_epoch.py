"""One epoch of a PatchDataset: the shard's iterator and the read-ahead of its chunks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from ._state import make_state

__all__ = ["EpochIterator", "EpochSource", "ReadAhead"]


class EpochSource(Protocol):
    """What an epoch reads from: a :class:`~zarrsample_core.PatchDataset`."""

    @property
    def prefetch(self) -> int:
        """Patches whose chunks are loaded ahead (0: off)."""

    def _sample(self, index: int) -> Any:
        """Sample ``index`` of the unshuffled plan (transform applied)."""

    def _prefetch(self, indices: np.ndarray) -> None:
        """Start loading the chunks of these patches in the background."""


class ReadAhead:
    """Keeps the chunks of the next ``dataset.prefetch`` samples of an order loading.

    Whoever reads ``indices`` in order (the core iterator, or an adapter that
    reads ``dataset[indices[j]]`` itself) calls :meth:`advance` with the
    position about to be read; the window is refilled half a window at a
    time, so each refill sees runs of neighbouring chunks. Thread-safe.
    """

    def __init__(self, dataset: EpochSource, indices: np.ndarray, position: int = 0) -> None:
        self._dataset = dataset
        self._indices = indices
        self._until = position
        self._lock = threading.Lock()

    def advance(self, position: int) -> None:
        """Make sure the chunks after ``position`` are on their way."""
        lookahead = self._dataset.prefetch
        if not lookahead or self._until - position > lookahead // 2:
            return
        with self._lock:
            ahead = min(len(self._indices), position + 1 + lookahead)
            first = max(self._until, position + 1)
            self._until = max(self._until, ahead)
        if first < ahead:
            self._dataset._prefetch(self._indices[first:ahead])


class EpochIterator(Iterator[Any]):
    """One shard's samples of one epoch; :meth:`state` saves the position.

    Create with :meth:`PatchDataset.epoch`. ``len()`` is the shard's size;
    ``indices`` holds the shard's dataset indices in delivery order and
    ``position`` how many have been delivered.
    """

    def __init__(
        self, dataset: EpochSource, indices: np.ndarray, *, epoch: int, position: int, config: dict
    ) -> None:
        self.dataset = dataset
        self.indices = indices
        self.epoch = epoch
        self.position = position
        self._config = config
        self._read_ahead = ReadAhead(dataset, indices, position)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> EpochIterator:
        return self

    def __next__(self) -> Any:
        if self.position >= len(self.indices):
            raise StopIteration
        self._read_ahead.advance(self.position)
        sample = self.dataset._sample(int(self.indices[self.position]))
        self.position += 1
        return sample

    def state(self) -> dict[str, int]:
        """A small dict of ints to resume from (``PatchDataset.epoch(state=...)``)."""
        return make_state(epoch=self.epoch, position=self.position, **self._config)
