"""A thread-safe cache of decoded storage chunks, bounded by bytes: least recently used, and scan-resistant for read-aheads."""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Executor, Future
from numbers import Integral
from typing import Any

import numpy as np

from .._errors import ZarrsampleError

__all__ = ["ChunkCache"]


class _GroupFailed(Exception):
    """A scheduled group load failed: each waiting reader loads its chunk itself."""


class _Slot:
    """A chunk being loaded: who loads it (``claimed``) and its result."""

    __slots__ = ("claimed", "future")

    def __init__(self, claimed: bool) -> None:
        self.claimed = claimed
        self.future: Future[np.ndarray] = Future()


class ChunkCache:
    """Cache of chunk arrays, never above ``max_bytes``: least recently used, except chunks a read-ahead passed.

    Chunks whose pins were all released go first, most recently loaded
    first (see :meth:`pin`), so that epochs over more chunks than fit keep
    the chunks loaded first from one epoch to the next.

    Parameters
    ----------
    max_bytes : int
        Budget for the arrays held, in bytes (``>= 0``). A chunk larger than
        the budget is handed to its reader but not kept.
    remember_failures : bool
        Keep the exception of a failed load and raise it again for that key,
        without loading, until :meth:`forget_failures` (used with
        ``on_error="skip"``, so that a dead chunk costs one read per epoch,
        not one per patch).

    Attributes
    ----------
    max_bytes : int
        The budget.

    Raises
    ------
    TypeError
        ``max_bytes`` is not an int.
    ZarrsampleError
        ``max_bytes`` is negative.

    Notes
    -----
    One lock guards all bookkeeping; loads run outside it, so several
    threads load different chunks at once. :meth:`get_or_load` loads each
    missing chunk once even when several threads ask for it together: the
    others wait for the first one's result (an in-flight load). Stored
    arrays are made read-only. A load that raises stores nothing: readers
    waiting for it get its exception, and the next request loads the chunk
    again (or, with ``remember_failures``, gets the same exception). When a :meth:`schedule_group` load fails, each reader waiting for
    one of its chunks loads that chunk itself (so a good chunk is not
    failed by a bad neighbour, and each error is raised by the reader that
    needs the chunk). Counters: ``chunk_reads`` (chunks stored
    after a load from storage, i.e. calls of :meth:`put`), ``cache_hits``
    (requests served without loading: from the cache or by waiting for an
    in-flight load) and ``evictions``.

    Examples
    --------
    >>> cache = ChunkCache(max_bytes=16)
    >>> cache.put("a", np.zeros(8, np.uint8)); cache.put("b", np.ones(8, np.uint8))
    >>> _ = cache.get("a"); cache.put("c", np.ones(8, np.uint8))   # evicts "b"
    >>> sorted(cache.stats().items())
    [('cache_hits', 1), ('cached_bytes', 16), ('chunk_reads', 3), ('evictions', 1)]
    """

    def __init__(self, max_bytes: int, *, remember_failures: bool = False) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, Integral):
            raise TypeError(f"max_bytes must be an int, got {max_bytes!r}")
        if max_bytes < 0:
            raise ZarrsampleError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes: int = int(max_bytes)
        self._lock: threading.Lock = threading.Lock()
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._inflight: dict[Hashable, _Slot] = {}
        self._nbytes: int = 0
        self._counts: dict[str, int] = {"chunk_reads": 0, "cache_hits": 0, "evictions": 0}
        self.remember_failures: bool = bool(remember_failures)
        self._failed: dict[Hashable, BaseException] = {}
        self._pins: dict[Hashable, int] = {}
        self._loads: int = 0  # how many chunks were stored: each stored chunk's load number
        self._loaded: dict[Hashable, int] = {}
        self._passed: list[tuple[int, Hashable]] = []  # heap of (-load number, key) of passed chunks

    def __repr__(self) -> str:
        return f"ChunkCache(max_bytes={self.max_bytes}, chunks={len(self)}, nbytes={self.nbytes})"

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes, "remember_failures": self.remember_failures}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_bytes"], remember_failures=state.get("remember_failures", False))  # type: ignore[misc]

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached arrays (``<= max_bytes``)."""
        return self._nbytes

    def stats(self) -> dict[str, int]:
        """Counters and ``cached_bytes``, as a new dict."""
        with self._lock:
            return {**self._counts, "cached_bytes": self._nbytes}

    def forget_failures(self) -> None:
        """Let chunks whose load failed be loaded again (see ``remember_failures``)."""
        with self._lock:
            self._failed.clear()

    def pin(self, keys: Sequence[Hashable]) -> None:
        """Keep these chunks (cached now or later) until :meth:`unpin`, if the budget allows.

        Pins count: a key pinned twice needs two unpins. A read-ahead pins
        the chunks of the patches it loads for, so that loading the later
        ones cannot evict the earlier ones before they are read. Eviction
        takes, in this order: a chunk whose pins were all released (passed
        by a read-ahead), the most recently loaded first; the least recently
        used chunk never pinned; a pinned one only when nothing else is left
        (the budget is never exceeded).

        Passed chunks go most-recently-loaded first so that an epoch over
        more chunks than the cache holds keeps the chunks it loaded first
        for the next epoch, instead of evicting each one just before it is
        needed again (least recently used would keep none of them).
        """
        with self._lock:
            for key in keys:
                self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, keys: Sequence[Hashable]) -> None:
        """Undo one :meth:`pin` of each key (unknown keys are ignored)."""
        with self._lock:
            for key in keys:
                count = self._pins.get(key, 0) - 1
                if count > 0:
                    self._pins[key] = count
                elif self._pins.pop(key, None) is not None and key in self._data:
                    heapq.heappush(self._passed, (-self._loaded[key], key))
            self._prune_passed()

    def clear(self) -> None:
        """Drop every cached array (counters are kept)."""
        with self._lock:
            self._data.clear()
            self._loaded.clear()
            self._passed.clear()
            self._nbytes = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached array for ``key`` (now most recently used), or None."""
        with self._lock:
            return self._hit(key)

    def _hit(self, key: Hashable) -> np.ndarray | None:
        """The cached array (marked most recently used, counted as a hit), or None; lock held."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
            self._counts["cache_hits"] += 1
        return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        """Store a chunk freshly loaded from storage (counted in ``chunk_reads``).

        Least recently used chunks are evicted until ``value`` fits; a
        ``value`` larger than ``max_bytes`` is not kept.
        """
        with self._lock:
            self._store(key, value)

    def get_or_load(self, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The array for ``key``: cached, awaited from an in-flight load, or loaded now.

        Parameters
        ----------
        key : hashable
            Chunk identity.
        load : callable
            Called with no argument to load the chunk when nobody else is.

        Returns
        -------
        numpy.ndarray
            The chunk (read-only).
        """
        with self._lock:
            value = self._hit(key)
            if value is not None:
                return value
            failed = self._failed.get(key)
            if failed is not None:
                raise failed.with_traceback(None)
            slot = self._inflight.get(key)
            if slot is None:
                slot = self._inflight[key] = _Slot(claimed=True)
                mine = True
            else:
                # A scheduled load nobody started yet is taken over, not waited for.
                mine = not slot.claimed
                slot.claimed = True
                if not mine:
                    self._counts["cache_hits"] += 1
        if mine:
            return self._fill(key, slot, load)
        try:
            return slot.future.result()
        except _GroupFailed:
            return self.get_or_load(key, load)  # the scheduled load failed: load it here

    def schedule_group(
        self, keys: Sequence[Hashable], load: Callable[[], Iterable[np.ndarray]], executor: Executor
    ) -> int:
        """Load several chunks with one call of ``load`` (one array per key, in order).

        Keys already cached or in flight are left alone; if all are, nothing
        is scheduled. One read of a run of neighbouring chunks lets the
        storage library decode them concurrently; ``load`` may hand the
        arrays out one by one (a generator), and each is stored and given
        to its waiting readers as soon as it comes. A reader that asks for a
        chunk before a worker starts on the group loads it itself; once a
        worker has started, readers wait for it (and load the chunk
        themselves if the group load raises before reaching it). Returns how
        many keys were scheduled.
        """
        with self._lock:
            fresh = [k for k in keys if k not in self._data and k not in self._inflight]
            slots = {k: _Slot(claimed=False) for k in fresh}
            self._inflight.update(slots)
        if slots:
            executor.submit(self._run_group, keys, slots, load)
        return len(slots)

    def _run_group(
        self, keys: Sequence[Hashable], slots: dict[Hashable, _Slot], load: Callable[[], Iterable[np.ndarray]]
    ) -> None:
        with self._lock:
            mine = {k: slot for k, slot in slots.items() if not slot.claimed}
            for slot in mine.values():
                slot.claimed = True
        if not mine:
            return  # readers took every chunk over
        try:
            for key, value in zip(keys, load()):
                if key not in mine:
                    continue  # a reader loads it (it asked before this group started)
                slot = mine.pop(key)
                with self._lock:
                    self._inflight.pop(key, None)
                    self._store(key, value)
                slot.future.set_result(value)
                if not mine:
                    return  # the rest belongs to readers: stop reading
        except BaseException:  # noqa: BLE001 - every waiter must wake up; they load again
            pass
        with self._lock:  # a failed (or short) load: the waiters load their chunks themselves
            for key in mine:
                self._inflight.pop(key, None)
        for slot in mine.values():
            slot.future.set_exception(_GroupFailed())

    def _fill(self, key: Hashable, slot: _Slot, load: Callable[[], np.ndarray]) -> np.ndarray:
        try:
            value = load()
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(key, None)
                if self.remember_failures and isinstance(exc, Exception):
                    self._failed[key] = exc
            slot.future.set_exception(exc)
            raise
        with self._lock:
            self._inflight.pop(key, None)
            self._store(key, value)
        slot.future.set_result(value)
        return value

    def _store(self, key: Hashable, value: np.ndarray) -> None:
        """Insert under the lock, evicting (see :meth:`_victim`) to stay in budget."""
        value.setflags(write=False)
        self._counts["chunk_reads"] += 1
        old = self._data.pop(key, None)
        if old is not None:
            self._nbytes -= old.nbytes
            del self._loaded[key]
        size = value.nbytes
        if size > self.max_bytes:
            return
        while self._nbytes + size > self.max_bytes:
            victim = self._victim()
            self._nbytes -= self._data.pop(victim).nbytes
            del self._loaded[victim]
            self._counts["evictions"] += 1
        self._loads += 1
        self._data[key] = value
        self._loaded[key] = self._loads
        self._nbytes += size
        self._prune_passed()

    def _prune_passed(self) -> None:
        """Drop the heap's stale entries (evicted, pinned again, reloaded) when they outnumber the chunks; lock held."""
        if len(self._passed) > 2 * len(self._data) + 64:
            self._passed = [(n, k) for n, k in self._passed if self._loaded.get(k) == -n and k not in self._pins]
            heapq.heapify(self._passed)

    def _victim(self) -> Hashable:
        """The key to evict (see :meth:`pin`); lock held, the cache not empty."""
        while self._passed:
            n, key = heapq.heappop(self._passed)
            if self._loaded.get(key) == -n and key not in self._pins:
                return key  # passed, and neither pinned again nor reloaded since
        if self._pins:
            unpinned = next((k for k in self._data if k not in self._pins), None)
            if unpinned is not None:
                return unpinned
        return next(iter(self._data))
