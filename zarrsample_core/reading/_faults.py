"""Read faults: chunk errors that say where, bounded retries, skipped patches.

A chunk that cannot be read becomes a :class:`ChunkReadError` naming the
image, the array path, the chunk (grid index and storage key) and the patch
window. :class:`RetryPolicy` retries transient I/O errors (connection
reset/refused, timeouts, HTTP 5xx/429, truncated responses) with bounded
exponential backoff; decode errors and corrupt data are never retried.
:class:`SkipLog` replaces unreadable patches by the next readable one in
plan order and counts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal, TypeVar

import numpy as np

from .._checks import check_int
from .._errors import ChunkReadError, ZarrsampleError, is_transient
from ..sources._chunk_errors import array_path, chunk_key, chunk_read_error

__all__ = [
    "ChunkReadError", "OnError", "RetryPolicy", "SkipLog", "array_path", "check_on_error", "chunk_key",
    "chunk_read_error", "is_transient",
]

OnError = Literal["raise", "skip", "retry"]
ON_ERROR = ("raise", "skip", "retry")
logger = logging.getLogger("zarrsample")
T = TypeVar("T")


class _Exhausted(Exception):
    """A transient error that outlived its retries (unwrapped by the reader)."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error, self.attempts = error, attempts


def check_on_error(value: object) -> str:
    """``value`` if it is one of ``"raise"``, ``"skip"``, ``"retry"``."""
    if not isinstance(value, str) or value not in ON_ERROR:
        raise ZarrsampleError(f"on_error must be one of {list(ON_ERROR)}, got {value!r}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient errors.

    Parameters
    ----------
    retries : int
        Extra attempts after the first (``>= 0``; 0 never retries).
    backoff : float
        Seconds before the first retry (``>= 0``); attempt ``a`` waits
        ``backoff * 2**a * j`` with ``j`` in ``[0.5, 1)``, so all waits
        together stay below ``backoff * (2**retries - 1)``.

    Notes
    -----
    The jitter ``j`` comes from ``SeedSequence([crc32(what), a])``: the same
    chunk waits the same on every run and machine, while different chunks
    failing together spread their retries.

    Examples
    --------
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionResetError("reset by peer")
    ...     return "ok"
    >>> RetryPolicy(retries=3, backoff=0.0).call(flaky, "chunk (0, 0)"), len(calls)
    ('ok', 3)
    """

    retries: int = 0
    backoff: float = 0.05

    def __post_init__(self) -> None:
        check_int(self.retries, "retries")
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, Real) or not (
            0 <= float(self.backoff) < float("inf")
        ):
            raise ZarrsampleError(f"backoff must be a finite number of seconds >= 0, got {self.backoff!r}")

    def delay(self, attempt: int, what: str) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based) of ``what``."""
        jitter = np.random.default_rng([zlib.crc32(what.encode()), attempt]).random()
        return float(self.backoff) * 2.0**attempt * (0.5 + 0.5 * jitter)

    def call(self, load: Callable[[], T], what: str) -> T:
        """``load()``, retried on transient errors.

        Raises
        ------
        Exception
            A non-transient error at once, unchanged; a transient one after
            ``retries`` retries, wrapped so that the reader can report the
            attempts (the original is its ``__cause__``).
        """
        attempt = 0
        while True:
            try:
                return load()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt >= self.retries:
                    if attempt == 0:
                        raise
                    raise _Exhausted(exc, attempt + 1) from exc
                time.sleep(self.delay(attempt, what))
                attempt += 1


# --------------------------------------------------------------------------- messages


# --------------------------------------------------------------------------- skipping


class SkipLog:
    """Replacement of unreadable patches, and its counters (one per process).

    ``sample(i)`` returns ``read(j)`` for the first ``j`` in ``i, i+1, ...,
    n-1, 0, ..., i-1`` whose read does not raise :class:`ChunkReadError`:
    deterministic given which patches are unreadable, the same for every
    caller (epoch iterators and ``dataset[i]``). Patches found unreadable
    are remembered (and not read again) until :meth:`reset`. The first
    unreadable patch of each image logs one warning on the ``"zarrsample"``
    logger.
    """

    def __init__(self) -> None:
        self._init()

    def _init(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._bad: set[int] = set()  # remembered until reset()
        self._unreadable: set[int] = set()  # every patch found unreadable, for stats
        self._warned: set[int] = set()
        self._skipped = 0

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init()

    def _now(self) -> SkipLog:
        if self._pid != os.getpid():  # fork()ed child: fresh counters, no inherited lock
            self._init()
        return self

    def stats(self) -> dict[str, int]:
        """``skipped_patches`` (reads served by a replacement) and ``unreadable_patches`` (distinct)."""
        self._now()
        with self._lock:
            return {"skipped_patches": self._skipped, "unreadable_patches": len(self._unreadable)}

    def reset(self) -> None:
        """Forget which patches were unreadable (they are read again when asked for)."""
        self._now()
        with self._lock:
            self._bad.clear()

    def sample(self, i: int, n: int, read: Callable[[int], T], image_of: Callable[[int], int]) -> T:
        """``read`` of patch ``i`` or of its replacement.

        Raises
        ------
        ZarrsampleError
            All ``n`` patches are unreadable (chained to the last error).
        """
        self._now()
        last: ChunkReadError | None = None
        for step in range(n):
            j = (i + step) % n
            if j in self._bad:
                continue
            try:
                value = read(j)
            except ChunkReadError as exc:
                last = exc
                self._failed(j, image_of(j), exc)
                continue
            if step:
                with self._lock:
                    self._skipped += 1
            return value
        raise ZarrsampleError(
            f"on_error='skip' found no readable patch: all {n} patches failed to read"
        ) from last

    def _failed(self, j: int, image: int, exc: ChunkReadError) -> None:
        with self._lock:
            self._bad.add(j)
            self._unreadable.add(j)
            first = image not in self._warned
            self._warned.add(image)
        if first:
            logger.warning(
                "zarrsample: skipping unreadable patches of image %d (%s): %s. Each is replaced by "
                "the next readable patch in plan order; dataset.stats()['skipped_patches'] counts "
                "them (further failures of this image are not logged).",
                image, exc.image, exc,
            )
