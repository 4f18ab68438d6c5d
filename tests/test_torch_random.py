"""Random crops through torch DataLoader workers started by fork, spawn and forkserver: every pixel checked."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zarr  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from zarrsample_core import ImageCollection, PatchDataset, RandomPatchSampler, open_image  # noqa: E402
from zarrsample_torch import PatchIterableDataset, PatchMapDataset  # noqa: E402


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    root = tmp_path_factory.mktemp("random-workers")
    pixels = np.random.default_rng(0).integers(0, 60000, (96, 120), dtype=np.uint16)
    array = zarr.create_array(store=str(root / "image.zarr"), shape=pixels.shape, chunks=(32, 32), dtype="uint16")
    array[...] = pixels
    mask = np.zeros((12, 15), bool)
    mask[2:10, 3:13] = True
    return root / "image.zarr", pixels, mask


def dataset(slide, **kwargs):
    path, _, mask = slide
    coll = ImageCollection({"images": open_image(path, axes="YX"), "masks": open_image(mask, axes="YX")},
                           spatial_axes="YX")
    sampler = RandomPatchSampler(16, 40, min_area=0.75, spatial_axes="YX", seed=4)
    return PatchDataset(coll, sampler, return_positions=True, **kwargs)


def check_pixels(samples, pixels):
    keys = []
    for s in samples:
        positions, images = np.asarray(s["position"]).reshape(-1, 2, 2), np.asarray(s["images"]).reshape(-1, 16, 16)
        for position, image in zip(positions, images):
            (y0, y1), (x0, x1) = position
            np.testing.assert_array_equal(image, pixels[y0:y1, x0:x1])
            keys.append((int(y0), int(x0)))
    return keys


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_map_style_workers_read_the_epoch_set_before_they_start(slide, context):
    ds = dataset(slide)
    map_ds = PatchMapDataset(ds)
    map_ds.set_epoch(3)
    loader = DataLoader(map_ds, batch_size=8, num_workers=2, multiprocessing_context=context, timeout=60)
    keys = check_pixels(loader, slide[1])
    expected = [tuple(t) for t in ds.sampler.epoch_plan(ds.collections[0], epoch=3).toplefts.tolist()]
    assert keys == expected and len(keys) == 40
    assert keys != [tuple(t) for t in ds.sampler.epoch_plan(ds.collections[0], epoch=0).toplefts.tolist()]


@pytest.mark.parametrize("context", ["fork", "spawn"])  # forkserver pickles as spawn does (map-style test above)
def test_iterable_workers_draw_each_epoch_anew(slide, context):
    ds = dataset(slide, shuffle=True, draw_same_chunk=True)
    torch_ds = PatchIterableDataset(ds)
    loader = DataLoader(torch_ds, batch_size=None, num_workers=2, multiprocessing_context=context, timeout=60,
                        persistent_workers=True)  # the epoch reaches live workers
    per_epoch = []
    for epoch in (0, 1):
        torch_ds.set_epoch(epoch)
        keys = check_pixels(loader, slide[1])
        core = [tuple(int(v) for v in s["position"][:, 0])
                for w in range(2) for s in ds.epoch(epoch, worker=w, num_workers=2)]
        assert sorted(keys) == sorted(core)
        per_epoch.append(sorted(keys))
    assert per_epoch[0] != per_epoch[1]
