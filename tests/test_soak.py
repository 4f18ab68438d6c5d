"""Long-run stability: many shuffled epochs through torch DataLoader workers.

Collected before any test that imports jax (see ``conftest.FORKING_TESTS``):
the DataLoader forks its workers.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import psutil
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_torch import PatchIterableDataset

EPOCHS, WARMUP = 15, 5  # 10 epochs measured after the caches and the allocator are warm
CACHE = 2 * 2**20  # the chunk cache bound per worker: 42 of the 64 chunks (it evicts)
SHAPE, CHUNKS, PATCH = (3, 1024, 1024), (3, 128, 128), 32  # 64 chunks of 48 KiB, 1024 patches


def open_fds(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


@pytest.mark.slow
def test_many_shuffled_epochs_keep_memory_and_file_handles_flat(tmp_path):
    rng = np.random.default_rng(0)
    array = zarr.create_array(store=str(tmp_path / "soak.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="uint8")
    array[...] = rng.integers(0, 256, SHAPE, dtype=np.uint8)  # incompressible: chunks cost their size
    image = open_image(tmp_path / "soak.zarr", axes="CYX")
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), shuffle=True, seed=0, cache_bytes=CACHE,
                      on_error="retry")
    n = len(ds)
    gc.collect()
    fds_before = open_fds()
    others = {p.pid for p in psutil.Process().children()}  # e.g. a forkserver or resource tracker of earlier tests
    start = time.perf_counter()
    loader = DataLoader(PatchIterableDataset(ds), batch_size=64, num_workers=2, persistent_workers=True)
    checksums = []
    for epoch in range(EPOCHS):
        loader.dataset.set_epoch(epoch)
        total, seen = 0, 0
        for batch in loader:
            total += len(batch["images"])
            seen += int(batch["images"].to(torch.int64).sum())
        assert total == n
        checksums.append(seen)
        workers = [p for p in psutil.Process().children() if p.pid not in others]
        assert len(workers) == 2
        if epoch == WARMUP - 1:  # caches full, allocator warm
            warm = {w.pid: (w.memory_info().rss, open_fds(w.pid)) for w in workers}
    end = {w.pid: (w.memory_info().rss, open_fds(w.pid)) for w in workers}
    elapsed = time.perf_counter() - start
    assert set(end) == set(warm)  # the same persistent workers throughout
    for pid, (rss, fds) in end.items():
        assert rss - warm[pid][0] < CACHE, f"worker RSS grew by {(rss - warm[pid][0]) / 2**20:.1f} MiB"
        assert fds == warm[pid][1], f"worker file descriptors {warm[pid][1]} -> {fds}"
    # Every epoch delivers every patch once: the pixel sum is the same for each.
    assert len(set(checksums)) == 1
    del loader, batch
    gc.collect()
    deadline = time.monotonic() + 10
    # The workers exit; a forkserver or resource tracker of earlier tests stays.
    while {p.pid for p in psutil.Process().children()} - others and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds() <= fds_before, "file descriptors leaked in the main process"
    assert elapsed < 60
