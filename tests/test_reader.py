"""Tests of PatchReader / ChunkCache: numpy.pad as the oracle, chunk accounting."""

from __future__ import annotations

import math
import pickle
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrsample_core import ImageCollection, PatchSampler, open_image
from zarrsample_core.reading._cache import ChunkCache
from zarrsample_core._errors import ZarrsampleError
from zarrsample_core.reading._faults import ChunkReadError
from zarrsample_core.reading._padding import PADDING_MODES, scaled_window
from zarrsample_core.reading._reader import PatchReader

# --------------------------------------------------------------------------- helpers

RATIOS = (Fraction(1, 2), Fraction(3, 7), Fraction(1), Fraction(2))


def make_data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def write_zarr(path, data, chunks, zarr_format=3, **kwargs):
    array = zarr.create_array(
        store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
        zarr_format=zarr_format, fill_value=0, **kwargs,
    )
    array[...] = data
    return str(path)


def model_window(start, stop, n, m):
    """Modality window per the documented formula, with Fractions (naive oracle)."""
    size = stop - start
    return math.floor(Fraction(start * m, n)), max(1, math.floor(Fraction(size * m, n) + Fraction(1, 2)))


def padded_window(full, starts, sizes, mode, pad_value=0):
    """``np.pad(full, widths, mode)[window]``, the reference result."""
    widths = [(max(0, -s), max(0, s + n - m)) for s, n, m in zip(starts, sizes, full.shape)]
    extra = {"constant_values": pad_value} if mode == "constant" else {}
    padded = np.pad(full, widths, mode=mode, **extra)
    return padded[tuple(slice(s + b, s + b + n) for s, n, (b, _) in zip(starts, sizes, widths))]


def expected(full, axes, spatial_axes, start, stop, ref_extent, mode, pad_value=0):
    """The reference result for one modality given its full (ROI) array."""
    starts, sizes = [], []
    for a, m in zip(axes, full.shape):
        if a in spatial_axes:
            k = spatial_axes.index(a)
            s, n = model_window(start[k], stop[k], ref_extent[k], m)
        else:
            s, n = 0, m
        starts.append(s)
        sizes.append(n)
    return padded_window(full, starts, sizes, mode, pad_value)


def assert_identical(actual, wanted):
    assert actual.dtype == wanted.dtype
    assert actual.shape == wanted.shape
    assert actual.tobytes() == wanted.tobytes()


