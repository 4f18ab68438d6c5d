"""Images in an S3 bucket (a moto server on 127.0.0.1), read by both backends: storage options, every worker kind, one-line errors, transient faults, OME-Zarr 0.5 with labels."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import zarr
from conftest import flaky_s3_proxy, s3_options
from torch.utils.data import DataLoader
from zarr.storage import FsspecStore

from zarrsample_core import (
    ChunkReadError,
    ImageCollection,
    PatchDataset,
    PatchSampler,
    ZarrsampleError,
    open_image,
)
from zarrsample_core.reading._faults import is_transient
from zarrsample_torch import PatchIterableDataset

PATCH = 16
BACKENDS = ["zarr", "tensorstore"]
NAMES = ["v2", "v3", "sharded"]


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_exact_pixels_with_storage_options(bucket, s3_server, name, backend):
    url, data = bucket[name]
    image = open_image(url, axes="YX", storage_options=s3_server, backend=backend)
    assert image.backend == backend
    np.testing.assert_array_equal(image.read(), data)
    np.testing.assert_array_equal(image.read((slice(5, 50), slice(7, 79))), data[5:50, 7:79])
    blocks = image.read_many([(slice(0, 16), slice(0, 16)), (slice(30, 64), slice(41, 80))])
    np.testing.assert_array_equal(blocks[1], data[30:64, 41:80])
    again = pickle.loads(pickle.dumps(image))  # by description: the options travel, no session does
    assert again._cache == {}
    np.testing.assert_array_equal(again.read(), data)


def test_the_tensorstore_spec_holds_the_translated_options_and_no_secret(bucket, s3_server):
    image = open_image(bucket["v3"][0], axes="YX", storage_options=s3_server, backend="tensorstore")
    kind, spec, path, keys, located = image._spec
    assert kind == "tensorstore" and spec["driver"] == "zarr3"
    assert spec["kvstore"] == {"driver": "s3", "bucket": "slides", "path": "v3.zarr/", "aws_region": "us-east-1",
                               "endpoint": s3_server["client_kwargs"]["endpoint_url"]}
    assert keys == {"key": "testing", "secret": "testing", "token": None}  # written per process, never in the JSON
    assert located == ("zarr", "url", "s3://slides/v3.zarr", "", 3, s3_server)  # zarr re-reads the metadata


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_users_array_on_s3_travels_as_its_location(bucket, s3_server, backend):
    url, data = bucket["v3"]
    array = zarr.open_array(FsspecStore.from_url(url, storage_options=s3_server, read_only=True), mode="r")
    image = open_image(array, axes="YX", backend=backend)
    if backend == "zarr":
        assert image._spec[:3] == ("zarr", "url", url) and image._spec[5]["key"] == "testing"
    else:
        assert image._spec[1]["kvstore"]["bucket"] == "slides" and image._spec[3]["key"] == "testing"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(image)).read(), data)


# --------------------------------------------------------------------------- workers


def loader_pixels(urls, options, backend, context, parent_reads):
    """Two epochs of a 2-worker DataLoader over the images at ``urls``: [(k, y, x, patch bytes)], planned top-lefts."""
    colls = [ImageCollection({"images": open_image(u, axes="YX", storage_options=options, backend=backend)},
                             spatial_axes="YX") for u in urls]
    ds = PatchDataset(colls, PatchSampler(PATCH, spatial_axes="YX"), shuffle=True, seed=3, return_positions=True)
    if parent_reads:  # the parent opens its own session (or tensorstore) before its workers start
        for k in range(len(colls)):
            ds.reader.read(colls[k], (0, 0), (PATCH, PATCH), spatial_axes="YX", key=k)
    torch_ds = PatchIterableDataset(ds)
    loader = DataLoader(torch_ds, batch_size=None, num_workers=2, multiprocessing_context=context,
                        persistent_workers=True, timeout=120)
    epochs = []
    for epoch in range(2):
        torch_ds.set_epoch(epoch)
        epochs.append([(int(s["image_index"]), *(int(v) for v in s["position"][:, 0]), s["images"].numpy().tobytes())
                       for s in loader])
    wanted = sorted((k, *map(int, row)) for k, plan in enumerate(ds.plans) for row in plan.toplefts)
    return epochs, wanted


_FRESH_PROCESS = """
import pickle, sys
sys.path.insert(0, sys.argv[1])
from test_s3 import loader_pixels
args = pickle.loads(bytes.fromhex(sys.stdin.read()))
sys.stdout.write(pickle.dumps(loader_pixels(*args)).hex())
"""


@pytest.mark.parametrize(("backend", "context"), [
    ("zarr", "fork"), ("zarr", "spawn"), ("tensorstore", "fork"), ("tensorstore", "spawn"),
    ("tensorstore", "forkserver"),
])
def test_workers_read_the_bucket_exactly_every_epoch(bucket, s3_server, backend, context):
    urls = [bucket[n][0] for n in NAMES]
    if backend == "tensorstore" and context == "fork":
        # A training script that opens images with tensorstore and forks its workers. This test
        # process may have read with tensorstore already, after which a fork()ed child must not.
        args = (urls, s3_server, backend, context, False)
        done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, os.path.dirname(__file__)],
                              input=pickle.dumps(args).hex(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        epochs, wanted = pickle.loads(bytes.fromhex(done.stdout))
    else:
        epochs, wanted = loader_pixels(urls, s3_server, backend, context, parent_reads=True)
    for samples in epochs:
        assert sorted(s[:3] for s in samples) == wanted
        for k, y, x, pixels in samples:
            assert pixels == bucket[NAMES[k]][1][y:y + PATCH, x:x + PATCH].tobytes(), (NAMES[k], y, x)


# --------------------------------------------------------------------------- OME-Zarr 0.5 with labels


@pytest.fixture(scope="module")
def ome_image(s3_server):
    """An OME-Zarr 0.5 image (zarr v3) with a labels group, written by ome-zarr-py; the pixels its reader reads."""
    import s3fs
    from ome_zarr.format import FormatV05
    from ome_zarr.io import ZarrLocation
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image, write_labels

    s3fs.S3FileSystem(**s3_server).call_s3("create_bucket", Bucket="ome")
    url = "s3://ome/image.zarr"
    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 255, (2, 128, 96), dtype=np.uint8)
    cells = rng.integers(0, 5, (128, 96), dtype=np.uint16)
    root = zarr.open_group(store=FsspecStore.from_url(url, storage_options=s3_server), mode="w", zarr_format=3)
    write_image(pixels, root, axes="cyx", fmt=FormatV05(), scale_factors=[2],
                storage_options={"chunks": (1, 32, 32)})
    write_labels(cells, root, name="cells", axes="yx", fmt=FormatV05(), scale_factors=[2], scaler=None,
                 storage_options={"chunks": (32, 32)})
    assert root.attrs["ome"]["version"] == "0.5"

    def read_back(where):
        store = FsspecStore.from_url(where, storage_options=s3_server, read_only=True)
        node = next(iter(Reader(ZarrLocation(store, fmt=FormatV05()))()))
        return np.asarray(node.data[0])

    return url, read_back(url), read_back(f"{url}/labels/cells")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ome_zarr_05_image_and_its_label_over_s3(ome_image, s3_server, backend):
    url, pixels, cells = ome_image
    image = open_image(url, storage_options=s3_server, backend=backend)
    label = open_image(url, data_group="labels/cells", storage_options=s3_server, backend=backend)
    assert (image.axes, image.shape, label.axes, label.shape) == ("CYX", (2, 128, 96), "YX", (128, 96))
    assert len(image.levels) == 2
    coll = ImageCollection({"images": image, "labels": label}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(32, stride=24, spatial_axes="YX"), shuffle=True, seed=2,
                      return_positions=True)
    assert len(ds) == 5 * 3  # top-lefts 0, 24, ..., 96 along Y; 0, 24, 48 along X
    for i in range(len(ds)):
        sample = ds[i]
        y, x = (int(v) for v in sample["position"][:, 0])
        np.testing.assert_array_equal(sample["images"], pixels[:, y:y + 32, x:x + 32])
        np.testing.assert_array_equal(sample["labels"], cells[y:y + 32, x:x + 32])


# --------------------------------------------------------------------------- errors


def one_line(exc_info):
    text = str(exc_info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_key_bucket_and_endpoint_are_one_line_naming_the_url(bucket, s3_server, backend, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore would try the dead endpoint for seconds
    with pytest.raises(FileNotFoundError, match=r"'s3://slides/missing.zarr': no zarr array or group found") as info:
        open_image("s3://slides/missing.zarr", axes="YX", storage_options=s3_server, backend=backend)
    one_line(info)
    with pytest.raises(FileNotFoundError, match=r"'s3://no-such-bucket/v3.zarr': bucket 'no-such-bucket' does not exist") as info:
        open_image("s3://no-such-bucket/v3.zarr", axes="YX", storage_options=s3_server, backend=backend)
    one_line(info)
    dead = s3_options("http://127.0.0.1:9")
    with pytest.raises(ZarrsampleError, match=r"^cannot open 's3://slides/v3.zarr': \w+.*127.0.0.1:9") as info:
        open_image(bucket["v3"][0], axes="YX", storage_options=dead, backend=backend)
    one_line(info)


def test_a_store_gone_before_tensorstores_first_read_is_one_line(s3_server):
    import s3fs

    url = "s3://slides/gone.zarr"
    zarr.create_array(store=FsspecStore.from_url(url, storage_options=s3_server), data=np.ones((8, 8), np.uint8))
    image = open_image(url, axes="YX", storage_options=s3_server, backend="tensorstore")  # metadata only
    s3fs.S3FileSystem(**s3_server).rm(url, recursive=True)
    with pytest.raises(ZarrsampleError, match=r"^tensorstore could not open s3://slides/gone.zarr: NOT_FOUND") as info:
        image.read()
    assert "tensorstore_spec" not in one_line(info)


@pytest.mark.parametrize(("options", "match"), [
    ({"anon": True, "config_kwargs": {"signature_version": "s3v4"}}, r"\['config_kwargs'\] .*backend='tensorstore'"),
    ({"client_kwargs": {"verify": False, "region_name": "x"}}, r"\['client_kwargs.verify'\] .*backend='tensorstore'"),
    ({"anon": True, "key": "k", "secret": "s"}, r"anon and key exclude each other"),
    ({"key": "k"}, r"key and secret go together"),
    ({"endpoint_url": "127.0.0.1:9"}, r"endpoint_url must be an http\(s\) URL"),
    ({"endpoint_url": "http://a", "client_kwargs": {"endpoint_url": "http://b"}}, r"endpoint_url .* disagree"),
])
def test_options_tensorstore_cannot_take_are_named_before_any_request(options, match):
    with pytest.raises(ZarrsampleError, match=match) as info:
        open_image("s3://slides/v3.zarr", axes="YX", backend="tensorstore", storage_options=options)
    one_line(info)


def test_gs_options_translate_to_tensorstores_gcs_kvstore():
    from zarrsample_core.sources._tensorstore import check_tensorstore_options, tensorstore_spec

    location = ("url", "gs://bucket/dir", {"token": "anon", "requester_pays": "my-project"})
    assert tensorstore_spec(location, "img.zarr/0", 3, "gs://bucket/dir/img.zarr/0", "FsspecStore")[1] == {
        "driver": "zarr3", "kvstore": {"driver": "gcs", "bucket": "bucket", "path": "dir/img.zarr/0/",
                                        "gcs_user_project": {"project_id": "my-project"}}}
    check_tensorstore_options("gs://bucket/a.zarr", {"anon": True})
    with pytest.raises(ZarrsampleError, match=r"\['token', 'endpoint_url'\] of gs://b/a.zarr .*gcs driver"):
        check_tensorstore_options("gs://b/a.zarr", {"token": "/path/key.json", "endpoint_url": "http://x"})
    check_tensorstore_options("https://h/a.zarr", {"headers": {"a": "b"}})  # http headers translate
    with pytest.raises(ZarrsampleError, match=r"\['timeout'\] of https://h/a.zarr have no tensorstore"):
        check_tensorstore_options("https://h/a.zarr", {"headers": {"a": "b"}, "timeout": 3})


def test_the_command_line_takes_storage_options(bucket, s3_server):
    command = [sys.executable, "-m", "zarrsample_core", "info", bucket["v3"][0], "--json",
               "--storage-options", json.dumps(s3_server)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["shape"] == [64, 80]
    bad = subprocess.run(command[:-1] + ["[1, 2]"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected a JSON object" in bad.stderr
    for url, options, cause in [("s3://slides/missing.zarr", s3_server, "no zarr array or group"),
                                (bucket["v3"][0], s3_options("http://127.0.0.1:9"), "127.0.0.1:9")]:
        out = subprocess.run(command[:4] + [url, "--storage-options", json.dumps(options)],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "AWS_MAX_ATTEMPTS": "1"})
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("zarrsample: error: ") and url in out.stderr and cause in out.stderr


# --------------------------------------------------------------------------- transient faults


#: botocore tries a request once (s3fs' own attempts are a class attribute: see `single_attempts`).
ONE_ATTEMPT = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}


@pytest.fixture
def single_attempts(monkeypatch):
    """s3fs and botocore try each request once, so that failures reach zarrsample's retries."""
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)


