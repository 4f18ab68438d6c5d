"""Reading a window's storage chunks: their ranges, runs of neighbours, the copy into a patch."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ZarrsampleError
from ._cache import ChunkCache
from ._faults import RetryPolicy, _Exhausted, chunk_read_error, is_transient

if TYPE_CHECKING:
    from ..sources._collection import ImageLike

__all__ = [
    "ChunkRequest", "Range", "Source", "assemble", "chunk_ranges", "chunk_runs", "load_groups", "read_run",
    "shard_groups", "window_requests",
]

#: ``(start, stop)`` of a region, one int per image axis.
Range = tuple[tuple[int, ...], tuple[int, ...]]

#: A storage chunk a window needs: ``(cache key, image, start, stop, decoded bytes)``.
ChunkRequest = tuple[tuple[Any, ...], "ImageLike", tuple[int, ...], tuple[int, ...], int]


@dataclass(frozen=True)
class Source:
    """What one modality needs for one window (image axes order)."""

    name: str
    image: ImageLike
    prefix: tuple[Any, ...]  # cache key prefix
    sizes: tuple[int, ...]  # window size per axis
    lo: tuple[int, ...]  # source range to read, per axis
    hi: tuple[int, ...]
    dst: tuple[slice, ...]  # where that range lands (direct copy only)
    maps: tuple[np.ndarray | None, ...]  # gather indices into [lo, hi), or None
    padded: bool  # some window position lies outside the image
    window: tuple[tuple[int, ...], tuple[int, ...]]  # the patch window (reference pixels)
    spatial_axes: str


def chunk_ranges(source: Source) -> Iterator[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(chunk index, chunk start, chunk stop) in image coordinates, clipped to the image."""
    image = source.image
    per_axis = []
    for lo, hi, c, o, m in zip(source.lo, source.hi, image.chunks, image.origin, image.shape):
        first, last = (lo + o) // c, (hi - 1 + o) // c
        per_axis.append([(k, max(k * c - o, 0), min((k + 1) * c - o, m)) for k in range(first, last + 1)])
    for combo in itertools.product(*per_axis):
        yield (
            tuple(k for k, _, _ in combo),
            tuple(a for _, a, _ in combo),
            tuple(b for _, _, b in combo),
        )


def _read_region(image: ImageLike, start: tuple[int, ...], stop: tuple[int, ...]) -> np.ndarray:
    return image.read(tuple(slice(a, b) for a, b in zip(start, stop)))


def chunk_runs(indices: list[tuple[int, ...]], longest: int = 8) -> list[list[tuple[int, ...]]]:
    """Split sorted chunk indices into runs of consecutive chunks along the last axis."""
    runs: list[list[tuple[int, ...]]] = []
    for index in indices:
        last = runs[-1][-1] if runs else None
        if (
            last is not None and len(runs[-1]) < longest
            and index[:-1] == last[:-1] and index[-1] == last[-1] + 1
        ):
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def window_requests(sources: Iterable[Source]) -> list[ChunkRequest]:
    """The storage chunks the sources of one window load (images in memory have none)."""
    requests: list[ChunkRequest] = []
    for source in sources:
        if source.image.backend == "numpy":
            continue
        itemsize = source.image.dtype.itemsize
        for index, lo, hi in chunk_ranges(source):
            nbytes = itemsize * math.prod(b - a for a, b in zip(lo, hi))
            requests.append(((*source.prefix, index), source.image, lo, hi, nbytes))
    return requests