def touched_chunks(image_shape, origin, chunks, windows):
    """Distinct storage chunks under the in-image part of windows (pixel by pixel)."""
    touched = np.zeros(image_shape, bool)
    for lo, hi in windows:
        touched[tuple(slice(max(a, 0), max(b, 0)) for a, b in zip(lo, hi))] = True
    coords = np.argwhere(touched) + np.asarray(origin)
    return {tuple(c) for c in (coords // np.asarray(chunks)).tolist()}


class CountingImage:
    """Delegates to an Image; counts (and optionally slows or fails) reads."""

    def __init__(self, image, delay=0.0, fail=False, independent=None):
        self._image, self.delay, self.fail = image, delay, fail
        if independent is not None:  # else the image's own answer
            self.independent_chunks = independent
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._image, name)

    def read(self, selection=None):
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise OSError("storage is down")
        return self._image.read(selection)

    def read_many(self, selections):
        with self._lock:
            self.calls += 1  # one grouped load
        time.sleep(self.delay)
        if self.fail:
            return [OSError("storage is down") for _ in selections]
        return self._image.read_many(selections)

    def iter_many(self, selections):
        yield from self.read_many(selections)


def tiling(shape, step):
    """All windows ``step`` apart covering ``shape`` (C order), as (start, stop)."""
    grids = np.meshgrid(*[np.arange(0, n, s) for n, s in zip(shape, step)], indexing="ij")
    starts = np.stack([g.ravel() for g in grids], axis=-1)
    return [(s, s + np.asarray(step)) for s in starts]


# --------------------------------------------------------------------------- oracle: numpy.pad


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    channels=st.integers(1, 3),
    zarr_format=st.sampled_from([2, 3]),
    dtype=st.sampled_from(["uint8", "int16", "float32"]),
    ratio=st.sampled_from(RATIOS),
    mode=st.sampled_from(PADDING_MODES),
    use_roi=st.booleans(),
)
def test_read_matches_numpy_pad_2d(
    data, height, width, channels, zarr_format, dtype, ratio, mode, use_roi
):
    chunk = st.integers(3, 9)
    pre = (data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))) if use_roi else (0, 0)
    stored = make_data((channels, height + pre[0] + 2 * use_roi, width + pre[1] + 2 * use_roi), dtype, 1)
    labels_shape = (max(1, math.floor(height * ratio)), max(1, math.floor(width * ratio)))
    labels = make_data(labels_shape, "int16", 2)
    roi = (slice(None), slice(pre[0], pre[0] + height), slice(pre[1], pre[1] + width))
    full = stored[roi]
    pad_value = data.draw(st.sampled_from([0, 1, 7, -3] if dtype != "uint8" else [0, 1, 255]))
    windows = data.draw(st.lists(
        st.tuples(st.integers(-25, 25), st.integers(-25, 25), st.integers(1, 30), st.integers(1, 30)),
        min_size=1, max_size=4,
    ))
    with tempfile.TemporaryDirectory() as tmp:
        image_path = write_zarr(
            Path(tmp, "image"), stored, (channels, data.draw(chunk), data.draw(chunk)), zarr_format
        )
        labels_path = write_zarr(Path(tmp, "labels"), labels, (data.draw(chunk),) * 2, zarr_format)
        results = {}
        for backend in ("zarr", "tensorstore", "numpy"):
            if backend == "numpy":
                image = open_image(stored, axes="CYX", roi=roi)
                label_image = open_image(labels, axes="YX")
            else:
                image = open_image(image_path, axes="CYX", roi=roi if use_roi else None, backend=backend)
                label_image = open_image(labels_path, axes="YX", backend=backend)
            coll = ImageCollection({"images": image, "labels": label_image}, spatial_axes="YX")
            reader = PatchReader(padding_mode=mode, pad_value=pad_value, cache_bytes=4096)
            results[backend] = [
                reader.read(coll, (y, x), (y + h, x + w), spatial_axes="YX") for y, x, h, w in windows
            ]
    for k, (y, x, h, w) in enumerate(windows):
        start, stop = (y, x), (y + h, x + w)
        want_image = expected(full, "CYX", "YX", start, stop, (height, width), mode, pad_value)
        want_labels = expected(labels, "YX", "YX", start, stop, (height, width), mode, pad_value)
        for backend, outs in results.items():
            assert set(outs[k]) == {"images", "labels"}
            assert_identical(outs[k]["images"], want_image)
            assert_identical(outs[k]["labels"], want_labels)


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 8), st.integers(1, 10), st.integers(1, 10)),
    ratio=st.sampled_from(RATIOS),
    mode=st.sampled_from(PADDING_MODES),
    backend=st.sampled_from(["zarr", "tensorstore"]),
)
def test_read_matches_numpy_pad_3d_with_2d_labels(data, shape, ratio, mode, backend):
    volume = make_data((2, *shape), "uint16", 3)  # TZYX
    labels = make_data((max(1, math.floor(shape[1] * ratio)), max(1, math.floor(shape[2] * ratio))), "int8", 4)
    start = [data.draw(st.integers(-12, 12)) for _ in range(3)]
    stop = [s + data.draw(st.integers(1, 14)) for s in start]
    with tempfile.TemporaryDirectory() as tmp:
        chunks = (1, *[data.draw(st.integers(2, 5)) for _ in range(3)])
        coll = ImageCollection({
            "images": open_image(write_zarr(Path(tmp, "v"), volume, chunks), axes="TZYX", backend=backend),
            "labels": open_image(write_zarr(Path(tmp, "l"), labels, (3, 4)), axes="YX", backend=backend),
        }, spatial_axes="ZYX")
        out = PatchReader(padding_mode=mode).read(coll, start, stop, spatial_axes="ZYX")
    assert_identical(out["images"], expected(volume, "TZYX", "ZYX", start, stop, shape, mode))
    assert_identical(out["labels"], expected(labels, "YX", "ZYX", start, stop, shape, mode))


