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
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal, TypeVar

import numpy as np

from .._checks import check_int
from .._errors import ZarrsampleError
from ..sources._tensorstore import TRANSIENT_STATUS, tensorstore_message

__all__ = ["ChunkReadError", "OnError", "RetryPolicy", "SkipLog", "check_on_error", "is_transient"]

OnError = Literal["raise", "skip", "retry"]
ON_ERROR = ("raise", "skip", "retry")
logger = logging.getLogger("zarrsample")
T = TypeVar("T")

_HTTP_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})
#: S3 error codes of answers worth retrying (whatever their HTTP status).
_S3_RETRY = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
})


class ChunkReadError(ZarrsampleError):
    """A storage chunk could not be read or decoded.

    The message names the modality, the image (source and array path), the
    chunk's grid index and storage key (its URL for remote sources), the
    patch window and, after retries, how many attempts were made; the
    original exception is chained as ``__cause__``. Attributes: ``image``,
    ``array_path``, ``chunk_index``, ``chunk_key``, ``window``,
    ``attempts``, ``transient``.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.image: str | None = details.get("image")
        self.array_path: str | None = details.get("array_path")
        self.chunk_index: tuple[int, ...] | None = details.get("chunk_index")
        self.chunk_key: str | None = details.get("chunk_key")
        self.window: Any = details.get("window")
        self.attempts: int = details.get("attempts", 1)
        self.transient: bool = details.get("transient", False)


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


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is worth retrying.

    Transient: ``ConnectionError`` (reset, refused, aborted, broken pipe),
    ``TimeoutError`` (``asyncio.TimeoutError`` included), aiohttp's
    connection and payload errors (dropped connection, truncated body) and
    HTTP responses 408, 425, 429, 500, 502, 503, 504; botocore's connection,
    read-timeout and truncated-body errors and its ``ClientError`` for those
    statuses or S3's ``SlowDown``, ``ServiceUnavailable``, ``InternalError``,
    ``RequestTimeout`` and throttling codes (s3fs raises them as the cause of
    an ``OSError``); tensorstore errors with status ``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED``, ``ABORTED`` or ``RESOURCE_EXHAUSTED``. Everything
    else (decode errors, corrupt or truncated chunk files, missing keys or
    buckets, refused credentials, TLS certificate errors,
    ``ZarrsampleError``) is not.

    Examples
    --------
    >>> is_transient(ConnectionResetError()), is_transient(RuntimeError("Zstd decompression error"))
    (True, False)
    >>> is_transient(ValueError("UNAVAILABLE: Error reading http://h/a/c/0: [HTTP code 503]"))
    True
    """
    aiohttp = sys.modules.get("aiohttp")  # only errors they raised matter, so never import them
    botocore = sys.modules.get("botocore.exceptions")
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ZarrsampleError):
            return False
        if botocore is not None:
            verdict = _botocore_transient(current, botocore)
            if verdict is not None:
                return verdict
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if aiohttp is not None:
            if isinstance(current, aiohttp.ClientResponseError):
                return current.status in _HTTP_RETRY
            if isinstance(current, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
                return True
        if type(current) is ValueError and str(current).startswith(TRANSIENT_STATUS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _botocore_transient(exc: BaseException, botocore: Any) -> bool | None:
    """Whether a botocore error is transient; None for other exceptions."""
    if isinstance(exc, botocore.SSLError):  # a certificate does not heal by waiting
        return False
    if isinstance(exc, (botocore.ConnectionError, botocore.HTTPClientError, botocore.IncompleteReadError)):
        return True  # refused, reset, closed, read or connect timeouts, truncated bodies
    if isinstance(exc, botocore.ClientError):
        response = getattr(exc, "response", None) or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code")
        return status in _HTTP_RETRY or code in _S3_RETRY or str(code) in {str(s) for s in _HTTP_RETRY}
    if isinstance(exc, botocore.BotoCoreError):
        return False  # missing credentials, bad parameters, unknown regions
    return None


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


def chunk_key(image: Any, index: Sequence[int]) -> str | None:
    """The storage key of the chunk (or shard) holding inner chunk ``index``, if known."""
    try:
        handle = image._array()
        meta = handle.metadata.to_dict() if hasattr(handle, "metadata") else handle.spec().to_json()["metadata"]
        if meta.get("zarr_format") == 2 or "chunks" in meta:
            outer, sep, prefix = meta["chunks"], meta.get("dimension_separator") or ".", None
        else:
            outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
            encoding = meta.get("chunk_key_encoding") or {"name": "default"}
            default = encoding.get("name") == "default"
            sep = (encoding.get("configuration") or {}).get("separator", "/" if default else ".")
            prefix = "c" if default else None
        coords = [str(int(i) * int(c) // int(o)) for i, c, o in zip(index, image.chunks, outer)]
        parts = ([prefix] if prefix else []) + (coords or ([] if prefix else ["0"]))
        return str(sep).join(parts)
    except Exception:  # noqa: BLE001 - a message must not fail while being written
        return None


def array_path(image: Any) -> str | None:
    """Path of the array inside its zarr store, if known."""
    spec = getattr(image, "_spec", None)
    if spec is not None and spec[0] == "zarr":
        return str(spec[3])
    if spec is not None and spec[0] == "tiff":  # a TIFF level has no path inside a store
        return None
    if spec is not None and len(spec) > 2:
        return str(spec[2])
    return getattr(getattr(image, "_cache", {}).get("handle"), "path", None)


def chunk_read_error(
    modality: str, image: Any, index: tuple[int, ...], window: tuple[tuple[int, ...], tuple[int, ...]],
    spatial_axes: str, error: BaseException, attempts: int,
) -> ChunkReadError:
    """The :class:`ChunkReadError` of one failed chunk (one line)."""
    key = chunk_key(image, index)
    path = array_path(image)
    name = str(getattr(image, "name", image))
    where = f" at {name.rstrip('/')}/{key}" if key is not None else ""
    transient = is_transient(error)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if type(error) is ValueError and str(error).split(":", 1)[0].isupper():  # tensorstore's status: no spec
        text = f"ValueError: {tensorstore_message(error)}"
    message = (
        f"could not read chunk {tuple(index)} (key {key!r}{where}) of modality {modality!r}, image "
        f"{name} (array path {path!r}), for the patch window start={list(window[0])} "
        f"stop={list(window[1])} along {spatial_axes!r}{tries}: {text}"
    )
    return ChunkReadError(
        message, image=name, array_path=path, chunk_index=tuple(index), chunk_key=key,
        window=window, attempts=attempts, transient=transient,
    )


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