def s3fs_error(endpoint, path, **options):
    import s3fs

    fs = s3fs.S3FileSystem(**(options or s3_options(endpoint)), **ONE_ATTEMPT, skip_instance_cache=True)
    try:
        fs.cat_file(path)
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return exc
    raise AssertionError(f"reading {path} did not fail")


def tensorstore_error(endpoint, path):
    import tensorstore as ts

    bucket, key = path.split("/", 1)
    store = ts.KvStore.open({"driver": "s3", "bucket": bucket, "endpoint": endpoint, "aws_region": "us-east-1",
                             "aws_credentials": {"type": "anonymous"},
                             "s3_request_retries": {"max_retries": 1}}).result()
    try:
        store.read(key).result()
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return exc
    raise AssertionError(f"reading {path} did not fail")


def test_s3_errors_are_classified_by_what_they_are(bucket, s3_server, single_attempts):
    endpoint = s3_server["client_kwargs"]["endpoint_url"]
    chunk = "slides/v3.zarr/c/0/0"
    for mode in ("503", "drop"):
        with flaky_s3_proxy(endpoint, fail_every=1, mode=mode) as (proxy, server):
            for error in (s3fs_error(proxy, chunk), tensorstore_error(proxy, chunk)):
                assert is_transient(error), (mode, type(error), error)
            assert server.failures >= 2
    refused = s3fs_error("http://127.0.0.1:9", chunk)  # botocore's EndpointConnectionError
    assert type(refused).__module__.startswith("botocore") and is_transient(refused)
    anonymous = {"anon": True, "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    refusals = [s3fs_error(endpoint, "slides/v3.zarr/c/9/9"), s3fs_error(endpoint, "nobucket/a"),
                s3fs_error(endpoint, chunk, **anonymous), tensorstore_error(endpoint, chunk)]  # 404, 404, 403, 403
    assert [type(e).__name__ for e in refusals] == ["FileNotFoundError", "FileNotFoundError", "PermissionError",
                                                    "ValueError"]
    assert str(refusals[-1]).startswith("PERMISSION_DENIED")
    for error in refusals:
        assert not is_transient(error), (type(error), error)