def test_scaled_window_formula():
    assert scaled_window(10, 42, 64, 32) == (5, 16)  # labels at 1/2
    assert scaled_window(-5, 15, 70, 30) == (-3, 9)  # 3/7: floor(-15/7), round(60/7)
    assert scaled_window(0, 3, 70, 30) == (0, 1)  # round half up: 9/7 -> 1
    assert scaled_window(0, 7, 70, 5) == (0, 1)  # never empty: 0.5 -> 1
    assert scaled_window(0, 21, 70, 5) == (0, 2)  # 1.5 -> 2 (half up)
    for start, size, n, m in [(-37, 29, 100, 43), (17, 3, 7, 3), (5, 64, 64, 128)]:
        assert scaled_window(start, start + size, n, m) == model_window(start, start + size, n, m)


@pytest.mark.filterwarnings("ignore::zarrsample_core.ZarrsampleWarning")  # any mask shape, on purpose
def test_every_patch_of_a_plan_has_the_same_shape_per_modality():
    image = open_image(np.zeros((3, 70, 49), np.uint8), axes="CYX")
    labels = open_image(np.zeros((30, 21), np.uint8), axes="YX")  # 3/7 of the image
    mask = open_image(np.ones((7, 7), bool), axes="YX")
    coll = ImageCollection({"images": image, "masks": mask, "labels": labels}, spatial_axes="YX")
    plan = PatchSampler(16, pad=3, spatial_axes="YX", allow_incomplete_patches=True).plan(coll)
    reader = PatchReader()
    shapes = set()
    for tl in plan.toplefts:
        out = reader.read(coll, tl - 3, tl + 19, spatial_axes="YX")
        assert set(out) == {"images", "labels"}  # the mask is not returned
        shapes.add((out["images"].shape, out["labels"].shape))
    assert shapes == {((3, 22, 22), (9, 9))}


def test_sharded_v3_uses_inner_chunks(tmp_path):
    data = make_data((40, 36), "uint8", 5)
    array = zarr.create_array(
        store=str(tmp_path / "s"), shape=data.shape, chunks=(5, 6), shards=(20, 18), dtype="uint8"
    )
    array[...] = data
    coll = ImageCollection({"images": open_image(str(tmp_path / "s"), axes="YX")}, spatial_axes="YX")
    reader = PatchReader(padding_mode="reflect")
    out = reader.read(coll, (-3, 30), (12, 44), spatial_axes="YX")["images"]
    assert_identical(out, padded_window(data, (-3, 30), (15, 14), "reflect"))
    assert reader.stats()["chunk_reads"] == len(touched_chunks(data.shape, (0, 0), (5, 6), [((0, 27), (12, 36))]))


# --------------------------------------------------------------------------- cache accounting


