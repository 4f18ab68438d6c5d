"""Whole chunks of local zarr arrays, read and decoded without zarr-python's event loop.

zarr-python 3 reads a chunk through its asynchronous codec pipeline, driven
from a synchronous call: several milliseconds of Python per chunk, above
the decode itself. For the common layouts of a local array (zarr v2 or v3,
one compressor among zstd, blosc, gzip and none, no filters, C order, no
sharding) a chunk is its file's bytes through one numcodecs decoder, which
releases the GIL: :class:`ChunkFiles` does exactly that, so that the
reader's threads decode in parallel. Every other layout, store or selection
goes through zarr-python as before (:func:`chunk_files` returns None).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._buffers import take

__all__ = ["ChunkFiles", "chunk_files", "decode_region"]


def _v3_decoder(codecs: Sequence[Any]) -> tuple[Any, str | None] | None:
    """``(numcodecs decoder or None, endian)`` for [bytes, optional compressor], else None."""
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

    if not codecs or not isinstance(codecs[0], BytesCodec) or len(codecs) > 2:
        return None
    declared: Any = codecs[0].endian
    endian: str | None = getattr(declared, "value", declared)
    if len(codecs) == 1:
        return None, endian
    import numcodecs  # type: ignore[import-untyped]

    decoders = {ZstdCodec: numcodecs.Zstd, BloscCodec: numcodecs.Blosc, GzipCodec: numcodecs.GZip}
    make = decoders.get(type(codecs[1]))
    return (make(), endian) if make is not None else None


def chunk_files(array: Any) -> ChunkFiles | None:
    """A :class:`ChunkFiles` for a zarr-python array whose chunks it can decode, else None."""
    try:
        from zarr.storage import LocalStore
    except ImportError:  # pragma: no cover - zarr is a dependency
        return None
    store, metadata = getattr(array, "store", None), getattr(array, "metadata", None)
    if not isinstance(store, LocalStore) or metadata is None or getattr(array, "shards", None) is not None:
        return None
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf" or dtype.hasobject:
        return None
    if metadata.zarr_format == 2:
        if metadata.filters or metadata.order != "C":
            return None
        decoder, stored = metadata.compressor, dtype  # v2 dtypes carry their byte order
    else:
        found = _v3_decoder(metadata.codecs)
        if found is None or type(metadata.chunk_grid).__name__ != "RegularChunkGrid":
            return None
        decoder, endian = found
        stored = dtype.newbyteorder("<" if endian == "little" else ">") if endian else dtype
    fill = array.fill_value
    return ChunkFiles(
        Path(store.root, array.path), tuple(array.chunks), tuple(array.shape), stored, decoder,
        0 if fill is None else fill, metadata.encode_chunk_key,
    )


class ChunkFiles:
    """Decode whole chunks of a local array from their files (thread-safe, holds no open file).

    Parameters
    ----------
    root : Path
        The array's directory.
    chunks, shape : tuple of int
        Chunk shape and array shape.
    stored : numpy.dtype
        The dtype as stored (byte order included).
    decoder : numcodecs codec or None
        Decompresses a chunk file's bytes.
    fill : scalar
        Value of a chunk without a file.
    encode_key : callable
        Chunk grid index -> key relative to ``root``.
    """

    def __init__(
        self, root: Path, chunks: tuple[int, ...], shape: tuple[int, ...], stored: np.dtype, decoder: Any,
        fill: Any, encode_key: Any,
    ) -> None:
        self.root, self.chunks, self.shape = root, chunks, shape
        self.stored, self.decoder, self.fill, self.encode_key = stored, decoder, fill, encode_key

    def chunk_of(self, index: tuple[slice, ...]) -> tuple[int, ...] | None:
        """The grid index of the one chunk holding the stored region ``index``, else None."""
        grid = []
        for s, c in zip(index, self.chunks):
            first = s.start // c
            if (s.stop - 1) // c != first:
                return None
            grid.append(first)
        return tuple(grid)

    def read(self, index: tuple[slice, ...], grid: tuple[int, ...]) -> np.ndarray:
        """The stored region ``index`` (inside chunk ``grid``) as a new native-order array.

        Raises
        ------
        OSError
            The chunk file cannot be read (a missing file is the fill value).
        ValueError, RuntimeError
            Its bytes do not decode to one chunk (the decoder's error, or a size mismatch).
        """
        size = tuple(s.stop - s.start for s in index)
        path = self.root / self.encode_key(grid)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return np.full(size, self.fill, self.stored.newbyteorder("="))
        return decode_region(raw, self.chunks, self.stored, self.decoder, index, grid, where=os.fspath(path))


def decode_region(
    raw: bytes, chunks: tuple[int, ...], stored: np.dtype, decoder: Any, index: tuple[slice, ...],
    grid: tuple[int, ...], *, where: str,
) -> np.ndarray:
    """The stored region ``index`` of chunk ``grid`` from the chunk's encoded bytes, a new native array.

    A part of the chunk is copied out, so that it does not hold the whole
    decoded chunk in memory.

    Raises
    ------
    ValueError, RuntimeError
        The bytes do not decode to one chunk (the decoder's error, or a size mismatch).
    """
    count = math.prod(chunks)
    out = take(count * stored.itemsize).view(stored)
    if decoder is None:
        data = np.frombuffer(raw, stored)
        if data.size != count:
            raise ValueError(f"chunk {where} holds {len(raw)} bytes, expected {out.nbytes}")
        out[...] = data
    else:
        decoder.decode(raw, out=out)
    block = out.reshape(chunks)
    region = block[tuple(slice(s.start - g * c, s.stop - g * c) for s, g, c in zip(index, grid, chunks))]
    if not stored.isnative:
        return region.astype(stored.newbyteorder("="))
    return region if region.size == count else region.copy()
