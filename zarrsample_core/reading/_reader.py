"""PatchReader: aligned, padded patches of every modality, through a chunk cache.

A window in reference pixels becomes, per modality, a window at that
modality's placement (:meth:`ImageCollection.window_maps`, exact), then the storage chunks
that cover its in-image part. Each chunk is loaded once into a shared
:class:`._cache.ChunkCache` and the patch is copied out of the cached chunks
into a preallocated array already in the requested axis order.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_bool, check_int
from .._errors import ZarrsampleError
from ..sources._buffers import aligned_empty
from ._cache import ChunkCache
from ._chunk_reads import ChunkRequest, Source, load_groups, read_run, window_requests
from ._context import WindowSize, check_window
from ._faults import RetryPolicy
from ._padding import (
    PaddingMode,
    check_pad_value,
    check_padding_mode,
)
from ._reader_checks import check_output_axes
from ._windows import fill_window, image_view, output_shape, window_sources

if TYPE_CHECKING:
    from ..sources._collection import ImageCollection

__all__ = ["PatchReader"]

#: Most decoded bytes one background load (a run of neighbouring chunks) fetches.
RUN_BYTES = 16 * 2**20


class PatchReader:
    """Read the window of a patch from every modality of a collection.

    Parameters
    ----------
    padding_mode : {"constant", "edge", "reflect", "symmetric", "wrap"}
        How window parts outside the image are filled, with
        :func:`numpy.pad`'s meaning relative to the whole image.
    pad_value : int, float or bool
        The fill of ``"constant"`` padding; must be representable in every
        modality's dtype (exactly for integer and bool dtypes, without
        overflow for floats; checked at :meth:`read`).
    output_axes : dict of str to str, optional
        Axis order per modality, e.g. ``{"images": "CYX"}``: axes not listed
        are dropped (their window must have size 1), letters the modality
        lacks become size-1 axes. Modalities not listed keep their own axes.
    cache_bytes : int
        Budget of the chunk cache in bytes (default 256 MiB); 0 disables
        keeping chunks.
    prefetch_workers : int
        Threads that load chunks scheduled by :meth:`prefetch`; 0 makes
        :meth:`prefetch` a no-op.
    retries : int
        Extra attempts at a chunk load that failed with a transient I/O
        error (connection reset or refused, timeout, HTTP 5xx), in
        :meth:`read` and in prefetch threads alike; 0 never retries.
    backoff : float
        Seconds before the first retry, doubled at each retry (with a
        deterministic jitter), see :class:`._faults.RetryPolicy`.
    remember_failures : bool
        A chunk that failed (after its retries) fails again at once, without
        being read, until :meth:`forget_failures` (``on_error="skip"``).
    window : dict of str to int, sequence of int or dict, optional
        Context windows: ``{modality: size}`` reads that modality as a window
        of its own size in its own pixels, centred on the patch (e.g.
        ``{"context": 256}`` for a coarser level of the slide). A size is an
        int (every spatial axis the modality has with extent > 1), one int
        per axis of ``spatial_axes`` or ``{axis: int}``; other axes keep the
        mapped patch window. See :mod:`._context` for the centring rule.

    Raises
    ------
    TypeError
        A parameter of the wrong type.
    ZarrsampleError
        An unknown ``padding_mode``, a bad axis string, negative sizes or
        ``window`` sizes below 1.

    Notes
    -----
    Cache keys are ``(key, modality name, image identity, chunk index)``
    where ``key`` (given to :meth:`read`) tells collections apart and the
    image identity (name, level, origin, shape) guards against two different
    collections read with the same ``key``. numpy-backed images are already
    in memory and are read directly, without the cache.

    A chunk that cannot be read or decoded raises
    :class:`._faults.ChunkReadError` (a ``ZarrsampleError``) naming the
    modality, image, array path, chunk index and key, and the window; the
    library's exception is its ``__cause__``. A failed chunk is never
    cached. A prefetch that fails hands its chunks back: the :meth:`read`
    that needs one loads it again itself and raises that chunk's own error.

    Memory is bounded by ``cache_bytes`` plus the chunks being copied and
    the output; a window costs one copy of its pixels plus O(chunks touched)
    Python work. Prefetching uses plain threads for every backend: on
    tensorstore they were measured as fast as tensorstore's own read futures
    (``benchmarks/read_micro.py``).

    :meth:`read` is thread-safe. A reader pickles without its cache, counters
    and threads (re-created on first use), and also resets them in a
    ``fork()``ed child.

    Examples
    --------
    >>> from zarrsample_core import ImageCollection, open_image
    >>> image = open_image(np.arange(12, dtype=np.uint8).reshape(3, 4), axes="YX")
    >>> coll = ImageCollection({"images": image}, spatial_axes="YX")
    >>> PatchReader(padding_mode="edge").read(coll, [-1, 2], [1, 5], spatial_axes="YX")["images"]
    array([[2, 3, 3],
           [2, 3, 3]], dtype=uint8)
    """

    def __init__(
        self,
        *,
        padding_mode: PaddingMode = "constant",
        pad_value: int | float | bool = 0,
        output_axes: Mapping[str, str] | None = None,
        cache_bytes: int = 256 * 2**20,
        prefetch_workers: int = 2,
        retries: int = 0,
        backoff: float = 0.05,
        remember_failures: bool = False,
        window: Mapping[str, WindowSize] | None = None,
    ) -> None:
        self.padding_mode: str = check_padding_mode(padding_mode)
        if not isinstance(pad_value, (Real, np.bool_)):
            raise TypeError(
                f"pad_value must be a real number or bool, got {pad_value!r} "
                f"of type {type(pad_value).__name__}"
            )
        self.pad_value: int | float | bool = pad_value
        self.output_axes: dict[str, str] = check_output_axes(output_axes)
        self.cache_bytes: int = check_int(cache_bytes, "cache_bytes")
        self.prefetch_workers: int = check_int(prefetch_workers, "prefetch_workers")
        self.retry: RetryPolicy = RetryPolicy(check_int(retries, "retries"), backoff)
        self.remember_failures: bool = check_bool(remember_failures, "remember_failures")
        self.window: dict[str, WindowSize] = check_window(window)
        self._reset()

    def __repr__(self) -> str:
        return (
            f"PatchReader(padding_mode={self.padding_mode!r}, pad_value={self.pad_value!r}, "
            f"output_axes={self.output_axes!r}, cache_bytes={self.cache_bytes}, "
            f"prefetch_workers={self.prefetch_workers}, retries={self.retry.retries}, "
            f"backoff={self.retry.backoff}" + (f", window={self.window!r})" if self.window else ")")
        )

    def _reset(self) -> None:
        self._pid: int = os.getpid()
        self._lock: threading.Lock = threading.Lock()
        self._cache: ChunkCache = ChunkCache(self.cache_bytes, remember_failures=self.remember_failures)
        self._executor: ThreadPoolExecutor | None = None
        self._fills: dict[np.dtype, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        keep = (
            "padding_mode", "pad_value", "output_axes", "cache_bytes", "prefetch_workers", "retry",
            "remember_failures", "window",
        )
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"window": {}, **state})  # readers pickled before ``window`` existed
        self._reset()

    def _cache_now(self) -> ChunkCache:
        if self._pid != os.getpid():  # fork()ed child: the parent's threads and lock are gone
            self._reset()
        return self._cache

    def forget_failures(self) -> None:
        """Read chunks that failed again when asked for (with ``remember_failures``)."""
        self._cache_now().forget_failures()

    def stats(self) -> dict[str, int]:
        """``chunk_reads``, ``cache_hits``, ``evictions`` and ``cached_bytes`` so far."""
        return self._cache_now().stats()

    def read(
        self,
        collection: ImageCollection,
        start: Sequence[int] | np.ndarray,
        stop: Sequence[int] | np.ndarray,
        *,
        spatial_axes: str,
        key: Any = 0,
    ) -> dict[str, np.ndarray]:
        """Read one window from every modality except the mask.

        Parameters
        ----------
        collection : ImageCollection
            The modalities; the first is the reference.
        start, stop : (D,) int
            Window ``[start, stop)`` in reference pixels along ``spatial_axes``,
            pad included; may extend outside the image (those parts are padded).
        spatial_axes : str
            D axis letters giving the meaning of ``start`` and ``stop``.
        key : hashable
            Identifies ``collection`` within a dataset (e.g. its index), for
            the cache.

        Returns
        -------
        dict of str to numpy.ndarray
            Per modality (mask excluded), in its own dtype with exact stored
            values: the window mapped through the modality's placement
            (:meth:`ImageCollection.window_maps`; without metadata
            ``floor(start*m/n)``, ``max(1, round_half_up(size*m/n))`` on an
            axis where the reference has extent n and the modality m; for a
            modality in ``window``, its own size centred on the patch),
            non-spatial axes whole, axes ordered per ``output_axes``.
            C-contiguous, newly allocated.

        Raises
        ------
        TypeError
            ``start``/``stop`` not integers, ``spatial_axes`` not a string.
        ZarrsampleError
            Wrong lengths, ``stop <= start``, ``output_axes`` naming unknown
            modalities or dropping an axis whose window is longer than 1,
            ``window`` naming a modality the read does not return or sizes
            that do not fit ``spatial_axes``, ``pad_value`` not
            representable in a modality's dtype.
        ChunkReadError
            A storage chunk of the window could not be read or decoded
            (after ``retries`` for transient errors).

        Notes
        -----
        Storage chunks touched by the window are loaded once and kept in the
        chunk cache; the copy out of them costs O(window size). Chunks being
        loaded by :meth:`prefetch` are waited for, not loaded twice.
        """
        cache = self._cache_now()
        out: dict[str, np.ndarray] = {}
        for source in self._sources(collection, start, stop, spatial_axes, key):
            result = aligned_empty(output_shape(source, self.output_axes), source.image.dtype)
            view = image_view(source, result, self.output_axes)
            fill_window(cache, source, view, self.retry, self._constant(source))
            out[source.name] = result
        return out

    def read_into(
        self,
        collection: ImageCollection,
        start: Sequence[int] | np.ndarray,
        stop: Sequence[int] | np.ndarray,
        out: Mapping[str, np.ndarray],
        *,
        spatial_axes: str,
        key: Any = 0,
    ) -> None:
        """:meth:`read` into given arrays (e.g. the slots of a batch) instead of new ones.

        ``out`` maps every modality :meth:`read` returns to a writable array
        of the shape and dtype :meth:`read` would return (see
        :meth:`output_shapes`). A window inside one cached chunk is copied
        once, straight into its array.

        Raises
        ------
        ZarrsampleError
            A modality missing from ``out``, or an array of another shape or
            dtype (samples of different shapes cannot share a batch); and
            everything :meth:`read` raises.
        """
        cache = self._cache_now()
        for source in self._sources(collection, start, stop, spatial_axes, key):
            target = out.get(source.name)
            shape = output_shape(source, self.output_axes)
            if target is None or target.shape != shape or target.dtype != source.image.dtype:
                got = None if target is None else f"{target.shape} {target.dtype}"
                raise ZarrsampleError(
                    f"the window {list(map(int, start))}..{list(map(int, stop))} of modality "
                    f"{source.name!r} is {shape} {source.image.dtype}, but its batch slot is {got}: "
                    "samples of one batch must have one shape per modality"
                )
            view = image_view(source, target, self.output_axes)
            fill_window(cache, source, view, self.retry, self._constant(source))

    def output_shapes(
        self,
        collection: ImageCollection,
        start: Sequence[int] | np.ndarray,
        stop: Sequence[int] | np.ndarray,
        *,
        spatial_axes: str,
    ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of each modality :meth:`read` returns for this window (nothing read)."""
        return {
            s.name: (output_shape(s, self.output_axes), s.image.dtype)
            for s in self._sources(collection, start, stop, spatial_axes, None)
        }

    def chunk_requests(
        self,
        collection: ImageCollection,
        start: Sequence[int] | np.ndarray,
        stop: Sequence[int] | np.ndarray,
        *,
        spatial_axes: str,
        key: Any = 0,
    ) -> list[ChunkRequest]:
        """The storage chunks :meth:`read` of this window loads: ``(cache key, image, start, stop, nbytes)``.

        Images held in memory (numpy) have none. For a read-ahead that
        budgets bytes: pass them to :meth:`schedule`, and :meth:`pin` their
        keys while they are still to be read.
        """
        return window_requests(self._sources(collection, start, stop, spatial_axes, key))

    def schedule(self, requests: Sequence[ChunkRequest]) -> None:
        """Start loading these chunks in background threads (see :meth:`prefetch`).

        Chunks already cached or in flight are skipped; runs of neighbouring
        chunks of one image are loaded with one read each. A no-op when
        ``prefetch_workers`` is 0.
        """
        if self.prefetch_workers == 0 or not requests:
            return
        cache = self._cache_now()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.prefetch_workers, thread_name_prefix="zarrsample-prefetch"
                )
                # The threads end with the reader, dropping loads not started.
                weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)
            executor = self._executor
        for image, regions, keys in load_groups(requests, cache, RUN_BYTES):
            run = [key[-1] for key in keys]
            cache.schedule_group(keys, partial(read_run, image, regions, self.retry, run), executor)

    def pin(self, keys: Sequence[Any]) -> None:
        """Keep these chunks cached until :meth:`unpin` (see :meth:`._cache.ChunkCache.pin`)."""
        self._cache_now().pin(keys)

    def unpin(self, keys: Sequence[Any]) -> None:
        """Undo one :meth:`pin` of each key."""
        self._cache_now().unpin(keys)

    def prefetch(
        self,
        collection: ImageCollection,
        start: Sequence[int] | np.ndarray,
        stop: Sequence[int] | np.ndarray,
        *,
        spatial_axes: str,
        key: Any = 0,
    ) -> None:
        """Start loading, in background threads, the chunks later :meth:`read` calls need.

        Same parameters as :meth:`read`, except that ``start`` and ``stop``
        may also be ``(k, D)``: the windows of the next ``k`` reads. Returns
        at once; chunks already cached or in flight are skipped. Runs of
        neighbouring chunks (along the last axis) are loaded with one read
        each, which lets the storage library decode them concurrently. A
        no-op when ``prefetch_workers`` is 0. Load errors surface in the
        :meth:`read` that needs the chunk.
        """
        if self.prefetch_workers == 0:
            return
        starts = np.atleast_2d(np.asarray(start))
        stops = np.atleast_2d(np.asarray(stop))
        requests: list[ChunkRequest] = []
        for a, b in zip(starts, stops):
            requests += self.chunk_requests(collection, a, b, spatial_axes=spatial_axes, key=key)
        self.schedule(requests)

    # -- windows and assembly ---------------------------------------------------

    def _sources(
        self, collection: ImageCollection, start: Any, stop: Any, spatial_axes: str, key: Any
    ) -> Iterator[Source]:
        return window_sources(
            collection, start, stop, spatial_axes, key, padding_mode=self.padding_mode,
            output_axes=self.output_axes, window=self.window,
        )

    def _constant(self, source: Source) -> Any:
        """The fill of ``source``'s padded positions (``"constant"`` mode), else None."""
        if self.padding_mode != "constant" or not source.padded:
            return None
        dtype = source.image.dtype
        fill = self._fills.get(dtype)
        if fill is None:
            where = f" of modality {source.name!r}"
            fill = self._fills[dtype] = check_pad_value(self.pad_value, dtype, where=where)
        return fill
