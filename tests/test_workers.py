"""Every source kind read by forked, spawned and forkserver DataLoader workers: exact pixels, every epoch.

The references are the writers' own readers (``tifffile.imread`` of the
level, zarr slicing of the array), never zarrsample. The parent reads every
source before the workers start, so a file handle shared across ``fork()``
would show up as decode errors or, worse, as wrong pixels without an error.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from tiff_files import smooth_rgb, write_pyramid
from torch.utils.data import DataLoader

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_torch import PatchIterableDataset

EPOCHS = 3
PATCH = 64


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """[(kind, path, open_image kwargs, the writer's own pixels)]: one image per source kind."""
    root = tmp_path_factory.mktemp("workers")
    images = [smooth_rgb(600, 700, seed=s) for s in range(3)]
    write_pyramid(root / "jpeg.tif", images[0], tile=(128, 128), compression="jpeg", photometric="rgb", levels=2)
    write_pyramid(root / "zlib.tif", images[1], tile=(64, 128), compression="zlib", photometric="rgb", levels=2)
    zarr.create_array(store=str(root / "image.zarr"), data=images[2], chunks=(100, 100, 3))
    return [
        ("jpeg-tiff", str(root / "jpeg.tif"), {}, tifffile.imread(root / "jpeg.tif", level=0)),
        ("zlib-tiff", str(root / "zlib.tif"), {}, tifffile.imread(root / "zlib.tif", level=0)),
        ("zarr", str(root / "image.zarr"), {"axes": "YXC"}, zarr.open_array(str(root / "image.zarr"), mode="r")[:]),
    ]


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_workers_deliver_the_writers_pixels_every_epoch(sources, context):
    colls = [ImageCollection({"images": open_image(path, **kw)}, spatial_axes="YX") for _, path, kw, _ in sources]
    ds = PatchDataset(colls, PatchSampler(PATCH, stride=48, spatial_axes="YX"), shuffle=True, seed=11,
                      return_positions=True)
    for k in range(len(colls)):  # the parent opens and reads every source before its workers start
        ds.reader.read(colls[k], (0, 0), (PATCH, PATCH), spatial_axes="YX", key=k)
    torch_ds = PatchIterableDataset(ds)
    loader = DataLoader(torch_ds, batch_size=None, num_workers=2, multiprocessing_context=context,
                        persistent_workers=True, timeout=120)
    wanted = sorted((k, *map(int, row)) for k, plan in enumerate(ds.plans) for row in plan.toplefts)
    for epoch in range(EPOCHS):
        torch_ds.set_epoch(epoch)
        seen, wrong = [], []
        for sample in loader:
            k = int(sample["image_index"])
            y, x = (int(v) for v in sample["position"][:, 0])
            seen.append((k, y, x))
            got, want = sample["images"].numpy(), sources[k][3][y:y + PATCH, x:x + PATCH]
            if got.shape != want.shape or not np.array_equal(got, want):
                wrong.append((sources[k][0], y, x, np.count_nonzero(got != want) if got.shape == want.shape else -1))
        assert not wrong, f"{context} workers, epoch {epoch}: wrong pixels in (source, y, x, count) {wrong[:5]}"
        assert sorted(seen) == wanted, f"{context} workers, epoch {epoch}: patches missing or repeated"


def test_what_travels_to_a_worker(tmp_path):
    """A re-openable array travels as its location, a MemoryStore with its content, others are refused."""
    import pickle

    from zarr.storage import LocalStore, MemoryStore

    from zarrsample_core import ZarrsampleError

    data = np.arange(64, dtype=np.uint8).reshape(8, 8)
    on_disk = zarr.create_array(store=LocalStore(str(tmp_path / "a.zarr")), data=data, chunks=(4, 4))
    image = open_image(on_disk, axes="YX")
    assert image._spec == ("zarr", "file", str(tmp_path / "a.zarr"), "", 3, None)
    again = pickle.loads(pickle.dumps(image))
    assert again._cache == {}  # no handle travelled: re-opened from the path
    np.testing.assert_array_equal(again.read(), data)
    in_memory = zarr.create_array(store=MemoryStore(), data=data, chunks=(4, 4))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(open_image(in_memory, axes="YX"))).read(), data)

    class OwnStore(MemoryStore):
        """A store zarrsample knows nothing about."""

    own = zarr.create_array(store=OwnStore(), data=data, chunks=(4, 4))
    with pytest.raises(ZarrsampleError, match=r"cannot be sent to another process .* it is in a OwnStore"):
        pickle.dumps(open_image(own, axes="YX"))
