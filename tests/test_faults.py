"""Read faults: corrupt, truncated and missing chunks, flaky servers, changed sources."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zarr
from conftest import flaky_server, read_only_tree, tree_snapshot

from zarrsample_core import BlueNoisePatchSampler, ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_core._errors import ZarrsampleError
from zarrsample_core.reading._faults import (
    ChunkReadError,
    RetryPolicy,
    SkipLog,
    chunk_key,
    is_transient,
)
from zarrsample_core.reading._reader import PatchReader

SHAPE, CHUNK, PATCH = (64, 64), (16, 16), 8
BAD = (1, 2)  # the chunk that gets corrupted


def write(path, zarr_format=3, fill_value=0):
    data = (np.arange(np.prod(SHAPE)) * 7 % 251).astype(np.uint8).reshape(SHAPE)
    array = zarr.create_array(
        store=str(path), shape=SHAPE, chunks=CHUNK, dtype="uint8", zarr_format=zarr_format,
        fill_value=fill_value,
    )
    array[...] = data
    return data, os.path.join(str(path), array.metadata.encode_chunk_key(BAD))


def dataset(source, backend="zarr", **kwargs):
    image = open_image(source, axes="YX", backend=backend)
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    return PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), return_positions=True, **kwargs)


def bad_patches(ds):
    """Indices whose window touches chunk BAD (naive geometry, pad 0)."""
    lo = np.asarray(BAD) * CHUNK
    out = set()
    for i in range(len(ds)):
        start = ds.plans[0].toplefts[i]
        if np.all(start < lo + CHUNK) and np.all(start + PATCH > lo):
            out.add(i)
    return out


def replacement(i, n, bad):
    """The documented rule, naively: first index i, i+1, ... (wrapping) not in ``bad``."""
    for step in range(n):
        if (i + step) % n not in bad:
            return (i + step) % n
    raise AssertionError("no readable patch")


@pytest.fixture(params=[2, 3], ids=["v2", "v3"])
def corrupt(request, tmp_path):
    """A zarr array whose chunk BAD holds garbage; yields (path, data, chunk file)."""
    data, chunk_file = write(tmp_path / "a.zarr", request.param)
    good = open(chunk_file, "rb").read()
    with open(chunk_file, "wb") as f:
        f.write(b"\x13garbage" * 20)
    yield str(tmp_path / "a.zarr"), data, chunk_file, good


# --------------------------------------------------------------------------- raise


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_raise_names_image_path_chunk_and_window(corrupt, backend):
    path, data, chunk_file, good = corrupt
    ds = dataset(path, backend)  # read-ahead threads on (prefetch=256, read_threads=3)
    key = os.path.relpath(chunk_file, path)
    it = ds.epoch(0)
    with pytest.raises(ChunkReadError) as info:
        for _ in it:
            pass
    error = info.value
    message = str(error)
    assert "\n" not in message
    assert re.search(
        rf"chunk \(1, 2\) \(key '{re.escape(key)}' at {re.escape(path)}/{re.escape(key)}\) of modality "
        rf"'images', image {re.escape(path)} \(array path ''\), for the patch window start=\[16, 32\] "
        r"stop=\[24, 40\] along 'YX'",
        message,
    ), message
    assert (error.chunk_index, error.chunk_key, error.transient) == ((1, 2), key, False)
    assert error.__cause__ is not None and not isinstance(error.__cause__, ZarrsampleError)
    assert it.position == min(bad_patches(ds)) == 24  # chunk-major plan order: tile 6, 4 patches each
    # Nothing bad was cached: once the file is repaired, the same dataset reads it.
    with open(chunk_file, "wb") as f:
        f.write(good)
    patch = ds[it.position]
    assert patch["images"].tobytes() == data[16:24, 32:40].tobytes()


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
@pytest.mark.parametrize("sampler", [PatchSampler(PATCH, spatial_axes="YX"),
                                     BlueNoisePatchSampler(PATCH, seed=0, spatial_axes="YX")])
def test_a_corrupt_mask_chunk_is_a_chunk_read_error_naming_the_mask(corrupt, backend, sampler):
    path, _, chunk_file, _ = corrupt
    image = open_image(np.zeros(SHAPE, np.uint8), axes="YX")
    coll = ImageCollection({"images": image, "masks": open_image(path, axes="YX", backend=backend)},
                           spatial_axes="YX")
    key = os.path.relpath(chunk_file, path)
    for plan in (sampler.plan, lambda c: PatchDataset(c, sampler)):
        with pytest.raises(ChunkReadError) as info:
            plan(coll)
        message = str(info.value)
        assert "\n" not in message
        assert re.search(
            rf"chunk \(1, 2\) \(key '{re.escape(key)}' at {re.escape(path)}/{re.escape(key)}\) of modality "
            rf"'masks', image {re.escape(path)} \(array path ''\), for the sampling mask \(Y 0:64, X 0:64\)",
            message,
        ), message
        assert (info.value.chunk_index, info.value.chunk_key, info.value.transient) == ((1, 2), key, False)
        assert info.value.__cause__ is not None


def test_error_in_a_prefetch_group_does_not_fail_its_neighbours(corrupt):
    path, data, _, _ = corrupt
    image = open_image(path, axes="YX")
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    reader = PatchReader(prefetch_workers=1)
    reader.prefetch(coll, (16, 0), (32, 64), spatial_axes="YX")  # one run: chunks (1, 0)..(1, 3)
    for x in (0, 16, 48):
        out = reader.read(coll, (16, x), (32, x + 16), spatial_axes="YX")["images"]
        assert out.tobytes() == data[16:32, x:x + 16].tobytes()
    with pytest.raises(ChunkReadError, match=r"chunk \(1, 2\)"):
        reader.read(coll, (16, 32), (32, 48), spatial_axes="YX")
    assert reader.stats()["chunk_reads"] == 3


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_truncated_chunk_is_an_error_and_missing_chunk_is_fill_value(tmp_path, zarr_format, backend):
    data, chunk_file = write(tmp_path / "t.zarr", zarr_format, fill_value=7)
    good = open(chunk_file, "rb").read()
    with open(chunk_file, "wb") as f:
        f.write(good[: len(good) // 2])
    reader = PatchReader()
    coll = ImageCollection({"images": open_image(tmp_path / "t.zarr", axes="YX", backend=backend)},
                           spatial_axes="YX")
    with pytest.raises(ChunkReadError, match=r"chunk \(1, 2\)"):
        reader.read(coll, (16, 32), (24, 40), spatial_axes="YX")
    os.remove(chunk_file)
    out = reader.read(coll, (12, 28), (24, 40), spatial_axes="YX")["images"]
    expected = data[12:24, 28:40].copy()
    expected[4:, 4:] = 7  # the missing chunk reads as fill_value, as zarr defines
    assert out.tobytes() == expected.tobytes()


# --------------------------------------------------------------------------- skip


@pytest.mark.parametrize("shuffle", [False, True])
def test_skip_delivers_every_readable_patch_once_plus_replacements(corrupt, shuffle, caplog):
    path, _, _, _ = corrupt
    ds = dataset(path, on_error="skip", shuffle=shuffle, seed=3)
    n = len(ds)
    bad = bad_patches(ds)
    assert len(bad) == 4
    caplog.set_level(logging.WARNING, logger="zarrsample")
    shards = []
    for rank in range(2):
        it = ds.epoch(1, rank=rank, world_size=2)
        got = list(it)
        shards.append((it.indices.copy(), got))
    assert len(shards[0][1]) == len(shards[1][1]) == n // 2  # shard sizes unchanged
    positions = {i: tuple(ds.plans[0].toplefts[i].tolist()) for i in range(n)}
    delivered = []
    for indices, got in shards:
        wanted = [replacement(int(i), n, bad) for i in indices]
        assert [tuple(s["position"][:, 0].tolist()) for s in got] == [positions[j] for j in wanted]
        delivered += wanted
    counts = np.bincount(delivered, minlength=n)
    assert all(counts[i] == 0 for i in bad)
    for i in set(range(n)) - bad:  # once, plus once per bad patch it replaces
        assert counts[i] == 1 + sum(replacement(b, n, bad) == i for b in bad)
    stats = ds.stats()
    assert stats["skipped_patches"] == len(bad) and stats["unreadable_patches"] == len(bad)
    warnings = [r for r in caplog.records if r.name == "zarrsample"]
    assert len(warnings) == 1 and "image 0" in warnings[0].getMessage()
    assert "chunk (1, 2)" in warnings[0].getMessage()


def test_skip_by_index_as_the_adapters_read(corrupt):
    path, _, _, _ = corrupt
    ds = dataset(path, on_error="skip", read_threads=0)
    bad = sorted(bad_patches(ds))
    for i in bad:  # ds[i] (torch map-style, tf, grain) follows the same rule as epochs
        j = replacement(i, len(ds), set(bad))
        assert ds[i]["position"].tolist() == ds[j]["position"].tolist()
    assert ds.stats()["skipped_patches"] == len(bad)



@pytest.mark.parametrize("threads", [0, 3])
def test_skip_reads_a_dead_chunk_once_per_epoch_not_once_per_patch(corrupt, monkeypatch, threads):
    import zarrsample_core.reading._chunk_reads as chunk_reads

    path, _, _, _ = corrupt
    start = tuple(b * c for b, c in zip(BAD, CHUNK))
    reads = []
    original = chunk_reads._read_region

    def counting(image, lo, hi):
        if all(a <= s < b for a, s, b in zip(lo, start, hi)):  # a read that includes the dead chunk
            reads.append(tuple(lo))
        return original(image, lo, hi)

    monkeypatch.setattr(chunk_reads, "_read_region", counting)
    ds = dataset(path, on_error="skip", read_threads=threads)
    assert len(bad_patches(ds)) >= 4  # several patches share the dead chunk
    for epoch in range(2):
        before = len(reads)
        assert len(list(ds.epoch(epoch))) == len(ds)
        assert len(reads) - before <= 2  # once (or once more by a read-ahead group), not per patch
    assert ds.stats()["unreadable_patches"] == len(bad_patches(ds))

def test_skip_with_every_patch_unreadable_raises(tmp_path):
    write(tmp_path / "a.zarr", 3)
    for root, _, files in os.walk(tmp_path / "a.zarr" / "c"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"junk")
    ds = dataset(str(tmp_path / "a.zarr"), on_error="skip")
    with pytest.raises(ZarrsampleError, match=r"no readable patch: all 64 patches failed"):
        next(ds.epoch(0))


def test_skip_log_counts_and_resets_and_pickles():
    log = SkipLog()
    err = ChunkReadError("bad", image="x")

    calls = []

    def read(j):
        calls.append(j)
        if j in (0, 1):
            raise err
        return j

    assert [log.sample(i, 4, read, lambda j: 0) for i in range(4)] == [2, 2, 2, 3]
    assert calls == [0, 1, 2, 2, 2, 3]  # unreadable patches are not read again
    assert log.stats() == {"skipped_patches": 2, "unreadable_patches": 2}
    log.reset()  # forgets them: read again (and counted once, as distinct patches)
    assert log.sample(1, 4, read, lambda j: 0) == 2 and calls[-2:] == [1, 2]
    assert log.stats() == {"skipped_patches": 3, "unreadable_patches": 2}
    import pickle

    assert pickle.loads(pickle.dumps(log)).stats() == {"skipped_patches": 0, "unreadable_patches": 0}


# --------------------------------------------------------------------------- retry over HTTP


@pytest.fixture
def served(tmp_path):
    data, _ = write(tmp_path / "s.zarr", 3)
    write(tmp_path / "s2.zarr", 2)
    return tmp_path, data


def epoch_pixels(ds, epoch=0):
    return [s["images"].tobytes() for s in ds.epoch(epoch)]


@pytest.mark.parametrize("mode", ["503", "drop"])
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
@pytest.mark.parametrize("name", ["s.zarr", "s2.zarr"])
def test_retry_delivers_the_exact_epoch_from_a_flaky_server(served, monkeypatch, mode, backend, name):
    root, _ = served
    local = epoch_pixels(dataset(str(root / name), shuffle=True, seed=1))
    with flaky_server(root, monkeypatch, fail_every=3, mode=mode) as (url, server):
        ds = dataset(f"{url}/{name}", backend, shuffle=True, seed=1, on_error="retry", backoff=0.001)
        assert epoch_pixels(ds) == local
        assert server.failures >= 5  # 16 chunks: every third request failed


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_raise_names_the_url_of_the_failing_chunk(served, monkeypatch, backend):
    root, _ = served
    with flaky_server(root, monkeypatch, fail_every=1) as (url, _):
        ds = dataset(f"{url}/s.zarr", backend, read_threads=0)
        with pytest.raises(ChunkReadError, match=re.escape(f"at {url}/s.zarr/c/0/0)")) as info:
            next(ds.epoch(0))
        assert info.value.transient and info.value.attempts == 1


def test_retry_gives_up_after_its_retries_and_says_so(served, monkeypatch):
    root, _ = served
    with flaky_server(root, monkeypatch, fail_every=1) as (url, server):
        ds = dataset(f"{url}/s.zarr", on_error="retry", retries=2, backoff=0.001, read_threads=0)
        with pytest.raises(ChunkReadError, match=rf"at {re.escape(url)}/s.zarr/c/0/0\).* after 3 attempts"):
            ds[0]
        assert server.chunk_requests == 3



def test_a_stalled_server_times_out_as_a_transient_error(served, monkeypatch):
    root, _ = served
    monkeypatch.setenv("ZARRSAMPLE_HTTP_TIMEOUT", "0.5")
    with flaky_server(root, monkeypatch, fail_every=1, mode="stall") as (url, server):
        ds = dataset(f"{url}/s.zarr", on_error="retry", retries=1, backoff=0.001, read_threads=0)
        start = time.perf_counter()
        with pytest.raises(ChunkReadError, match=r"after 2 attempts") as info:
            ds[0]
        assert time.perf_counter() - start < 10  # not aiohttp's default five minutes
        assert info.value.transient and server.chunk_requests == 2


_TS_STALL = """
import json, sys, time
from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
url = sys.argv[1]
image = open_image(url, axes="YX", backend="tensorstore")
out = {}
start = time.perf_counter()
try:
    image.read((slice(0, 8), slice(0, 8)))
