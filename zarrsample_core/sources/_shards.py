"""Inner chunks of sharded zarr v3 arrays: each shard's index read once, neighbours in one request.

zarr-python reads a shard's index again for every read that touches the
shard, and fetches each inner chunk with a request of its own. A loader
that reads a few inner chunks at a time (as the chunk cache does) then
pays about two requests per inner chunk. :class:`ShardedChunks` keeps the
index of every shard it has seen (a few bytes per inner chunk, for the life
of the process), fetches the inner chunks asked for together with one
range request per run of chunks stored next to each other, through the
array's own store (local, http(s), s3, ...), and decodes them with
numcodecs outside the event loop. Layouts it does not know (other index or
inner codecs) are left to zarr-python (:func:`sharded_chunks` returns None).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._direct import _v3_decoder, decode_region

__all__ = ["ShardedChunks", "sharded_chunks"]

_EMPTY = 2**64 - 1


def sharded_chunks(array: Any) -> ShardedChunks | None:
    """A :class:`ShardedChunks` for a sharded zarr-python array of a known layout, else None."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec

    metadata = getattr(array, "metadata", None)
    if getattr(array, "shards", None) is None or metadata is None or metadata.zarr_format != 3:
        return None
    codecs = metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None  # codecs before or after the sharding codec
    sharding = codecs[0]
    dtype = np.dtype(array.dtype)
    found = _v3_decoder(sharding.codecs)
    index_codecs = sharding.index_codecs
    index_ok = (
        1 <= len(index_codecs) <= 2 and isinstance(index_codecs[0], BytesCodec)
        and getattr(index_codecs[0].endian, "value", "little") in ("little", None)
        and (len(index_codecs) == 1 or isinstance(index_codecs[1], Crc32cCodec))
    )
    if found is None or not index_ok or dtype.kind not in "biuf":
        return None
    decoder, endian = found
    stored = dtype.newbyteorder("<" if endian == "little" else ">") if endian else dtype
    fill = array.fill_value
    return ShardedChunks(
        array.store, array.path, tuple(array.shards), tuple(array.chunks), stored, decoder,
        0 if fill is None else fill, metadata.encode_chunk_key,
        checksum=len(index_codecs) == 2, at_start=getattr(sharding.index_location, "value", "end") == "start",
    )


