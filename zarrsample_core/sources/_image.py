"""Image: a read-only n-D image whose array handle is (re)opened lazily, per process."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.storage import FsspecStore, LocalStore

from .._errors import ZarrsampleError
from ._placement import Placement, micrometres
from ._roi import selection_bounds
from ._tensorstore import open_tensorstore

__all__ = ["HTTP_TIMEOUT", "HTTP_TIMEOUT_ENV", "Image", "http_timeout", "spec_store", "url_store"]


@dataclass(frozen=True, eq=False, repr=False)
class Image:
    """A read-only, lazily opened n-D image (or one pyramid level of one).

    Create with :func:`._io.open_image`. All coordinates given to
    :meth:`read` are relative to the region of interest, whose start in the
    stored array is ``origin``.

    Attributes
    ----------
    name : str
        Source path or URL plus the array path inside it, for messages.
    axes : str
        One upper-case letter per dimension, e.g. ``"CYX"``.
    shape : tuple of int
        Shape of the image after the region of interest.
    dtype : numpy.dtype
        Element type of :meth:`read` results (native byte order).
    chunks : tuple of int
        Storage chunk shape of the stored array (the inner chunk when the
        zarr v3 array is sharded; the full shape for numpy sources). Chunk
        boundaries lie at multiples of ``chunks`` in stored coordinates,
        i.e. at ``k * chunks - origin`` in image coordinates.
    origin : tuple of int
        Start of the region of interest in the stored array.
    level : int
        Pyramid level opened (0 for arrays that are not OME-Zarr levels).
    levels : tuple of tuple of int
        Stored shape of every pyramid level, finest first (one entry for
        plain arrays).
    backend : str
        ``"zarr"``, ``"tensorstore"`` or ``"numpy"``.
    placement : tuple of Placement or None
        Each axis' pixel size and the position of pixel 0 of the stored
        array, from the source's metadata (OME-Zarr coordinate
        transformations, TIFF pixel sizes); None when the source gives none.
        Modalities are aligned through it (see :class:`ImageCollection`).

    Notes
    -----
    Pickling and copying cost O(1) and carry no open handle for sources on a
    local path, a URL (http(s), ``s3://``, ``gs://``, ... with its storage
    options) or a TIFF file (however they were given: a path, a
    ``zarr.Array`` or tifffile's store): the array is re-opened on
    first use, and again whenever ``os.getpid()`` changed (after
    ``fork()``), so file handles, tensorstore and fsspec objects never cross
    process boundaries. numpy arrays and zarr arrays in a ``MemoryStore``
    are pickled with their content (a worker reads a copy); an array in a
    store that can be neither re-opened nor copied raises a
    ``ZarrsampleError`` when pickled.

    tensorstore refuses to run in a ``fork()``ed child once its parent has
    used it (the child aborts). ``backend="tensorstore"`` therefore opens the
    array on the first :meth:`read`, not in :func:`._io.open_image`; a child forked
    after a tensorstore read in the parent gets a ``ZarrsampleError`` instead
    of an abort. Use the ``"spawn"`` or ``"forkserver"`` start method for
    worker processes when the parent reads with tensorstore.
    """

    name: str
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    origin: tuple[int, ...]
    level: int
    levels: tuple[tuple[int, ...], ...]
    backend: str
    placement: tuple[Placement, ...] | None = None
    _spec: tuple[Any, ...] | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        """Number of dimensions (``len(axes)``)."""
        return len(self.shape)

    @property
    def pixel_size(self) -> dict[str, float | None]:
        """Pixel size per spatial axis (``Z``, ``Y``, ``X`` present), None where unknown.

        In micrometres when the metadata names a length unit; as written
        (taken as micrometres) when it names none.

        Examples
        --------
        >>> from zarrsample_core import open_image
        >>> open_image(np.zeros((4, 4)), axes="YX").pixel_size
        {'Y': None, 'X': None}
        """
        sizes: dict[str, float | None] = {}
        for i, axis in enumerate(self.axes):
            if axis not in "ZYX":
                continue
            where = None if self.placement is None else self.placement[i]
            if where is None:
                sizes[axis] = None
                continue
            if where.unit == "pixel":  # sized relative to another level only
                sizes[axis] = None
                continue
            factor = micrometres(where.unit) if where.unit is not None else None
            sizes[axis] = float(where.scale * factor) if factor is not None else float(where.scale)
        return sizes

    def __repr__(self) -> str:
        return (
            f"Image(name={self.name!r}, axes={self.axes!r}, shape={self.shape}, "
            f"dtype={self.dtype}, chunks={self.chunks}, origin={self.origin}, "
            f"level={self.level}, levels={self.levels}, backend={self.backend!r}"
            + (f", pixel_size={self.pixel_size}" if self.placement is not None else "")
            + ")"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._spec is None and self.backend != "numpy":
            _check_sendable(self._cache["handle"], self.name)
        state["_cache"] = {} if self._spec is not None else dict(self._cache)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def _array(self) -> Any:
        """The array handle, (re-)opened in this process if needed."""
        cache = self._cache
        if self._spec is not None and cache.get("pid") != os.getpid():
            cache["handle"] = _open_spec(self._spec, self.name)
            cache["pid"] = os.getpid()
        return cache["handle"]

    def read(self, selection: tuple[slice, ...] | None = None) -> np.ndarray:
        """Read pixels.

        Parameters
        ----------
        selection : tuple of slice, optional
            One slice per axis, in ``axes`` order and image (ROI-relative)
            coordinates. Bounds are None or ints in ``[0, shape[i]]`` with
            ``start <= stop``; ``step`` is None or 1. None reads everything.

        Returns
        -------
        numpy.ndarray
            Shape ``stop - start`` per axis, dtype ``self.dtype``, exact
            stored values. Always a new array (never a view of the source).

        Raises
        ------
        TypeError
            ``selection`` is not a tuple of slices.
        ZarrsampleError
            Wrong number of slices, a step other than 1, or bounds outside
            ``[0, shape]``.

        Notes
        -----
        One zarr (or tensorstore) read per call, which decodes every chunk
        the selection touches; memory is the output array plus the
        library's decoding buffers.

        Examples
        --------
        >>> from zarrsample_core import open_image
        >>> image = open_image(np.arange(12).reshape(3, 4), axes="YX", roi="(1,1):(2,3)")
        >>> image.read((slice(0, 1), slice(None)))
        array([[5, 6, 7]])
        """
        start, stop = selection_bounds(selection, self.shape)
        index = tuple(slice(o + a, o + b) for o, a, b in zip(self.origin, start, stop))
        array = self._array()
        if self.backend == "tensorstore":
            return np.asarray(array[index].read().result(), dtype=self.dtype)
        if self.backend == "numpy":
            return np.array(array[index], dtype=self.dtype, copy=True)
        return np.asarray(array[index], dtype=self.dtype)

    def read_many(self, selections: list[tuple[slice, ...]]) -> list[np.ndarray | Exception]:
        """Read several selections concurrently; each result is an array or its own error.

        Same rules as :meth:`read` per selection. One failing selection (e.g.
        a chunk whose request failed) does not fail the others, so only it
        needs to be read again. zarr reads them in one event-loop call,
        tensorstore with one read future each.
        """
        indices = []
        for selection in selections:
            start, stop = selection_bounds(selection, self.shape)
            indices.append(tuple(slice(o + a, o + b) for o, a, b in zip(self.origin, start, stop)))
        array = self._array()
        results: list[Any]
        if self.backend == "tensorstore":
            futures = [array[index].read() for index in indices]
            results = []
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as exc:  # noqa: BLE001 - returned to the caller
                    results.append(exc)
        elif hasattr(array, "read_many"):  # a TIFF page read tile by tile
            results = array.read_many(indices)
        elif self.backend == "zarr":
            from zarr.core.sync import sync

            async def gather() -> list[Any]:
                jobs = (array._async_array.getitem(index) for index in indices)
                return await asyncio.gather(*jobs, return_exceptions=True)

            results = sync(gather())
        else:
            results = [array[index] for index in indices]
        return [r if isinstance(r, Exception) else np.array(r, dtype=self.dtype) for r in results]


#: Stores that carry their content when pickled: a copy reads the same pixels.
_SENT_BY_VALUE = ("MemoryStore", "FsspecStore", "ZipStore")


def _check_sendable(array: Any, name: str) -> None:
    """Refuse to pickle an array whose store can neither be re-opened elsewhere nor copied."""
    store: Any = getattr(array, "store", None)
    while hasattr(store, "_store") and type(store).__name__ not in _SENT_BY_VALUE:
        store = store._store  # wrapper stores (logging, latency, ...)
    kind = type(store).__name__
    if kind not in _SENT_BY_VALUE:
        raise ZarrsampleError(
            f"{name} cannot be sent to another process (a DataLoader worker, an executor): it "
            f"is in a {kind}, which zarrsample cannot re-open there; open it from a path or URL, "
            "or pass a numpy array"
        )


def _native(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype


#: Seconds an HTTP(S) request may wait to connect or for more data before it
#: fails (as a transient error: ``on_error="retry"`` retries it).
HTTP_TIMEOUT_ENV = "ZARRSAMPLE_HTTP_TIMEOUT"
HTTP_TIMEOUT = 60.0


def http_timeout() -> float:
    """The HTTP timeout in seconds: ``$ZARRSAMPLE_HTTP_TIMEOUT``, else :data:`HTTP_TIMEOUT`."""
    text = os.environ.get(HTTP_TIMEOUT_ENV)
    if text is None:
        return HTTP_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ZarrsampleError(f"${HTTP_TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


def url_store(url: str, storage_options: dict[str, Any] | None = None) -> FsspecStore:
    """A read-only fsspec store at ``url`` with fsspec's ``storage_options`` for its protocol.

    http(s) requests time out after :func:`http_timeout` unless the options
    set ``client_kwargs["timeout"]``: without it a server that accepts a
    request and never answers would block a read for aiohttp's default five
    minutes.
    """
    options = dict(storage_options or {})
    if url.startswith(("http://", "https://")) and "timeout" not in options.get("client_kwargs", {}):
        import aiohttp

        seconds = http_timeout()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
        options["client_kwargs"] = {**options.get("client_kwargs", {}), "timeout": timeout}
    return FsspecStore.from_url(url, storage_options=options or None, read_only=True)


def spec_store(spec: tuple[Any, ...]) -> Any:
    """A new read-only store for a ``("zarr", kind, root, path, format[, storage_options])`` spec."""
    kind, root = spec[1], spec[2]
    options = spec[5] if len(spec) > 5 else None  # specs pickled before storage options had five
    return LocalStore(root, read_only=True) if kind == "file" else url_store(root, options)


def _open_spec(spec: tuple[Any, ...], name: str) -> Any:
    """Open a read-only array handle from a picklable spec."""
    if spec[0] == "tiff":
        from ._tiff import open_tiff_level

        _, path, series, level = spec
        return open_tiff_level(path, series, level)
    if spec[0] == "zarr":
        return zarr.open_array(store=spec_store(spec), path=spec[3], mode="r", zarr_format=spec[4])
    return open_tensorstore(spec, name)