def load_groups(
    requests: Sequence[ChunkRequest], cache: ChunkCache, run_bytes: int
) -> Iterator[tuple[ImageLike, list[Range], list[tuple[Any, ...]]]]:
    """The uncached chunks of ``requests`` as loads: ``(image, regions, cache keys)`` each.

    Loads come in the order their first chunk is requested. Images whose
    chunks load best alone (``independent_chunks``: decoded here, one at a
    time) get one load per chunk, so that the loading threads share the
    next chunks needed. Otherwise neighbours along the last axis go
    together (inner chunks of one shard, for images read shard-aware), at
    most ``run_bytes`` of them (and 8 chunks of a run): loads in flight are
    held beside the cache.
    """
    wanted: dict[tuple[Any, ...], tuple[ImageLike, dict[tuple[int, ...], Range]]] = {}
    largest: dict[tuple[Any, ...], int] = {}
    rank: dict[tuple[Any, ...], int] = {}
    for chunk_key, image, lo, hi, nbytes in requests:
        if chunk_key not in cache and chunk_key not in rank:
            rank[chunk_key] = len(rank)
            wanted.setdefault(chunk_key[:-1], (image, {}))[1][chunk_key[-1]] = (lo, hi)
            largest[chunk_key[:-1]] = max(largest.get(chunk_key[:-1], 0), nbytes)
    loads = []
    for prefix, (image, chunks) in wanted.items():
        most = max(1, run_bytes // max(largest[prefix], 1))
        per_shard = getattr(image, "shard_chunks", None)
        if getattr(image, "independent_chunks", False):
            runs = [[index] for index in chunks]
        elif per_shard:
            runs = shard_groups(sorted(chunks), per_shard, most)
        else:
            runs = chunk_runs(sorted(chunks), min(8, most))
        for run in runs:
            keys = [(*prefix, index) for index in run]
            loads.append((min(rank[k] for k in keys), image, [chunks[i] for i in run], keys))
    loads.sort(key=lambda load: load[0])
    for _, image, regions, keys in loads:
        yield image, regions, keys


def shard_groups(
    indices: list[tuple[int, ...]], per_shard: tuple[int, ...], largest: int
) -> list[list[tuple[int, ...]]]:
    """Split chunk indices into groups of one shard each (``per_shard`` chunks per axis), at most ``largest`` long."""
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for index in indices:
        groups.setdefault(tuple(k // p for k, p in zip(index, per_shard)), []).append(index)
    return [group[i : i + largest] for group in groups.values() for i in range(0, len(group), largest)]


def read_run(
    image: ImageLike, regions: list[Range], retry: RetryPolicy, run: list[tuple[int, ...]]
) -> Iterator[np.ndarray]:
    """Read several chunk regions of one image with one call; yields them in order, each when read.

    Images that can (:meth:`..sources._image.Image.iter_many`) read them
    concurrently, each on its own: zarr in one event-loop call, tensorstore
    with one future each, so that the backend decodes them in parallel
    (about 1.6x the rate of one chunk per call with zarr-python 3); each
    region is handed out as soon as it is read. With ``retry.retries > 0``
    a transient error is retried for its chunk alone; otherwise the first
    error is raised (sharded zarr arrays: one range request per run of
    inner chunks stored side by side, each shard's index read once per
    process, :mod:`..sources._shards`). Other images, and sharded arrays
    read by tensorstore (which fetches a shard's index once per read call),
    read the bounding box of the regions at once (a run along the last
    axis, or the inner chunks of one shard).
    """
    many = getattr(image, "iter_many", None) or getattr(image, "read_many", None)
    if many is not None and (
        retry.retries or getattr(image, "backend", "") != "tensorstore" or not getattr(image, "is_sharded", False)
    ):
        selections = [tuple(slice(a, b) for a, b in zip(lo, hi)) for lo, hi in regions]
        for chunk, (lo, hi), index in zip(many(selections), regions, run):
            if isinstance(chunk, Exception):
                if not retry.retries or not is_transient(chunk):
                    raise chunk
                chunk = retry.call(partial(_read_region, image, lo, hi), f"{image.name} {index}")
            yield chunk
        return
    start = tuple(min(lo[d] for lo, _ in regions) for d in range(len(regions[0][0])))
    stop = tuple(max(hi[d] for _, hi in regions) for d in range(len(regions[0][0])))
    block = _read_region(image, start, stop)  # the bounding box: a run, or a group of one shard
    parts = [block[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] for lo, hi in regions]
    if sum(p.size for p in parts) < block.size:  # the box holds more: cached views must not keep it
        parts = [p.copy() for p in parts]
    yield from parts


def assemble(cache: ChunkCache, source: Source, dest: np.ndarray, retry: RetryPolicy) -> None:
    """Copy the source range ``[lo, hi)`` into ``dest`` (shape ``hi - lo``) from chunks."""
    lo, hi = source.lo, source.hi
    if source.image.backend == "numpy":
        dest[...] = _read_region(source.image, lo, hi)
        return
    for index, a, b in chunk_ranges(source):
        load = partial(_read_region, source.image, a, b)
        if retry.retries:
            load = partial(retry.call, load, f"{source.image.name} {index}")
        try:
            chunk = cache.get_or_load((*source.prefix, index), load)
        except ZarrsampleError:
            raise  # a configuration error (e.g. tensorstore after fork), not a bad chunk
        except _Exhausted as exc:
            raise _chunk_error(source, index, exc.error, exc.attempts) from exc.error
        except Exception as exc:
            raise _chunk_error(source, index, exc, 1) from exc
        src = tuple(slice(max(l, s) - s, min(h, e) - s) for l, h, s, e in zip(lo, hi, a, b))
        dst = tuple(slice(max(l, s) - l, min(h, e) - l) for l, h, s, e in zip(lo, hi, a, b))
        dest[dst] = chunk[src]


def _chunk_error(source: Source, index: tuple[int, ...], error: BaseException, attempts: int) -> Exception:
    return chunk_read_error(source.name, source.image, index, source.window, source.spatial_axes, error, attempts)