class ShardedChunks:
    """Read inner chunks of a sharded array through its store (thread-safe; one per process).

    Attributes
    ----------
    index_reads : int
        Shard indexes fetched so far (each shard's at most once).
    requests : int
        Range requests for inner chunk bytes so far.
    """

    def __init__(
        self, store: Any, path: str, shards: tuple[int, ...], chunks: tuple[int, ...], stored: np.dtype,
        decoder: Any, fill: Any, encode_key: Any, *, checksum: bool, at_start: bool,
    ) -> None:
        self.store, self.path, self.shards, self.chunks = store, path, shards, chunks
        self.per_shard = tuple(s // c for s, c in zip(shards, chunks))
        self.stored, self.decoder, self.fill, self.encode_key = stored, decoder, fill, encode_key
        self.checksum, self.at_start = checksum, at_start
        self._indexes: dict[tuple[int, ...], np.ndarray | None] = {}
        self._pending: dict[tuple[int, ...], asyncio.Future[np.ndarray | None]] = {}
        self._lock = threading.Lock()
        self.index_reads = 0
        self.requests = 0

    def _key(self, shard: tuple[int, ...]) -> str:
        key = self.encode_key(shard)
        return f"{self.path}/{key}" if self.path else key

    def chunk_of(self, index: tuple[slice, ...]) -> tuple[int, ...] | None:
        """The inner chunk holding the stored region ``index``, else None."""
        grid = []
        for s, c in zip(index, self.chunks):
            if (s.stop - 1) // c != s.start // c:
                return None
            grid.append(s.start // c)
        return tuple(grid)

    # -- fetching ---------------------------------------------------------------------------

    async def _get(self, key: str, byte_range: Any) -> bytes | None:
        from zarr.core.buffer import default_buffer_prototype

        buffer = await self.store.get(key, prototype=default_buffer_prototype(), byte_range=byte_range)
        return None if buffer is None else buffer.to_bytes()

    async def _index(self, shard: tuple[int, ...]) -> np.ndarray | None:
        from zarr.abc.store import RangeByteRequest, SuffixByteRequest

        count = int(np.prod(self.per_shard))
        size = 16 * count + 4 * self.checksum
        where = RangeByteRequest(0, size) if self.at_start else SuffixByteRequest(size)
        raw = await self._get(self._key(shard), where)
        with self._lock:
            self.index_reads += 1
        if raw is None:
            return None  # no shard: every inner chunk is the fill value
        if len(raw) != size:
            raise ValueError(f"shard {self._key(shard)}: index of {len(raw)} bytes, expected {size}")
        if self.checksum:
            import google_crc32c

            if np.uint32(google_crc32c.value(raw[:-4])).tobytes() != raw[-4:]:
                raise ValueError(f"shard {self._key(shard)}: the index checksum does not match")
        return np.frombuffer(raw[: 16 * count], "<u8").reshape(*self.per_shard, 2)

    async def _fetch(self, wanted: dict[tuple[int, ...], list[tuple[int, ...]]]) -> dict[tuple[int, ...], Any]:
        """Raw bytes of the wanted inner chunks (by grid index), None when empty, or the exception."""
        from zarr.abc.store import RangeByteRequest

        # One fetch per shard even when several reads want its index at once (all on one loop).
        missing = [s for s in wanted if s not in self._indexes]
        for shard in missing:
            if shard not in self._pending:
                self._pending[shard] = asyncio.ensure_future(self._index(shard))
        found = await asyncio.gather(*(self._pending[s] for s in missing), return_exceptions=True)
        failed: dict[tuple[int, ...], BaseException] = {}
        for shard, index in zip(missing, found):
            self._pending.pop(shard, None)  # a failed fetch is tried again by the next read
            if isinstance(index, BaseException):
                failed[shard] = index
            else:
                self._indexes[shard] = index
        out: dict[tuple[int, ...], Any] = {}
        jobs, runs = [], []
        for shard, grids in wanted.items():
            if shard in failed:
                out.update(dict.fromkeys(grids, failed[shard]))
                continue
            index = self._indexes[shard]
            spans = []
            for grid in grids:
                local = tuple(g - s * p for g, s, p in zip(grid, shard, self.per_shard))
                offset, nbytes = (_EMPTY, _EMPTY) if index is None else (int(v) for v in index[local])
                if offset == _EMPTY:
                    out[grid] = None
                else:
                    spans.append((offset, offset + nbytes, grid))
            spans.sort()
            run: list[tuple[int, int, tuple[int, ...]]] = []
            for span in [*spans, None]:
                if run and (span is None or span[0] != run[-1][1]):
                    runs.append((shard, run))
                    jobs.append(self._get(self._key(shard), RangeByteRequest(run[0][0], run[-1][1])))
                    run = []
                if span is not None:
                    run.append(span)
        results = await asyncio.gather(*jobs, return_exceptions=True)
        with self._lock:
            self.requests += len(jobs)
        for (_, run), raw in zip(runs, results):
            for start, stop, grid in run:
                if isinstance(raw, BaseException) or raw is None:
                    out[grid] = raw if raw is not None else KeyError(f"shard of inner chunk {grid} vanished")
                else:
                    out[grid] = raw[start - run[0][0] : stop - run[0][0]]
        return out

    # -- reading ----------------------------------------------------------------------------

    def read_many(self, indices: Sequence[tuple[slice, ...]]) -> list[np.ndarray | Exception]:
        """Each stored region (inside one inner chunk, see :meth:`chunk_of`), or its error."""
        from zarr.core.sync import sync

        grids = [self.chunk_of(index) for index in indices]
        wanted: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for wanted_grid in dict.fromkeys(g for g in grids if g is not None):
            shard = tuple(g // p for g, p in zip(wanted_grid, self.per_shard))
            wanted.setdefault(shard, []).append(wanted_grid)
        raw = sync(self._fetch(wanted))
        results: list[np.ndarray | Exception] = []
        for index, grid in zip(indices, grids):
            try:
                if grid is None:
                    raise ValueError(f"region {index} is not inside one inner chunk")
                value = raw[grid]
                if isinstance(value, BaseException):
                    raise value
                results.append(self._decode(value, index, grid))
            except Exception as exc:  # noqa: BLE001 - returned to the caller
                results.append(exc)
        return results

    def _decode(self, raw: bytes | None, index: tuple[slice, ...], grid: tuple[int, ...]) -> np.ndarray:
        size = tuple(s.stop - s.start for s in index)
        if raw is None:
            return np.full(size, self.fill, self.stored.newbyteorder("="))
        return decode_region(raw, self.chunks, self.stored, self.decoder, index, grid,
                             where=f"{grid} of {self.path or 'the array'}")
