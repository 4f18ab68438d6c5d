"""Stitcher: blend patch predictions into one output array, chunk by chunk, in bounded memory."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from .._checks import check_bool, check_int
from .._errors import ZarrsampleError
from ._stitch_blocks import (
    BlockStore,
    default_chunks,
    expected_counts,
    patch_weights,
    touched_blocks,
)
from ._stitch_checks import (
    Blend,
    as_array,
    as_positions,
    check_arrivals,
    check_blend,
    check_crop,
    check_patch,
    check_sigma,
    clip_windows,
    crop_per_axis,
    int_tuple,
)
from ._stitch_output import Levels, StitchOutput
from ._stitch_writer import BlockWriter

__all__ = ["Stitcher"]


class Stitcher:
    """Blend patch predictions back into one output array, chunk by chunk.

    Parameters
    ----------
    out : str, os.PathLike, zarr.Array or numpy.ndarray, optional
        A path: a new zarr v3 array is created there (never overwritten).
        A ``zarr.Array`` or a writeable numpy array of shape ``shape``: it is
        filled in place (numpy outputs are accumulated whole, in memory).
        None only with ``label_of``.
    shape : sequence of int
        The full output shape ``(*leading, *spatial)``. The last D axes are
        spatial, D being ``position.shape[-2]``; leading axes (channels,
        classes) are written whole.
    chunks : sequence of int, optional
        Chunk shape of a created array (one per axis of ``shape``); default:
        leading axes whole, 256 per spatial axis (64 in 3-D and more).
    dtype : str or numpy.dtype
        Element type of a created array (integer outputs are rounded).
    blend : {"mean", "gaussian", "max"}
        How overlapping contributions combine: the plain mean, a mean
        weighted by a separable gaussian centred on each cropped patch, or
        the elementwise maximum.
    crop : int or sequence of int
        Margin discarded from each side of each patch (per spatial axis)
        before blending; typically the sampler's ``pad``.
    sigma : float
        Gaussian width as a fraction of the cropped patch side.
    ome : bool
        With a path ``out``: create an OME-Zarr 0.5 image group (level
        ``"0"``, then ``"1"``... see ``levels``) instead of a bare array.
    axes : str, optional
        Axis letters of the output (``"CYX"``...): stored as zarr
        ``dimension_names`` and, with ``ome``, as OME-Zarr axes, in the order
        of ``"TCZYX"`` (default ``like.axes`` if it has ``len(shape)``
        letters, else the last letters of ``"TCZYX"``).
    positions : (n, D, 2) int array, optional
        Every window that will be added (e.g. from a plan). Each output
        chunk is then written, and its memory freed, as soon as its last
        patch arrives.
    max_bytes : int
        Budget of the in-memory accumulators; least recently used ones
        beyond it are spilled to a temporary directory and merged later.
    write_threads : int
        Background threads that store finished chunks of a zarr output
        (0: in the calling thread); see Notes.
    like : Image, optional
        With ``ome``: each spatial axis (``Z``, ``Y``, ``X``) takes the unit,
        scale and translation of ``like``'s axis of that letter (region of
        interest included); if their extents differ, the output spans the
        same physical extent (scale times ``like``'s extent over the
        output's). Other axes, and all without ``like``: scale 1, no shift.
    levels : "auto" or int, optional
        OME-Zarr pyramid levels, written by :meth:`finalize`: ``"auto"``
        halves ``Z``, ``Y``, ``X`` until a level fits in one chunk; an int
        gives that many (default 1). A label has the image's number.
    label_of : str or os.PathLike, optional
        A local OME-Zarr image group (0.4 on zarr v2, 0.5 on zarr v3): the
        output is its label ``labels/<name>``, in its version, with its
        axes, placement and number of levels (``shape``: the image's
        spatial sizes, 1 or the image's size on the others; ``chunks``:
        default the image's); ``out`` and ``like`` stay None.
    name : str, optional
        The label's name; it must not exist yet.

    Raises
    ------
    TypeError, ZarrsampleError
        A parameter of the wrong type or value (the message names it).
    FileExistsError
        ``out`` is a path where something already exists, or ``name`` is
        already a label of ``label_of``.

    Notes
    -----
    ``position`` is what ``PatchDataset(..., return_positions=True)`` gives:
    ``[start, stop)`` in output pixels per spatial axis, pad included,
    possibly outside the output; parts outside the output are dropped.
    Output pixels no patch covered are 0. The result does not depend on the
    order patches arrive in (up to float rounding).

    Memory: each touched output chunk costs ``b = 8 * (L + 1) * P`` bytes
    (float64 sums and weights, ``L`` leading elements per pixel, ``P``
    pixels per chunk); at most ``max_bytes`` of them stay in memory, the
    least recently used beyond it spill to disk. ``positions`` costs 16
    bytes per output chunk. In plan order (tile after tile, C order) about
    ``(ceil(W / c) + ceil((t + o) / h)) * b`` bytes stay pending in 2-D:
    ``W`` the output width, ``c`` x ``h`` the chunk width and height, ``t``
    the tile height, ``o`` how far windows reach past their tile. Chunks on
    a tile-row boundary get patches from both tile rows and must wait for
    the next one, so a row of them (in n-D a slab across every axis but the
    first) is inherent to that order; ``max_bytes`` bounds it by spilling.

    Work: one vectorised update per (patch, output chunk touched). Without
    ``positions`` every chunk is written in :meth:`finalize`. Finished
    chunks are normalised at once and stored in batches of up to 8 (zarr
    encodes and writes them concurrently), in ``write_threads`` threads
    while patches keep arriving; at most ``write_threads + 2`` batches wait.
    :meth:`finalize` waits for every write and raises the first write error
    (so does the next :meth:`add`). A patch added after its chunks were
    written (one not listed in ``positions``) raises ``ZarrsampleError``.
    A ``with`` block finalizes on a normal exit and only cleans up (threads,
    temporary files) after an exception.

    OME-Zarr levels halve the spatial axes (``ceil`` sizes) by the mean for
    float outputs, the first pixel (``[::2]``) for integer ones, in chunk
    tiles (bounded memory); level ``k`` has ``scale * 2**k`` and
    ``translation + (2**k - 1) / 2 * scale`` (pixel centres, corners
    aligned). A label is listed in ``labels`` once complete; nothing else of
    the image changes but its consolidated metadata, if any (attributes
    kept). Float labels are written, but the 0.5 validators refuse them.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.zeros((1, 6), np.float32)
    >>> s = Stitcher(out, shape=(1, 6), crop=1)
    >>> s.add(np.full((1, 4), 2.0), [[0, 4]])                  # one patch, D = 1
    >>> s.add(np.full((2, 1, 4), 4.0), [[[2, 6]], [[4, 8]]])   # a batch of two
    >>> s.finalize()                                           # pixel 0: no patch
    array([[0., 2., 2., 4., 4., 4.]], dtype=float32)
    >>> s.stats()["chunks_written"]
    1
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    blend: str
    sigma: float
    max_bytes: int
    write_threads: int
    leading: tuple[int, ...]
    spatial: np.ndarray

    def __init__(
        self,
        out: Any = None,
        *,
        shape: Sequence[int],
        chunks: Sequence[int] | None = None,
        dtype: Any = "float32",
        blend: Blend = "mean",
        crop: int | Sequence[int] = 0,
        sigma: float = 0.125,
        ome: bool = False,
        axes: str | None = None,
        positions: Any = None,
        max_bytes: int = 256 * 2**20,
        write_threads: int = 1,
        like: Any = None,
        levels: Levels = None,
        label_of: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.shape = int_tuple(shape, "shape", 1)
        if not self.shape:
            raise ZarrsampleError("shape must have at least one axis, got ()")
        self.blend: str = check_blend(blend)
        self.sigma = check_sigma(sigma)
        self._crop: int | tuple[int, ...] = check_crop(crop)
        self.max_bytes = check_int(max_bytes, "max_bytes")
        self.write_threads = check_int(write_threads, "write_threads")
        self._output = output = StitchOutput(
            out, shape=self.shape, chunks=chunks, dtype=dtype, ome=check_bool(ome, "ome"), axes=axes,
            like=like, levels=levels, label_of=label_of, name=name,
        )
        self._path, self._array, self._chunks, self.dtype = output.path, output.array, output.chunks, output.dtype
        if self.dtype.kind not in "iuf":
            raise ZarrsampleError(f"dtype must be an integer or float type, got {self.dtype}")
        self._positions = None if positions is None else as_positions(positions, "positions", True)
        self._lock = threading.Lock()
        self._blocks = BlockStore(self.max_bytes, self.blend, spill=not isinstance(self._array, np.ndarray))
        self._writer = BlockWriter(None, blend=self.blend, dtype=self.dtype, threads=0)  # see _setup
        self._counts = {"patches": 0, "chunks_written": 0}
        self._ndim: int | None = None
        self._closed = self._finalized = False
        if self._positions is not None:
            self._setup(self._positions.shape[1])
        elif self._path is not None and self._chunks is not None:
            self._create()

    # -- geometry, set once the number of spatial axes is known -----------------------------

    def _create(self, ndim: int | None = None) -> None:
        if self._array is not None or self._path is None:
            return
        chunks = self._chunks or default_chunks(self.shape, len(self.shape) if ndim is None else ndim)
        self._array = self._output.create(chunks)

    def _setup(self, d: int) -> None:
        if self._ndim is not None:
            if d != self._ndim:
                raise ZarrsampleError(
                    f"position must have {self._ndim} spatial axes like the previous ones, got {d}"
                )
            return
        if d > len(self.shape):
            raise ZarrsampleError(
                f"position has {d} spatial axes but shape={self.shape} has {len(self.shape)} axes"
            )
        crop = crop_per_axis(self._crop, d)
        self._create(d)
        self._ndim, self._crop_d = d, np.asarray(crop, np.int64)
        self.leading, self.spatial = self.shape[: len(self.shape) - d], np.asarray(self.shape[-d:], np.int64)
        numpy_out = isinstance(self._array, np.ndarray)  # one block, stored in the calling thread
        grid_chunks = None if numpy_out else getattr(self._array, "shards", None) or self._array.chunks
        self._block = block = self.spatial if grid_chunks is None else np.asarray(grid_chunks[-d:], np.int64)
        self._writer = BlockWriter(self._array, blend=self.blend, dtype=self.dtype,
                                   threads=0 if numpy_out else self.write_threads)
        self._grid = tuple(int(g) for g in -(-self.spatial // block))
        self._written = np.zeros(self._grid, bool)
        self._expected: np.ndarray | None = None
        if self._positions is not None:
            lo, hi = self._clip(self._positions, "positions")
            self._expected = expected_counts(lo // block, (hi - 1) // block, self._grid)
            self._arrived = np.zeros(self._grid, np.int64)

    def _clip(self, pos: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Cropped windows clipped to the output, ``(lo, hi)`` each ``(B, D)``; errors if empty."""
        return clip_windows(
            pos, name, crop=self._crop, crop_d=self._crop_d, spatial=self.spatial, shape=self.shape
        )

    # -- adding patches ----------------------------------------------------------------------

    def add(self, patch: Any, position: Any) -> None:
        """Blend one patch, or a batch, into the output.

        Parameters
        ----------
        patch : array-like
            ``(*leading, *window)`` for one patch or ``(B, *leading, *window)``
            for a batch; numpy, or anything ``numpy.asarray`` converts (CPU
            torch tensors, TensorFlow eager tensors, jax arrays).
        position : array-like of int
            ``(D, 2)`` ``[start, stop)`` per spatial axis, or ``(B, D, 2)``;
            ``stop - start`` must equal ``window``.

        Raises
        ------
        ZarrsampleError
            Shapes that disagree (the message gives the expected shape), a
            window wholly outside the output after ``crop``, or a patch that
            touches an already written chunk (not listed in ``positions``).
        """
        raw = as_array(position, "position")
        pos, batched = as_positions(raw, "position"), raw.ndim == 3
        data = as_array(patch, "patch")
        with self._lock:
            self._check_open()
            self._setup(pos.shape[1])
            self._writer.check()
            if len(pos) == 0:
                if data.shape[:1] != (0,):
                    raise ZarrsampleError(f"patch must have shape (0, ...) for an empty batch, got {data.shape}")
                return
            given = pos.tolist() if batched else pos[0].tolist()
            data = check_patch(data, pos, given, batched=batched, leading=self.leading, shape=self.shape)
            window = pos[0, :, 1] - pos[0, :, 0]
            lo, hi = self._clip(pos, "position")
            weights = patch_weights((window - 2 * self._crop_d).tolist(), blend=self.blend, sigma=self.sigma)
            tasks = touched_blocks(lo, hi, self._block, self._grid)
            if self._expected is not None:
                check_arrivals(tasks, self._arrived, self._expected, self._grid, given)
            for b, key, region in tasks:
                self._accumulate(data[b], pos[b, :, 0], key, region, weights)
                if self._expected is not None:
                    self._arrived.reshape(-1)[key] += 1
                    if self._arrived.reshape(-1)[key] == self._expected.reshape(-1)[key]:
                        self._write(key)
            self._counts["patches"] += len(pos)

    def _block_bounds(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        start = np.asarray(np.unravel_index(key, self._grid), np.int64) * self._block
        return start, np.minimum(start + self._block, self.spatial)

    def _accumulate(
        self, patch: np.ndarray, origin: np.ndarray, key: int, region: np.ndarray, weights: list[np.ndarray]
    ) -> None:
        block_start, block_stop = self._block_bounds(key)
        block = self._blocks.get(key, self.leading, tuple((block_stop - block_start).tolist()))
        block.add(patch, region - origin, region - block_start, self.blend, weights,
                  region - (origin + self._crop_d))

    def _write(self, key: int) -> None:
        """Normalise a block (memory and spill merged) and write it to the output."""
        block = self._blocks.pop(key)
        start, stop = self._block_bounds(key)
        lead = (slice(None),) * len(self.leading)
        self._writer.submit(lead + tuple(slice(a, b) for a, b in zip(start.tolist(), stop.tolist())),
                            block, self.leading + tuple((stop - start).tolist()))
        self._written.reshape(-1)[key] = True
        self._counts["chunks_written"] += 1

    # -- finishing -----------------------------------------------------------------------------

    def finalize(self) -> Any:
        """Write every pending chunk and return the output array.

        Returns
        -------
        zarr.Array or numpy.ndarray
            The output (for ``ome=True``, the level ``"0"`` array). Calling
            it again returns the same array.

        Notes
        -----
        Chunks still pending (and spilled ones, read back one at a time)
        are normalised and written; the temporary directory is removed.
        Chunks of a given array (numpy or zarr) that no patch touched are
        set to 0. Returns once every background write is done.

        Raises
        ------
        Exception
            The first error of a chunk write (e.g. ``OSError``), as raised.
        """
        with self._lock:
            if self._finalized:
                return self._array
            self._check_open()
            if self._ndim is None:  # nothing added: any split into leading and spatial axes will do
                self._setup(len(self._crop) if isinstance(self._crop, tuple) else len(self.shape))
            for key in sorted(self._blocks.keys()):
                self._write(key)
            if self._path is None:
                for key in np.flatnonzero(~self._written.reshape(-1)).tolist():
                    self._write(key)
            self._writer.wait()
            self._writer.close()
            self._blocks.close()
            self._output.finish()  # OME-Zarr: reduced levels, metadata, label registration
            self._finalized = True
            return self._array

    def close(self) -> None:
        """Remove temporary files and drop pending accumulators (without writing them)."""
        with self._lock:
            self._writer.close()
            self._blocks.close()
            self._closed = True

    def __enter__(self) -> Stitcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and not self._closed:
                self.finalize()
        finally:
            self.close()

    def _check_open(self) -> None:
        if self._finalized or self._closed:
            raise ZarrsampleError("this Stitcher is finalized or closed: create a new one to stitch again")

    @property
    def spill_path(self) -> str | None:
        """The temporary directory of spilled accumulators (None when there is none)."""
        return self._blocks.spill.path

    def stats(self) -> dict[str, int]:
        """Counters: ``patches``, ``chunks_written``, ``pending_chunks``, ``pending_bytes``,
        ``peak_bytes`` (of in-memory accumulators), ``spilled_chunks``, ``spills``."""
        with self._lock:
            blocks = self._blocks
            return {**self._counts, "pending_bytes": blocks.pending_bytes, "peak_bytes": blocks.peak_bytes,
                    "pending_chunks": len(blocks.memory), "spilled_chunks": len(blocks.spill),
                    "spills": blocks.spill.spills}

    def __repr__(self) -> str:
        where = self._path if self._path is not None else type(self._array).__name__
        return f"Stitcher({where!s}, shape={self.shape}, blend={self.blend!r}, crop={self._crop})"
