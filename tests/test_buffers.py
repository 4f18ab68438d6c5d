"""Recycled chunk buffers (sources/_buffers): memory returns only when no array uses it."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_core.sources._buffers import POOL, BufferPool


def test_a_buffer_returns_when_its_last_view_is_gone():
    pool = BufferPool(1000)
    a = pool.take(100)
    assert a.shape == (100,) and a.dtype == np.uint8 and a.flags.writeable
    view = a.reshape(10, 10)[2:5]
    del a
    gc.collect()
    assert pool.spare_bytes == 0  # the view still uses the memory
    other = pool.take(100)
    assert not np.shares_memory(other, view) and pool.reused == 0
    del view
    assert pool.spare_bytes == 100
    b = pool.take(100)
    assert pool.spare_bytes == 0 and pool.reused == 1
    c = pool.take(100)  # none spare: a new one
    assert not np.shares_memory(b, c) and not np.shares_memory(b, other)


def test_large_buffers_are_mapped_with_their_pages_and_recycled_alike():
    pool = BufferPool(8 << 20)
    a = pool.take(2 << 20)  # above POPULATE_BYTES: an anonymous mapping on Linux
    a[...] = 7
    a[-1] = 9
    address, view = a.ctypes.data, a[-16:]
    del a
    assert pool.spare_bytes == 0 and view[-1] == 9 and (view[:-1] == 7).all()
    del view
    assert pool.spare_bytes == 2 << 20
    b = pool.take(2 << 20)
    assert b.ctypes.data == address and b.flags.writeable


def test_the_pool_keeps_at_most_max_bytes():
    pool = BufferPool(250)
    arrays = [pool.take(100) for _ in range(4)] + [pool.take(300)]
    del arrays
    assert pool.spare_bytes == 200  # two of 100 kept, the rest freed (300 never fits)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["take", "view", "drop"]), st.integers(0, 7), st.sampled_from([8, 16])),
                    max_size=60))
def test_no_two_live_arrays_share_memory(ops):
    # Against a naive model: every array handed out and still reachable (itself
    # or a view of it) owns its memory alone, whatever the order of drops.
    pool = BufferPool(64)
    live: list[tuple[int, np.ndarray]] = []
    for op, k, size in ops:
        if op == "take":
            array = pool.take(size)
            array[...] = len(live) % 251
            live.append((len(live) % 251, array))
        elif op == "view" and live:
            mark, array = live.pop(k % len(live))
            live.append((mark, array.reshape(-1, 4)[1:]))  # only a view keeps it now
        elif op == "drop" and live:
            live.pop(k % len(live))
        for i, (mark, array) in enumerate(live):
            assert (array == mark).all()
            assert not any(np.shares_memory(array, other) for _, other in live[i + 1:])
        assert pool.spare_bytes <= 64


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_an_epoch_over_a_small_cache_decodes_into_recycled_memory(tmp_path, backend):
    data = np.random.default_rng(11).integers(0, 2**16, (3, 128, 128), dtype=np.uint16)
    array = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=data.shape, chunks=(3, 32, 32), dtype="uint16")
    array[...] = data
    coll = ImageCollection({"images": open_image(str(tmp_path / "a.zarr"), axes="CYX", backend=backend)},
                           spatial_axes="YX")
    chunk = 3 * 32 * 32 * 2
    ds = PatchDataset(coll, PatchSampler(16, spatial_axes="YX"), cache_bytes=4 * chunk, shuffle=True,
                      return_positions=True)
    before = POOL.reused
    for epoch in range(2):
        for s in ds.epoch(epoch):
            (y0, y1), (x0, x1) = s["position"]
            assert np.array_equal(s["images"], data[:, y0:y1, x0:x1])
    assert ds.stats()["evictions"] > 0 and POOL.reused > before