def chunk_major_collection(tmp_path, backend):
    stored = make_data((3, 110, 97), "uint8", 6)
    labels = make_data((50, 45), "uint8", 7)
    roi = (slice(None), slice(5, 105), slice(7, 97))
    coll = ImageCollection({
        "images": open_image(write_zarr(tmp_path / "i", stored, (3, 32, 32), 2), axes="CYX", roi=roi, backend=backend),
        "labels": open_image(write_zarr(tmp_path / "l", labels, (16, 20)), axes="YX", backend=backend),
    }, spatial_axes="YX")
    return coll, stored[roi], labels


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_chunk_major_plan_reads_each_chunk_once(tmp_path, backend):
    coll, full, labels = chunk_major_collection(tmp_path, backend)
    plan = PatchSampler(16, pad=2, spatial_axes="YX", allow_incomplete_patches=True).plan(coll)
    assert np.all(np.diff(plan.chunk_ids) >= 0)
    windows = [(tl - 2, tl + 18) for tl in plan.toplefts]
    reader = PatchReader(padding_mode="symmetric")
    for start, stop in windows:
        out = reader.read(coll, start, stop, spatial_axes="YX", key=3)
        assert_identical(out["images"], expected(full, "CYX", "YX", start, stop, (100, 90), "symmetric"))
    scaled = [  # symmetric padding reads at most the 2-pixel border again: same chunks
        ([(s * m) // n for s, n, m in zip(a, (100, 90), (50, 45))],
         [(s * m) // n + 10 for s, n, m in zip(a, (100, 90), (50, 45))]) for a, _ in windows
    ]
    distinct = len(touched_chunks((3, 100, 90), (0, 5, 7), (3, 32, 32), [((0, *a), (3, *b)) for a, b in windows]))
    distinct += len(touched_chunks((50, 45), (0, 0), (16, 20), scaled))
    stats = reader.stats()
    assert stats["chunk_reads"] == distinct
    assert stats["evictions"] == 0
    assert stats["cached_bytes"] == full.nbytes + labels.nbytes
    assert stats["cache_hits"] > len(windows)
    for start, stop in windows[:5]:  # everything is cached now
        reader.read(coll, start, stop, spatial_axes="YX", key=3)
    assert reader.stats()["chunk_reads"] == distinct


def test_tiny_cache_stays_in_budget_and_evicts(tmp_path):
    coll, full, _ = chunk_major_collection(tmp_path, "zarr")
    budget = 3 * 32 * 32 + 100  # one full image chunk, not two
    reader = PatchReader(cache_bytes=budget)
    rng = np.random.default_rng(0)
    for _ in range(40):
        start = rng.integers(-10, 95, size=2)
        stop = start + rng.integers(1, 40, size=2)
        out = reader.read(coll, start, stop, spatial_axes="YX")
        assert_identical(out["images"], expected(full, "CYX", "YX", start, stop, (100, 90), "constant"))
        assert reader.stats()["cached_bytes"] <= budget
    assert reader.stats()["evictions"] > 0


def test_chunk_larger_than_budget_is_used_not_kept(tmp_path):
    coll, full, _ = chunk_major_collection(tmp_path, "zarr")
    reader = PatchReader(cache_bytes=10)
    for _ in range(2):
        out = reader.read(coll, (40, 40), (50, 50), spatial_axes="YX")
        assert_identical(out["images"], full[:, 40:50, 40:50])
    stats = reader.stats()
    assert stats["cached_bytes"] == 0 and stats["chunk_reads"] == 4  # 1 image + 1 labels chunk, twice


def test_chunk_cache_lru_order_and_counters():
    cache = ChunkCache(max_bytes=30)
    for key in "abc":
        cache.put(key, np.zeros(10, np.uint8))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("d", np.zeros(10, np.uint8))  # evicts b
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    cache.put("big", np.zeros(31, np.uint8))  # used, not kept
    assert "big" not in cache and cache.nbytes == 30
    assert cache.get("zz") is None
    assert cache.stats() == {"chunk_reads": 5, "cache_hits": 1, "evictions": 1, "cached_bytes": 30}
    assert not cache.get("a").flags.writeable
    assert pickle.loads(pickle.dumps(cache)).stats()["chunk_reads"] == 0


@settings(max_examples=60, deadline=None)
@given(
    budget=st.integers(0, 100),
    ops=st.lists(st.tuples(st.sampled_from(["load", "load", "pin", "unpin"]), st.integers(0, 6), st.integers(0, 60)),
                 max_size=60),
)
def test_chunk_cache_never_exceeds_budget(budget, ops):
    cache, loads = ChunkCache(budget), []
    for op, key, size in ops:
        if op == "pin":
            cache.pin([key])
        elif op == "unpin":
            cache.unpin([key])
        else:
            value = cache.get_or_load(key, lambda size=size: loads.append(1) or np.zeros(size, np.uint8))
            assert value.nbytes in (size, cache._data.get(key, value).nbytes)
        assert cache.nbytes <= budget and cache.nbytes == sum(cache._data[k].nbytes for k in cache._data)
        assert cache._loaded.keys() == cache._data.keys()
    assert cache.stats()["chunk_reads"] == len(loads)


def test_a_group_hands_out_each_chunk_as_it_is_read():
    # The group's generator waits until chunk "a" has reached its reader:
    # a group delivered only at its end would wait forever.
    from concurrent.futures import ThreadPoolExecutor

    cache, delivered = ChunkCache(1000), threading.Event()

    def load():
        yield np.full(4, 1)
        assert delivered.wait(5), "chunk a was not handed out before the group ended"
        yield np.full(4, 2)

    with ThreadPoolExecutor(1) as pool:
        assert cache.schedule_group(["a", "b"], load, pool) == 2
        time.sleep(0.05)  # the worker has claimed both
        a = cache.get_or_load("a", lambda: pytest.fail("a is loaded by its group"))
        delivered.set()
        b = cache.get_or_load("b", lambda: pytest.fail("b is loaded by its group"))
    assert a.tolist() == [1] * 4 and b.tolist() == [2] * 4
    assert cache.stats()["chunk_reads"] == 2


def test_a_group_that_fails_midway_keeps_what_it_read():
    from concurrent.futures import ThreadPoolExecutor

    cache = ChunkCache(1000)

    def load():
        yield np.full(4, 1)
        raise OSError("storage is down")

    with ThreadPoolExecutor(1) as pool:
        cache.schedule_group(["a", "b", "c"], load, pool)
    assert cache.get("a").tolist() == [1] * 4 and "b" not in cache and "c" not in cache
    # The chunks after the failure are loaded by whoever needs them.
    assert cache.get_or_load("b", lambda: np.full(4, 7)).tolist() == [7] * 4


@pytest.mark.parametrize("independent", [False, True])
def test_loads_come_in_the_order_chunks_are_first_needed(tmp_path, independent):
    from zarrsample_core.reading._chunk_reads import load_groups

    coll, image, _ = slow_collection(tmp_path, delay=0, independent=independent)
    reader = PatchReader()
    # Windows needing chunks (3, 2), (3, 3), then (0, 0), (0, 1), then (1, 3).
    windows = [((48, 32), (64, 64)), ((0, 0), (16, 32)), ((16, 48), (32, 64))]
    requests = [r for a, b in windows for r in reader.chunk_requests(coll, a, b, spatial_axes="YX")]
    loads = [[key[-1] for key in keys] for _, _, keys in load_groups(requests, ChunkCache(0), 2**20)]
    if independent:
        assert loads == [[(3, 2)], [(3, 3)], [(0, 0)], [(0, 1)], [(1, 3)]]
    else:
        assert loads == [[(3, 2), (3, 3)], [(0, 0), (0, 1)], [(1, 3)]]


def test_local_chunks_load_one_by_one_and_remote_or_sharded_ones_in_runs(tmp_path):
    from range_server import range_server

    data = make_data((64, 64), "uint8", 8)
    path = write_zarr(tmp_path / "p", data, (16, 16))
    sharded = write_zarr(tmp_path / "s", data, (16, 16), shards=(32, 32))
    assert open_image(path, axes="YX").independent_chunks  # decoded here, one at a time
    assert open_image(path, axes="YX", backend="tensorstore").independent_chunks  # a local file
    assert not open_image(sharded, axes="YX", backend="tensorstore").independent_chunks  # one shard index read
    assert not open_image(data, axes="YX").independent_chunks
    with range_server(tmp_path) as (url, _):
        for backend in ("zarr", "tensorstore"):  # over a network, runs read together hide latency
            assert not open_image(f"{url}/p", axes="YX", backend=backend).independent_chunks


def test_chunk_cache_rejects_bad_budget():
    with pytest.raises(TypeError, match="max_bytes must be an int"):
        ChunkCache(1.5)
    with pytest.raises(ZarrsampleError, match="max_bytes must be >= 0, got -1"):
        ChunkCache(-1)


def test_concurrent_get_or_load_loads_once():
    cache, calls = ChunkCache(1000), []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return np.arange(4)

    threads = [threading.Thread(target=cache.get_or_load, args=("k", load)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.stats()["cache_hits"] == 7


# --------------------------------------------------------------------------- prefetch and threads


def slow_collection(tmp_path, delay=0.01, fail=False, independent=None):
    data = make_data((64, 64), "uint8", 8)
    image = CountingImage(
        open_image(write_zarr(tmp_path / "p", data, (16, 16)), axes="YX"), delay, fail, independent
    )
    return ImageCollection({"images": image}, spatial_axes="YX"), image, data


def test_prefetch_then_read_is_identical_and_loads_once(tmp_path):
    coll, image, data = slow_collection(tmp_path)
    windows = tiling((64, 64), (8, 8))
    reader = PatchReader(prefetch_workers=3)
    for start, stop in windows:
        reader.prefetch(coll, start, stop, spatial_axes="YX")
    outs = [reader.read(coll, a, b, spatial_axes="YX")["images"] for a, b in windows]
    for (start, stop), out in zip(windows, outs):
        assert_identical(out, data[start[0]:stop[0], start[1]:stop[1]])
    assert image.calls == 16 and reader.stats()["chunk_reads"] == 16


@pytest.mark.parametrize("independent", [False, True])
def test_read_waits_for_in_flight_prefetch(tmp_path, independent):
    coll, image, data = slow_collection(tmp_path, delay=0.2, independent=independent)
    reader = PatchReader(prefetch_workers=2)
    # Two neighbouring chunks along X: one grouped load for both, or one load
    # each where chunks load best alone (two prefetch threads run them).
    loads = 2 if independent else 1
    reader.prefetch(coll, (0, 0), (16, 32), spatial_axes="YX")
    deadline = time.monotonic() + 5
    while image.calls < loads and time.monotonic() < deadline:  # until the loads are running
        time.sleep(0.005)
    out = reader.read(coll, (0, 0), (16, 32), spatial_axes="YX")["images"]
    assert_identical(out, data[:16, :32])
    assert image.calls == loads
    assert reader.stats()["cache_hits"] == 2 and reader.stats()["chunk_reads"] == 2


def test_prefetch_disabled_is_a_no_op(tmp_path):
    coll, image, _ = slow_collection(tmp_path, delay=0)
    reader = PatchReader(prefetch_workers=0)
    reader.prefetch(coll, (0, 0), (64, 64), spatial_axes="YX")
    assert image.calls == 0 and reader.stats()["chunk_reads"] == 0


def test_prefetch_errors_surface_in_read(tmp_path):
    coll, image, _ = slow_collection(tmp_path, delay=0.05, fail=True)
    reader = PatchReader()
    reader.prefetch(coll, (0, 0), (8, 8), spatial_axes="YX")
    with pytest.raises(ChunkReadError, match="OSError: storage is down") as info:
        reader.read(coll, (0, 0), (8, 8), spatial_axes="YX")
    assert isinstance(info.value.__cause__, OSError)
    image.fail = False
    assert reader.read(coll, (0, 0), (8, 8), spatial_axes="YX")["images"].shape == (8, 8)


def test_reads_from_many_threads(tmp_path):
    coll, image, data = slow_collection(tmp_path, delay=0.005)
    windows = tiling((64, 64), (8, 8)) * 2
    reader = PatchReader()
    outs = [None] * len(windows)

    def work(k):
        for i in range(k, len(windows), 8):
            start, stop = windows[i]
            outs[i] = reader.read(coll, start, stop, spatial_axes="YX")["images"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (start, stop), out in zip(windows, outs):
        assert_identical(out, data[start[0]:stop[0], start[1]:stop[1]])
    assert image.calls == 16


# --------------------------------------------------------------------------- output_axes


def tczyx_collection():
    images = make_data((1, 2, 1, 20, 30), "uint8", 9)
    labels = make_data((10, 15), "int32", 10)
    coll = ImageCollection({
        "images": open_image(images, axes="TCZYX"), "labels": open_image(labels, axes="YX"),
    }, spatial_axes="YX")
    return coll, images, labels


@pytest.mark.parametrize("order", ["CYX", "YXC", "XCY"])
def test_output_axes_drop_transpose_insert(order):
    coll, images, labels = tczyx_collection()
    reader = PatchReader(output_axes={"images": order, "labels": "cyx"})
    out = reader.read(coll, (-2, 4), (10, 20), spatial_axes="YX")
    cyx = padded_window(images[0, :, 0], (0, -2, 4), (2, 12, 16), "constant")
    want = np.transpose(cyx, ["CYX".index(a) for a in order])
    assert_identical(out["images"], np.ascontiguousarray(want))
    assert out["images"].flags.c_contiguous
    assert_identical(out["labels"], padded_window(labels, (-1, 2), (6, 8), "constant")[None])


def test_output_axes_spatial_axis_of_size_one_can_be_dropped():
    volume = make_data((5, 8, 9), "uint8", 11)
    coll = ImageCollection({"images": open_image(volume, axes="ZYX")}, spatial_axes="ZYX")
    out = PatchReader(output_axes={"images": "YX"}).read(coll, (2, 1, 1), (3, 5, 6), spatial_axes="ZYX")
    assert_identical(out["images"], volume[2, 1:5, 1:6])


def test_output_axes_errors():
    coll, _, _ = tczyx_collection()
    with pytest.raises(ZarrsampleError, match=r"output_axes\['images'\]='YX' drops axes .*'C': 2"):
        PatchReader(output_axes={"images": "YX"}).read(coll, (0, 0), (4, 4), spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match=r"\['nope'\].*modalities: \['images', 'labels'\]"):
        PatchReader(output_axes={"nope": "YX"}).read(coll, (0, 0), (4, 4), spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match="unknown axis letters"):
        PatchReader(output_axes={"images": "CYXQ"})
    with pytest.raises(TypeError, match=r"output_axes\['images'\] must be a string"):
        PatchReader(output_axes={"images": 3})
    with pytest.raises(TypeError, match="output_axes must be None or a dict"):
        PatchReader(output_axes=["CYX"])


# --------------------------------------------------------------------------- parameter checks


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("uint8", 256), ("uint8", -1), ("uint8", 1.5), ("int16", 40000), ("bool", 2),
     ("float32", 1e300), ("int32", float("nan"))],
)
def test_pad_value_must_be_representable(dtype, value):
    coll = ImageCollection({"images": open_image(np.zeros((4, 4), dtype), axes="YX")}, spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match=f"pad_value must be representable in dtype {dtype} of modality 'images'"):
        PatchReader(pad_value=value).read(coll, (-1, 0), (2, 2), spatial_axes="YX")


def test_pad_values_that_fit():
    for dtype, value in [("uint8", 255), ("bool", True), ("float32", float("nan")), ("int8", -128)]:
        coll = ImageCollection({"images": open_image(np.zeros((2, 2), dtype), axes="YX")}, spatial_axes="YX")
        out = PatchReader(pad_value=value).read(coll, (-1, 0), (1, 2), spatial_axes="YX")["images"]
        assert_identical(out[:1], np.full((1, 2), value, dtype))


def test_parameter_errors():
    with pytest.raises(ZarrsampleError, match=r"padding_mode must be one of \['constant', 'edge', 'reflect'"):
        PatchReader(padding_mode="mirror")
    with pytest.raises(TypeError, match="pad_value must be a real number"):
        PatchReader(pad_value="0")
    with pytest.raises(ZarrsampleError, match="cache_bytes must be >= 0, got -1"):
        PatchReader(cache_bytes=-1)
    with pytest.raises(TypeError, match="prefetch_workers must be an int"):
        PatchReader(prefetch_workers="2")
    coll = ImageCollection({"images": open_image(np.zeros((4, 4), np.uint8), axes="YX")}, spatial_axes="YX")
    reader = PatchReader()
    with pytest.raises(ZarrsampleError, match=r"start must have one int per axis of spatial_axes='YX' \(2 values\)"):
        reader.read(coll, (0, 0, 0), (1, 1), spatial_axes="YX")
    with pytest.raises(TypeError, match="stop must be integers"):
        reader.read(coll, (0, 0), (1.5, 1), spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match=r"stop must be > start.*axes \['X'\]"):
        reader.read(coll, (0, 2), (1, 2), spatial_axes="YX")
    with pytest.raises(TypeError, match="spatial_axes must be a string"):
        reader.read(coll, (0, 0), (1, 1), spatial_axes=None)


# --------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_pickle_round_trip(tmp_path, backend):
    coll, full, labels = chunk_major_collection(tmp_path, backend)
    reader = PatchReader(padding_mode="edge", output_axes={"images": "YXC"}, cache_bytes=10**6)
    reader.prefetch(coll, (-5, -5), (30, 30), spatial_axes="YX")
    first = reader.read(coll, (-5, -5), (30, 30), spatial_axes="YX")
    assert reader.stats()["chunk_reads"] > 0
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.stats() == {"chunk_reads": 0, "cache_hits": 0, "evictions": 0, "cached_bytes": 0}
    assert repr(clone) == repr(reader)
    again = pickle.loads(pickle.dumps(coll))
    second = clone.read(again, (-5, -5), (30, 30), spatial_axes="YX")
    for name in first:
        assert_identical(second[name], first[name])
    want = expected(full, "CYX", "YX", (-5, -5), (30, 30), (100, 90), "edge")
    assert_identical(first["images"], np.ascontiguousarray(np.moveaxis(want, 0, -1)))


def test_forked_child_starts_with_a_fresh_cache(tmp_path):
    coll, full, _ = chunk_major_collection(tmp_path, "zarr")
    reader = PatchReader()
    reader.read(coll, (0, 0), (8, 8), spatial_axes="YX")
    assert reader.stats()["chunk_reads"] == 2
    reader._pid = -1  # as seen from a fork()ed child: the parent's cache and threads are gone
    assert reader.stats()["chunk_reads"] == 0
    assert_identical(reader.read(coll, (0, 0), (8, 8), spatial_axes="YX")["images"], full[:, :8, :8])


def test_cache_keys_tell_collections_and_keys_apart(tmp_path):
    first = make_data((20, 20), "uint8", 12)
    second = make_data((20, 20), "uint8", 13)
    colls = [
        ImageCollection({"images": open_image(write_zarr(tmp_path / name, data, (8, 8)), axes="YX")}, spatial_axes="YX")
        for name, data in (("a", first), ("b", second))
    ]
    reader = PatchReader()
    for coll, data in zip(colls, (first, second)):  # same key, different images: no mix-up
        assert_identical(reader.read(coll, (2, 2), (9, 9), spatial_axes="YX")["images"], data[2:9, 2:9])
    reader.read(colls[0], (2, 2), (9, 9), spatial_axes="YX", key="other")
    assert reader.stats()["chunk_reads"] == 3 * 4  # the window spans 2 x 2 chunks


def test_prefetch_threads_end_with_the_reader(tmp_path):
    import gc

    coll, _, _ = slow_collection(tmp_path, delay=0)
    before = {t.ident for t in threading.enumerate()}
    reader = PatchReader(prefetch_workers=2)
    reader.prefetch(coll, (0, 0), (64, 64), spatial_axes="YX")
    reader.read(coll, (0, 0), (64, 64), spatial_axes="YX")
    del reader
    gc.collect()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("zarrsample-prefetch") and t.ident not in before for t in threading.enumerate()):
        assert time.monotonic() < deadline, "prefetch threads still alive"
        time.sleep(0.01)