@pytest.mark.parametrize("mode", ["503", "drop"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_retry_delivers_the_exact_patches_from_a_flaky_s3(bucket, s3_server, single_attempts, backend, mode):
    url, data = bucket["v3"]
    with flaky_s3_proxy(s3_server["client_kwargs"]["endpoint_url"], fail_every=3, mode=mode) as (proxy, server):
        options = s3_options(proxy)
        if backend == "zarr":  # botocore would retry by itself
            options.update(ONE_ATTEMPT)
        coll = ImageCollection({"images": open_image(url, axes="YX", storage_options=options, backend=backend)},
                               spatial_axes="YX")
        ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), return_positions=True, on_error="retry",
                          retries=4, backoff=0.001)
        for sample in ds.epoch(0):
            y, x = (int(v) for v in sample["position"][:, 0])
            np.testing.assert_array_equal(sample["images"], data[y:y + PATCH, x:x + PATCH])
        assert server.failures >= 5  # 20 chunks: every third request failed
        server.fail_every = 1  # and without retries, the failure names the chunk's URL
        ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), read_threads=0)
        with pytest.raises(ChunkReadError, match=r"at s3://slides/v3.zarr/c/0/0\)") as info:
            ds[0]
        assert info.value.transient and "\n" not in str(info.value) and "tensorstore_spec" not in str(info.value)
