"""Image: a read-only n-D image whose array handle is (re)opened lazily, per process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .._errors import ZarrsampleError
from ._direct import ChunkFiles, chunk_files
from ._handles import (
    HTTP_TIMEOUT,
    HTTP_TIMEOUT_ENV,
    TS_LOW_SPEED_ENV,
    http_timeout,
    open_spec,
    spec_store,
    ts_deadline,
    ts_read_into,
    ts_result,
    url_store,
)
from ._placement import Placement, micrometres
from ._roi import selection_bounds
from ._shards import ShardedChunks, sharded_chunks

# Re-exported: what other modules and older pickles know from here.
__all__ = [
    "HTTP_TIMEOUT", "HTTP_TIMEOUT_ENV", "TS_LOW_SPEED_ENV", "Image", "http_timeout", "spec_store", "url_store",
]


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

    @property
    def is_sharded(self) -> bool:
        """Whether the stored array is a sharded zarr v3 array (``chunks`` are then its inner chunks).

        Opens the array (in this process) the first time it is asked.
        """
        sharded = self._cache.get("sharded")
        if sharded is None:
            sharded = self._cache["sharded"] = _is_sharded(self._array(), self.backend)
        return bool(sharded)

    def _array(self) -> Any:
        """The array handle, (re-)opened in this process if needed."""
        cache = self._cache
        if self._spec is not None and cache.get("pid") != os.getpid():
            cache["handle"] = open_spec(self._spec, self.name)
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
        library's decoding buffers. A selection inside one chunk of a local
        zarr array of a common layout is read from the chunk's file and
        decoded by numcodecs directly (:mod:`._direct`), the same values
        without zarr-python's per-call overhead.

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
            out, future = ts_read_into(array, index)
            ts_result(future, ts_deadline(self._spec), self.name)
            return np.asarray(out, dtype=self.dtype)
        if self.backend == "numpy":
            return np.array(array[index], dtype=self.dtype, copy=True)
        direct = self._chunk_files()
        grid = direct.chunk_of(index) if direct is not None else None
        if grid is not None:
            return direct.read(index, grid)  # type: ignore[union-attr]
        sharded = self._sharded()
        if sharded is not None and sharded.chunk_of(index) is not None:
            result = sharded.read_many([index])[0]
            if isinstance(result, Exception):
                raise result
            return result
        return np.asarray(array[index], dtype=self.dtype)

    def _per_array(self, name: str, make: Any) -> Any:
        """``make(array)`` of the zarr array, kept until the array is re-opened (None on tensorstore)."""
        if self.backend != "zarr":
            return None
        array = self._array()
        found = self._cache.get(name, False)
        if found is False or found[0] is not array:
            found = self._cache[name] = (array, make(array))
        return found[1]

    def _sharded(self) -> ShardedChunks | None:
        """The shard-aware reader of a sharded zarr v3 array (see :mod:`._shards`), or None."""
        return cast("ShardedChunks | None", self._per_array("shards", sharded_chunks))

    @property
    def shard_chunks(self) -> tuple[int, ...] | None:
        """Inner chunks per shard along each axis of a sharded array read shard-aware, else None.

        Loads of inner chunks of one shard are best grouped: zarrsample's own
        shard reader (zarr backend) then fetches one range per run of chunks
        stored side by side, and tensorstore reads the shard's index once
        per read call.
        """
        if self.backend == "tensorstore" and self.is_sharded:
            layout = self._array().chunk_layout
            return tuple(w // r for w, r in zip(layout.write_chunk.shape, layout.read_chunk.shape))
        sharded = self._sharded()
        return None if sharded is None else sharded.per_shard

    @property
    def shard_index_reads(self) -> int:
        """Shard indexes this process fetched for reads of this image (each shard's at most once)."""
        found = self._cache.get("shards")
        return 0 if not found or found[1] is None else found[1].index_reads

    def _chunk_files(self) -> ChunkFiles | None:
        """The direct chunk decoder of a local zarr array (see :mod:`._direct`), or None."""
        return cast("ChunkFiles | None", self._per_array("direct", chunk_files))

    def read_many(self, selections: list[tuple[slice, ...]]) -> list[np.ndarray | Exception]:
        """Read several selections concurrently; each result is an array or its own error.

        Same rules as :meth:`read` per selection. One failing selection (e.g.
        a chunk whose request failed) does not fail the others, so only it
        needs to be read again. zarr reads them in one event-loop call,
        tensorstore with one read future each.
        """
        return list(self.iter_many(selections))

    def iter_many(self, selections: list[tuple[slice, ...]]) -> Iterator[np.ndarray | Exception]:
        """:meth:`read_many`'s results in order, each handed out as soon as it is read.

        All reads start at once where the backend reads concurrently
        (tensorstore futures); locally decoded zarr chunks are decoded one
        after the other, as they are consumed.
        """
        indices = []
        for selection in selections:
            start, stop = selection_bounds(selection, self.shape)
            indices.append(tuple(slice(o + a, o + b) for o, a, b in zip(self.origin, start, stop)))
        array = self._array()
        if self.backend == "tensorstore":
            deadline = ts_deadline(self._spec)
            reads = [ts_read_into(array, index) for index in indices]
            for out, future in reads:
                try:
                    ts_result(future, deadline, self.name)
                    result: np.ndarray | Exception = np.asarray(out, dtype=self.dtype)
                except Exception as exc:  # noqa: BLE001 - returned to the caller
                    result = exc
                yield result
            return
        if self.backend == "zarr" and (grids := self._direct_grids(indices)) is not None:
            direct = self._chunk_files()
            for index, grid in zip(indices, grids):
                try:
                    result = np.asarray(direct.read(index, grid), dtype=self.dtype)  # type: ignore[union-attr]
                except Exception as exc:  # noqa: BLE001 - returned to the caller
                    result = exc
                yield result
            return
        results: list[Any]
        if hasattr(array, "read_many"):  # a TIFF page read tile by tile
            results = array.read_many(indices)
        elif self.backend == "zarr" and self._sharded_all(indices):
            results = self._sharded().read_many(indices)  # type: ignore[union-attr]
        elif self.backend == "zarr":
            from zarr.core.sync import sync

            async def gather() -> list[Any]:
                jobs = (array._async_array.getitem(index) for index in indices)
                return await asyncio.gather(*jobs, return_exceptions=True)

            results = sync(gather())
        else:
            results = [array[index] for index in indices]
        for r in results:
            # zarr and tensorstore hand out new arrays: no copy unless the dtype differs
            yield r if isinstance(r, Exception) else np.asarray(r, dtype=self.dtype)

    @property
    def independent_chunks(self) -> bool:
        """Whether chunks load best one per call, not in runs.

        True for local zarr arrays whose chunks are decoded directly
        (:mod:`._direct`): a run read in one call decodes its chunks one
        after the other in one thread, so the reader's threads load single
        chunks instead, in the order they are needed. True for local files
        read by tensorstore too (unsharded): a run gains nothing from one
        call there, and each chunk in flight holds tensorstore's own decode
        buffer beside ours. Over a network, runs read together hide latency.
        """
        if self.backend == "tensorstore":
            spec = self._spec
            local = spec is not None and spec[1].get("kvstore", {}).get("driver") == "file"
            return local and not self.is_sharded
        return self.backend == "zarr" and self._chunk_files() is not None

    def _sharded_all(self, indices: list[tuple[slice, ...]]) -> bool:
        sharded = self._sharded()
        return sharded is not None and all(sharded.chunk_of(index) is not None for index in indices)

    def _direct_grids(self, indices: list[tuple[slice, ...]]) -> list[tuple[int, ...]] | None:
        """The chunk of each stored region when every one lies in one chunk decoded directly, else None."""
        direct = self._chunk_files()
        grids = [direct.chunk_of(index) for index in indices] if direct is not None else [None]
        return None if any(g is None for g in grids) else grids  # type: ignore[return-value]


def _is_sharded(array: Any, backend: str) -> bool:
    if backend == "zarr":
        return getattr(array, "shards", None) is not None
    if backend == "tensorstore":
        codecs = array.spec().to_json().get("metadata", {}).get("codecs", [])
        return any(isinstance(c, dict) and c.get("name") == "sharding_indexed" for c in codecs)
    return False


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


