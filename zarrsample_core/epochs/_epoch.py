"""One epoch of a PatchDataset: the shard's iterator and the read-ahead of its chunks."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._checks import check_bool, check_int
from ._batch import read_batch
from ._state import make_state

if TYPE_CHECKING:
    from ..reading._chunk_reads import ChunkRequest
    from ..reading._reader import PatchReader
    from ._views import EpochPlans

__all__ = ["BatchIterator", "EpochIterator", "EpochSource", "ReadAhead"]


class EpochSource(Protocol):
    """What an epoch reads from: a :class:`~zarrsample_core.PatchDataset`."""

    @property
    def prefetch(self) -> int:
        """Most patches whose chunks are loaded ahead (0: off)."""

    @property
    def reader(self) -> PatchReader:
        """The chunk-cached reader (its cache bounds the read-ahead)."""

    def _sample(self, index: int, view: EpochPlans | None = None) -> Any:
        """Sample ``index`` of the unshuffled plans of ``view`` (transform applied)."""

    def _chunk_requests(self, index: int, view: EpochPlans | None = None) -> list[ChunkRequest]:
        """The storage chunks sample ``index`` of ``view`` reads."""


def _release(reader: PatchReader, held: dict[Any, int]) -> None:
    """Unpin every chunk a read-ahead still holds."""
    reader.unpin(list(held))
    held.clear()


class ReadAhead:
    """Keeps the chunks of the next samples of an order loading, within the cache.

    Whoever reads ``indices`` in order (the core iterator, or an adapter that
    reads ``dataset[indices[j]]`` itself) calls :meth:`advance` with the
    position about to be read. The read-ahead window runs from that position
    to the furthest sample whose chunks, together with those of every sample
    before it, fit in the reader's ``cache_bytes`` (and at most
    ``dataset.prefetch`` samples): those chunks are pinned in the cache, so
    that loading later ones cannot evict them before they are read, and
    loaded in background threads. The window is refilled when it has
    shrunk to half, so that each refill sees runs of neighbouring chunks.
    Thread-safe; positions may skip ahead (a worker reading every k-th
    sample).

    Notes
    -----
    With a cache that holds the chunks of one sample plus those of the next
    run of samples, a sequential or ``draw_same_chunk`` epoch loads each
    chunk once; with a smaller one the window is the current sample only.
    """

    def __init__(
        self, dataset: EpochSource, indices: np.ndarray, position: int = 0, view: EpochPlans | None = None
    ) -> None:
        self._dataset = dataset
        self._indices = indices
        self._view = view  # the epoch's plans (None: the dataset's current ones)
        self._until = position  # samples [.., _until) have entered the window
        self._window: deque[tuple[int, list[Any]]] = deque()  # (position, chunk keys) not yet passed
        self._held: dict[Any, int] = {}  # chunk key -> window samples needing it (pinned once)
        self._sizes: dict[Any, int] = {}
        self._bytes = 0  # decoded bytes of the held chunks
        self._next: tuple[int, list[ChunkRequest]] | None = None  # computed but did not fit
        self._full = "count"  # what stopped the last refill: "count" or "bytes"
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _release, dataset.reader, self._held)

    def advance(self, position: int) -> None:
        """Make sure the chunks of the samples from ``position`` on are on their way."""
        lookahead = self._dataset.prefetch
        if not lookahead:
            return
        reader = self._dataset.reader
        budget = reader.cache_bytes
        fresh: list[ChunkRequest] = []
        with self._lock:
            released = self._pass(position)
            window = self._until - position
            if released:
                reader.unpin(released)
            if window > 0 and (
                (self._full == "count" and window > lookahead // 2)
                or (self._full == "bytes" and self._bytes > budget // 2)
            ):
                return
            p = max(self._until, position)
            limit = min(len(self._indices), position + lookahead)
            self._full = "count"
            while p < limit:
                if self._next is not None and self._next[0] == p:
                    requests = self._next[1]
                else:
                    requests = self._dataset._chunk_requests(int(self._indices[p]), self._view)
                new = {r[0]: r for r in requests if r[0] not in self._held}
                extra = sum(r[4] for r in new.values())
                if self._window and self._bytes + extra > budget:
                    self._next, self._full = (p, requests), "bytes"
                    break
                keys = list(dict.fromkeys(r[0] for r in requests))
                for key in keys:
                    self._held[key] = self._held.get(key, 0) + 1
                for key, r in new.items():
                    self._sizes[key] = r[4]
                self._bytes += extra
                self._window.append((p, keys))
                fresh += new.values()
                p += 1
                if p == position + 1 and fresh:  # the sample read next: its chunks start loading at once
                    reader.pin([r[0] for r in fresh])
                    reader.schedule(fresh)
                    fresh = []
            self._until = p
            if fresh:
                reader.pin([r[0] for r in fresh])  # each key once: it entered the window now
        reader.schedule(fresh)

    def _pass(self, position: int) -> list[Any]:
        """Drop the samples before ``position`` from the window; the keys no sample needs now."""
        released = []
        while self._window and self._window[0][0] < position:
            _, keys = self._window.popleft()
            for key in keys:
                count = self._held[key] - 1
                if count:
                    self._held[key] = count
                else:
                    del self._held[key]
                    self._bytes -= self._sizes.pop(key)
                    released.append(key)
        self._until = max(self._until, position)
        return released


class EpochIterator(Iterator[Any]):
    """One shard's samples of one epoch; :meth:`state` saves the position.

    Create with :meth:`PatchDataset.epoch`. ``len()`` is the shard's size;
    ``indices`` holds the shard's dataset indices (in this epoch's plans)
    in delivery order and ``position`` how many have been delivered;
    :meth:`read` and :meth:`read_batch` read any of them without moving.
    """

    def __init__(
        self, dataset: EpochSource, indices: np.ndarray, *, epoch: int, position: int, config: dict,
        view: EpochPlans | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = indices
        self.epoch = epoch
        self.position = position
        self._config = config
        self._view = view
        self._read_ahead = ReadAhead(dataset, indices, position, view)

    def read_ahead(self) -> ReadAhead:
        """A new read-ahead over this shard (for readers that pick positions themselves)."""
        return ReadAhead(self.dataset, self.indices, 0, self._view)

    def read(self, j: int) -> Any:
        """Sample ``j`` of this shard (``0 <= j < len(self)``), whatever the position."""
        return self.dataset._sample(int(self.indices[j]), self._view)

    def read_batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Samples ``start .. stop - 1`` of this shard as one batch (see :meth:`batches`)."""
        return read_batch(self.dataset, self.indices[start:stop], self._view)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> EpochIterator:
        return self

    def __next__(self) -> Any:
        if self.position >= len(self.indices):
            self._read_ahead.advance(self.position)  # releases what the read-ahead holds
            raise StopIteration
        self._read_ahead.advance(self.position)
        sample = self.dataset._sample(int(self.indices[self.position]), self._view)
        self.position += 1
        return sample

    def batches(self, batch_size: int, *, drop_last: bool = False) -> BatchIterator:
        """The rest of this epoch in batches: dicts of ``(B, ...)`` arrays.

        Parameters
        ----------
        batch_size : int
            Samples per batch (``>= 1``).
        drop_last : bool
            Leave out a last batch of fewer than ``batch_size`` samples.

        Returns
        -------
        BatchIterator
            Yields what ``numpy.stack`` of the next ``batch_size`` samples
            would give, key by key (``"position"`` as ``(B, D, 2)``,
            ``"image_index"`` as ``(B,)``), read straight into one array per
            modality; its ``state()`` is this iterator's.

        Raises
        ------
        TypeError, ZarrsampleError
            ``batch_size`` not an int >= 1, ``drop_last`` not a bool.
        """
        return BatchIterator(self, batch_size, drop_last)

    def state(self) -> dict[str, int]:
        """A small dict of ints to resume from (``PatchDataset.epoch(state=...)``)."""
        return make_state(epoch=self.epoch, position=self.position, **self._config)


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    """One shard's epoch in batches of ``size`` samples; :meth:`state` is the epoch's.

    Create with :meth:`EpochIterator.batches`. Each batch holds the next
    ``size`` samples of the epoch iterator's order (the last one fewer,
    unless ``drop_last``), and advances its position by as many, so a state
    saved between batches resumes single samples or batches alike.
    """

    def __init__(self, epoch: EpochIterator, size: int, drop_last: bool) -> None:
        self.epoch = epoch
        self.size = check_int(size, "batch_size", 1)
        self.drop_last = check_bool(drop_last, "drop_last")

    def __len__(self) -> int:
        """Batches still to come."""
        left = len(self.epoch.indices) - self.epoch.position
        return left // self.size if self.drop_last else -(-left // self.size)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        it = self.epoch
        total, position = len(it.indices), it.position
        stop = min(total, position + self.size)
        if position >= total or (self.drop_last and stop - position < self.size):
            it._read_ahead.advance(total)  # releases what the read-ahead holds
            raise StopIteration
        it._read_ahead.advance(position)
        batch = it.read_batch(position, stop)
        it.position = stop
        return batch

    def state(self) -> dict[str, int]:
        """The epoch iterator's state after the last batch delivered."""
        return self.epoch.state()