except Exception as exc:
    out["read"] = [type(exc).__name__, str(exc), time.perf_counter() - start]
coll = ImageCollection({"images": image}, spatial_axes="YX")
ds = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), on_error="retry", retries=1, backoff=0.001, read_threads=0)
start = time.perf_counter()
try:
    ds[1]
except Exception as exc:
    out["dataset"] = [type(exc).__name__, str(exc), time.perf_counter() - start, exc.transient]
sys.stdout.write(json.dumps(out) + "\\n")
sys.stdout.flush()
sys.stdin.readline()  # the server stops stalling
out = {"after": ds[1]["images"].tolist()}
sys.stdout.write(json.dumps(out) + "\\n")
"""


def test_a_stalled_server_times_out_with_tensorstore_too(served, monkeypatch):
    """ZARRSAMPLE_HTTP_TIMEOUT bounds tensorstore reads as it bounds zarr's (in a process of its own:
    tensorstore reads its low-speed limit once per process)."""
    root, data = served
    env = {**os.environ, "ZARRSAMPLE_HTTP_TIMEOUT": "1"}
    env.pop("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", None)
    with flaky_server(root, monkeypatch, fail_every=1, mode="stall") as (url, server):
        env.update({k: v for k, v in os.environ.items() if k.lower() == "no_proxy"})
        child = subprocess.Popen([sys.executable, "-c", _TS_STALL, f"{url}/s.zarr"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            failed = json.loads(child.stdout.readline() or "{}")
            server.fail_every = 0
            child.stdin.write("go\n")
            child.stdin.flush()
            after = json.loads(child.stdout.readline() or "{}")
        finally:
            child.kill()
            child.wait()
    kind, message, seconds = failed["read"]
    assert 0.9 < seconds < 3, seconds  # about the timeout, not as long as the server stalls (60 s)
    assert "\n" not in message and f"{url}/s.zarr/c/0/0" in message and "DEADLINE_EXCEEDED" in message
    kind, message, seconds, transient = failed["dataset"]
    assert kind == "ChunkReadError" and transient and seconds < 5
    assert re.search(rf"at {re.escape(url)}/s.zarr/c/0/0\).* after 2 attempts: ValueError: DEADLINE_EXCEEDED", message)
    assert after["after"] == data[0:8, 8:16].tolist()  # the stalled transfers ended: the same chunk reads now


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_the_http_timeout_setting_is_checked(served, monkeypatch, value):
    root, _ = served
    monkeypatch.setenv("ZARRSAMPLE_HTTP_TIMEOUT", value)
    with flaky_server(root, monkeypatch, fail_every=0) as (url, _):
        with pytest.raises(ZarrsampleError, match=r"ZARRSAMPLE_HTTP_TIMEOUT must be a number of seconds > 0"):
            open_image(f"{url}/s.zarr", axes="CYX")

def test_decode_errors_are_not_retried(corrupt, monkeypatch):
    path, _, _, _ = corrupt
    calls = []
    monkeypatch.setattr(time, "sleep", lambda s: calls.append(s))
    ds = dataset(path, on_error="retry", read_threads=0)
    with pytest.raises(ChunkReadError) as info:
        ds[min(bad_patches(ds))]
    assert info.value.attempts == 1 and not info.value.transient and calls == []


# --------------------------------------------------------------------------- retry policy


def test_transient_errors_are_classified():
    aiohttp = pytest.importorskip("aiohttp")
    info = aiohttp.RequestInfo(url=aiohttp.client.URL("http://h/a"), method="GET", headers={}, real_url=None)

    def response(status):
        return aiohttp.ClientResponseError(info, (), status=status)

    transient = [
        ConnectionResetError(), ConnectionRefusedError(), TimeoutError(), response(503), response(500),
        response(429), aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError("cut"),
        ValueError("UNAVAILABLE: Error reading http://h/a: [HTTP code 503]"),
    ]
    permanent = [
        RuntimeError("Zstd decompression error"), response(404), response(403), PermissionError(),
        ValueError("FAILED_PRECONDITION: Truncated Zstd-compressed stream"), ZarrsampleError("x"),
    ]
    assert all(is_transient(e) for e in transient)
    assert not any(is_transient(e) for e in permanent)
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)  # the chain is followed


def test_backoff_is_bounded_exponential_and_deterministic(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    policy = RetryPolicy(retries=4, backoff=0.1)

    def fail():
        raise ConnectionResetError("reset")

    with pytest.raises(Exception, match="reset"):
        policy.call(fail, "chunk (0, 0)")
    assert len(slept) == 4
    for attempt, s in enumerate(slept):
        assert 0.1 * 2**attempt * 0.5 <= s < 0.1 * 2**attempt
    assert sum(slept) < 0.1 * (2**4 - 1)
    assert [policy.delay(a, "chunk (0, 0)") for a in range(4)] == slept
    assert policy.delay(0, "chunk (0, 1)") != slept[0]


def test_retry_parameters_are_checked():
    with pytest.raises(ZarrsampleError, match=r"on_error must be one of \['raise', 'skip', 'retry'\], got 'ignore'"):
        PatchDataset(ImageCollection({"images": open_image(np.zeros((8, 8)), axes="YX")}, spatial_axes="YX"),
                     on_error="ignore")
    with pytest.raises(ZarrsampleError, match=r"backoff must be a finite number of seconds >= 0, got -1"):
        RetryPolicy(retries=1, backoff=-1)
    with pytest.raises(ZarrsampleError, match=r"retries must be >= 0, got -2"):
        PatchReader(retries=-2)


def test_read_ahead_threads_never_hang_on_errors(corrupt):
    path, _, _, _ = corrupt
    ds = dataset(path, on_error="raise", prefetch=64, read_threads=3)
    done = []

    def consume():
        try:
            list(ds.epoch(0))
        except ChunkReadError:
            done.append(True)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(30)
    assert done == [True]


def test_chunk_key_of_a_sharded_array(tmp_path):
    array = zarr.create_array(store=str(tmp_path / "sh.zarr"), shape=(32, 32), chunks=(4, 4),
                              shards=(16, 16), dtype="uint8")
    image = open_image(array, axes="YX")
    assert chunk_key(image, (5, 1)) == "c/1/0"  # inner chunk (5, 1) lives in shard (1, 0)


# --------------------------------------------------------------------------- changed and read-only sources


@pytest.mark.parametrize("change", ["shape", "dtype", "chunks"])
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_source_rewritten_between_epochs_is_refused(tmp_path, change, backend):
    path = tmp_path / "r.zarr"
    write(path, 3)
    ds = dataset(str(path), backend)
    assert len(list(ds.epoch(0))) == 64
    kwargs = {"shape": SHAPE, "chunks": CHUNK, "dtype": "uint8"}
    kwargs[change] = {"shape": (64, 80), "dtype": "uint16", "chunks": (32, 32)}[change]
    shutil.rmtree(path)
    zarr.create_array(store=str(path), fill_value=0, **kwargs)
    with pytest.raises(ZarrsampleError, match=rf"changed on storage since it was opened \({change} "):
        ds.epoch(1)
    unchecked = dataset(str(path), backend, check_sources=False)
    assert len(unchecked.epoch(0)) == len(unchecked)


def test_removed_source_is_refused(tmp_path):
    write(tmp_path / "r.zarr", 2)
    ds = dataset(str(tmp_path / "r.zarr"))
    shutil.rmtree(tmp_path / "r.zarr")
    with pytest.raises(ZarrsampleError, match=r"can no longer be opened as it was"):
        ds.epoch(0)



def test_many_sources_are_checked_at_once_and_the_first_change_is_named(tmp_path, monkeypatch):
    import zarrsample_core.reading._source_checks as validate

    threads = set()
    stored = validate.stored_metadata

    def recording(image):
        threads.add(threading.get_ident())
        return stored(image)

    monkeypatch.setattr(validate, "stored_metadata", recording)
    paths = [tmp_path / f"m{i}.zarr" for i in range(12)]
    for path in paths:
        write(path, 3)
    colls = [ImageCollection({"images": open_image(str(p), axes="YX")}, spatial_axes="YX") for p in paths]
    ds = PatchDataset(colls, PatchSampler(PATCH, spatial_axes="YX"))
    ds.epoch(0)
    assert len(threads) > 1  # more than a few images: read by several threads
    for k in (9, 5):
        shutil.rmtree(paths[k])
        zarr.create_array(store=str(paths[k]), shape=(64, 80), chunks=CHUNK, dtype="uint8")
    with pytest.raises(ZarrsampleError, match=r"collection 5 modality 'images' \(.*m5\.zarr\) changed on storage"):
        ds.epoch(1)

@pytest.mark.parametrize("on_error", ["raise", "skip", "retry"])
def test_read_only_tree_through_the_dataset(tmp_path, on_error):
    data, _ = write(tmp_path / "ro.zarr", 3)
    with read_only_tree(tmp_path / "ro.zarr"):
        before = tree_snapshot(tmp_path / "ro.zarr")
        for backend in ("zarr", "tensorstore"):
            ds = dataset(str(tmp_path / "ro.zarr"), backend, on_error=on_error)
            got = {tuple(s["position"][:, 0]): s["images"] for s in ds.epoch(0)}
            assert all(v.tobytes() == data[y:y + PATCH, x:x + PATCH].tobytes() for (y, x), v in got.items())
            assert len(got) == 64
        assert tree_snapshot(tmp_path / "ro.zarr") == before


def test_a_transient_error_in_a_run_rereads_only_its_chunk():
    from zarrsample_core.reading._chunk_reads import read_run as _read_run

    data = np.arange(4 * 16, dtype=np.uint8).reshape(4, 16)
    image = open_image(data, axes="YX")

    class Flaky:
        name, reads = "flaky", []

        def read_many(self, selections):
            out = [image.read(s) for s in selections]
            out[2] = ConnectionResetError("reset by peer")
            return out

        def read(self, selection):
            self.reads.append(selection)
            return image.read(selection)

    regions = [((0, x), (4, x + 4)) for x in range(0, 16, 4)]
    chunks = list(_read_run(Flaky(), regions, RetryPolicy(retries=2, backoff=0.0), [(0, k) for k in range(4)]))
    assert np.concatenate(chunks, axis=1).tobytes() == data.tobytes()
    assert Flaky.reads == [(slice(0, 4), slice(8, 12))]
