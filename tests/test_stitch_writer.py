"""Background writes of the Stitcher: same result as the synchronous path, errors surface,
the queue stays bounded, and no thread or temporary file outlives close()."""

from __future__ import annotations

import os
import tempfile
import threading
import time

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.storage import MemoryStore

from zarrsample_core.inference._stitch import Stitcher
from zarrsample_core.inference._stitch_blocks import Block
from zarrsample_core.inference._stitch_writer import BlockWriter, block_values


def grid_windows(spatial, patch, stride, pad):
    """All windows (pad included) of a grid whose top-lefts start inside the output."""
    axes = [np.arange(0, n, s) for n, s in zip(spatial, stride)]
    tl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(spatial))
    pad, patch = np.asarray(pad), np.asarray(patch)
    return np.stack([tl - pad, tl + patch + pad], axis=-1).astype(np.int64)


def writer_threads():
    return [t for t in threading.enumerate() if t.name.startswith("zarrsample-stitch")]


class FailingStore(MemoryStore):
    """A memory store whose chunk writes fail from the ``fail_after``-th one on."""

    def __init__(self, fail_after=0):
        super().__init__()
        self.fail_after, self.chunk_writes = fail_after, 0

    async def set(self, key, value, byte_range=None):
        if key.split("/")[-1] != "zarr.json":
            self.chunk_writes += 1
            if self.chunk_writes > self.fail_after:
                raise OSError(f"disk full writing {key}")
        await super().set(key, value, byte_range)


def stitch(out, shape, positions, patches, order, *, threads, plan, chunks=None, **options):
    s = Stitcher(out, shape=shape, chunks=chunks, crop=1, positions=positions if plan else None,
                 write_threads=threads, **options)
    for batch in np.array_split(order, 5):
        s.add(patches[batch], positions[batch])
    return s, s.finalize()


