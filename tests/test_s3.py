"""Images in an S3 bucket (a moto server on 127.0.0.1): storage options, every worker kind, one-line errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import zarr
from torch.utils.data import DataLoader
from zarr.storage import FsspecStore

from zarrsample_core import (
    ImageCollection,
    PatchDataset,
    PatchSampler,
    ZarrsampleError,
    open_image,
)
from zarrsample_torch import PatchIterableDataset

PATCH = 16


@pytest.fixture(scope="module")
def bucket(s3_server):
    """name -> (URL, the data written): zarr v2, v3 and sharded v3 arrays in a bucket."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    fs.call_s3("create_bucket", Bucket="slides")
    rng = np.random.default_rng(5)
    arrays = {}
    for name, kwargs in [("v2", {"zarr_format": 2}), ("v3", {}), ("sharded", {"shards": (32, 40)})]:
        data = rng.integers(0, 60000, (64, 80), dtype=np.uint16)
        url = f"s3://slides/{name}.zarr"
        store = FsspecStore.from_url(url, storage_options=s3_server)
        zarr.create_array(store=store, data=data, chunks=(16, 16) if name != "sharded" else (8, 8), **kwargs)
        # the writer's own reader gives back what was written
        again = zarr.open_array(FsspecStore.from_url(url, storage_options=s3_server, read_only=True), mode="r")
        np.testing.assert_array_equal(again[:], data)
        arrays[name] = (url, data)
    return arrays


@pytest.mark.parametrize("name", ["v2", "v3", "sharded"])
def test_exact_pixels_with_storage_options(bucket, s3_server, name):
    url, data = bucket[name]
    image = open_image(url, axes="YX", storage_options=s3_server)
    np.testing.assert_array_equal(image.read(), data)
    np.testing.assert_array_equal(image.read((slice(5, 50), slice(7, 79))), data[5:50, 7:79])
    again = pickle.loads(pickle.dumps(image))  # by description: the options travel, no session does
    assert again._cache == {}
    np.testing.assert_array_equal(again.read(), data)


def test_a_users_array_on_s3_travels_as_its_location(bucket, s3_server):
    url, data = bucket["v3"]
    array = zarr.open_array(FsspecStore.from_url(url, storage_options=s3_server, read_only=True), mode="r")
    image = open_image(array, axes="YX")
    assert image._spec[:3] == ("zarr", "url", url) and image._spec[5]["key"] == "testing"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(image)).read(), data)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_read_the_bucket_exactly_every_epoch(bucket, s3_server, context):
    names = ["v2", "v3", "sharded"]
    colls = [ImageCollection({"images": open_image(bucket[n][0], axes="YX", storage_options=s3_server)},
                             spatial_axes="YX") for n in names]
    ds = PatchDataset(colls, PatchSampler(PATCH, spatial_axes="YX"), shuffle=True, seed=3, return_positions=True)
    for k in range(len(colls)):  # the parent opens its own session first
        ds.reader.read(colls[k], (0, 0), (PATCH, PATCH), spatial_axes="YX", key=k)
    torch_ds = PatchIterableDataset(ds)
    loader = DataLoader(torch_ds, batch_size=None, num_workers=2, multiprocessing_context=context,
                        persistent_workers=True, timeout=120)
    wanted = sorted((k, *map(int, row)) for k, plan in enumerate(ds.plans) for row in plan.toplefts)
    for epoch in range(2):
        torch_ds.set_epoch(epoch)
        seen = []
        for sample in loader:
            k = int(sample["image_index"])
            y, x = (int(v) for v in sample["position"][:, 0])
            seen.append((k, y, x))
            np.testing.assert_array_equal(sample["images"].numpy(), bucket[names[k]][1][y:y + PATCH, x:x + PATCH])
        assert sorted(seen) == wanted


def test_errors_are_one_line_and_name_the_url(bucket, s3_server, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'s3://slides/missing.zarr': no zarr array or group found"):
        open_image("s3://slides/missing.zarr", axes="YX", storage_options=s3_server)
    dead = {**s3_server, "client_kwargs": {**s3_server["client_kwargs"], "endpoint_url": "http://127.0.0.1:9"}}
    with pytest.raises(ZarrsampleError, match=r"^cannot open 's3://slides/v3.zarr': \w+.*127.0.0.1:9") as info:
        open_image(bucket["v3"][0], axes="YX", storage_options=dead)
    assert "\n" not in str(info.value)
    with pytest.raises(ZarrsampleError, match=r"storage_options apply to URLs .* but the source is '"):
        open_image(str(tmp_path), storage_options={"anon": True})
    with pytest.raises(TypeError, match=r"storage_options must be a dict"):
        open_image(bucket["v3"][0], storage_options=["anon"])
    with pytest.raises(ZarrsampleError, match=r"apply to backend='zarr', got backend='tensorstore'"):
        open_image(bucket["v3"][0], axes="YX", backend="tensorstore", storage_options=s3_server)


def test_the_command_line_takes_storage_options(bucket, s3_server):
    command = [sys.executable, "-m", "zarrsample_core", "info", bucket["v3"][0], "--json",
               "--storage-options", json.dumps(s3_server)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["shape"] == [64, 80]
    bad = subprocess.run(command[:-1] + ["[1, 2]"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected a JSON object" in bad.stderr