# -- the synchronous path is the reference ------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    spatial=st.tuples(st.integers(20, 56), st.integers(20, 56)),  # at most 14 x 14 chunks per example
    chunk=st.tuples(st.integers(4, 12), st.integers(4, 12)),
    blend=st.sampled_from(["mean", "gaussian", "max"]),
    dtype=st.sampled_from(["float32", "float64", "uint8"]),
    plan=st.booleans(),
    threads=st.integers(1, 3),
    max_bytes=st.sampled_from([0, 5000, 2**24]),
    seed=st.integers(0, 2**16),
)
def test_background_writes_equal_the_synchronous_path(spatial, chunk, blend, dtype, plan, threads, max_bytes,
                                                      seed):
    rng = np.random.default_rng(seed)
    shape = (2, *spatial)
    positions = grid_windows(spatial, (9, 7), (6, 5), (1, 1))
    patches = rng.integers(0, 200, (len(positions), 2, 11, 9)).astype(np.float32)
    order = rng.permutation(len(positions))
    results = []
    for t in (0, threads):
        with tempfile.TemporaryDirectory() as tmp:
            s, out = stitch(os.path.join(tmp, "o.zarr"), shape, positions, patches, order, threads=t, plan=plan,
                            chunks=(2, *chunk), dtype=dtype, blend=blend, max_bytes=max_bytes)
            results.append((out[...], s.stats()))
    (sync, sync_stats), (background, background_stats) = results
    assert background.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(background, sync)
    assert background_stats == sync_stats
    assert sync_stats["chunks_written"] == np.prod([-(-n // c) for n, c in zip(spatial, chunk)])
    assert writer_threads() == []


def test_writes_run_in_background_threads_that_end_with_finalize(tmp_path):
    shape = (96, 96)
    positions = grid_windows(shape, (8, 8), (8, 8), (0, 0))      # 144 windows, 144 chunks of 8 x 8
    s = Stitcher(tmp_path / "o.zarr", shape=shape, chunks=(8, 8), positions=positions, write_threads=2)
    s.add(np.ones((72, 8, 8)), positions[:72])                   # 72 chunks finished: 9 batches
    assert 1 <= len(writer_threads()) <= 2
    s.add(np.ones((72, 8, 8)), positions[72:])
    np.testing.assert_array_equal(s.finalize()[...], 1.0)
    assert writer_threads() == [] and s.stats()["chunks_written"] == 144
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "o.zarr", mode="r")[...], 1.0)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_a_write_error_surfaces_from_finalize(threads):
    store = FailingStore(fail_after=3)
    out = zarr.create_array(store=store, shape=(64, 64), chunks=(8, 8), dtype="float32")
    positions = grid_windows((64, 64), (8, 8), (8, 8), (0, 0))
    s = Stitcher(out, shape=(64, 64), write_threads=threads)
    s.add(np.ones((len(positions), 8, 8)), positions)           # no positions: every write in finalize
    assert store.chunk_writes == 0
    with pytest.raises(OSError, match=r"disk full writing c/"):
        s.finalize()
    with pytest.raises(OSError, match=r"disk full"):             # raised again, never swallowed
        s.finalize()
    s.close()
    assert writer_threads() == []
    assert store.chunk_writes < 64                               # nothing written after the failure but the batch in flight


def test_a_background_write_error_stops_add_and_the_with_block_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = FailingStore(fail_after=0)
    out = zarr.create_array(store=store, shape=(64, 64), chunks=(8, 8), dtype="float32")
    positions = grid_windows((64, 64), (8, 8), (8, 8), (0, 0))
    with pytest.raises(OSError, match=r"disk full"), \
            Stitcher(out, shape=(64, 64), positions=positions, write_threads=1) as s:
        for i in range(len(positions)):                          # the error reaches add or finalize
            s.add(np.ones((8, 8)), positions[i])
    assert writer_threads() == [] and os.listdir(tmp_path) == []
    with pytest.raises(Exception, match="finalized or closed"):
        s.add(np.ones((8, 8)), positions[0])


def test_close_after_an_exception_leaves_no_thread_nor_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    shape = (80, 80)
    positions = grid_windows(shape, (10, 10), (8, 8), (0, 0))
    order = np.random.default_rng(0).permutation(len(positions))
    with pytest.raises(RuntimeError, match="model failed"), \
            Stitcher(tmp_path / "o.zarr", shape=shape, chunks=(8, 8), positions=positions, write_threads=2,
                     max_bytes=8 * 8 * 16 * 4) as s:
        s.add(np.ones((len(order) // 2, 10, 10)), positions[order[: len(order) // 2]])
        stats = s.stats()
        assert stats["chunks_written"] >= 8 and stats["spills"] > 0 and writer_threads()  # a batch handed over
        raise RuntimeError("model failed")
    assert writer_threads() == []
    assert os.listdir(tmp_path / "tmp") == []
    assert s.stats()["pending_chunks"] == 0


# -- the writer itself ---------------------------------------------------------------------------


class SlowArray:
    """An output whose writes wait until ``release`` is set."""

    def __init__(self, shape):
        self.data, self.release = np.zeros(shape), threading.Event()

    def __setitem__(self, selection, values):
        assert self.release.wait(10)
        self.data[selection] = values


def test_the_queue_is_bounded():
    out = SlowArray((1, 20))
    writer = BlockWriter(out, blend="mean", dtype=np.dtype("float64"), threads=1, batch=1)
    returned = []

    def produce():
        for i in range(10):
            writer.submit((slice(None), slice(2 * i, 2 * i + 2)), Block(np.full((1, 2), 2.0 * i), np.ones(2)), (1, 2))
            returned.append(i)

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 5
    while len(returned) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(returned) == 2          # one batch being stored, one queued: the third submit waits
    out.release.set()
    producer.join(10)
    writer.wait()
    writer.close()
    assert len(returned) == 10 and writer_threads() == []
    np.testing.assert_array_equal(out.data[0], np.repeat(2.0 * np.arange(10), 2))


def test_block_values_match_the_normalised_accumulator():
    block = Block(np.array([[3.0, -np.inf, 7.5]]), np.array([2.0, 0.0, 1.0]))
    np.testing.assert_array_equal(block_values(block, "max", np.dtype("float32"), (1, 3)), [[3.0, 0.0, 7.5]])
    block = Block(np.array([[3.0, 0.0, 7.5]]), np.array([2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(block_values(block, "mean", np.dtype("float64"), (1, 3)), [[1.5, 0.0, 2.5]])
    np.testing.assert_array_equal(block_values(block, "mean", np.dtype("int16"), (1, 3)), [[2, 0, 2]])
    assert block_values(None, "gaussian", np.dtype("uint8"), (2, 1, 3)).tolist() == [[[0, 0, 0]]] * 2


def test_a_synchronous_writer_raises_at_once_and_then_writes_nothing():
    store = FailingStore()
    out = zarr.create_array(store=store, shape=(4,), chunks=(2,), dtype="float64")
    writer = BlockWriter(out, blend="mean", dtype=np.dtype("float64"), threads=0, batch=1)
    with pytest.raises(OSError, match="disk full"):
        writer.submit((slice(0, 2),), Block(np.ones(2), np.ones(2)), (2,))
    store.fail_after = 100
    with pytest.raises(OSError, match="disk full"):
        writer.submit((slice(2, 4),), Block(np.ones(2), np.ones(2)), (2,))
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    assert store.chunk_writes == 1
