"""Sharded zarr v3 arrays: exact inner chunks, each shard's index read once, few range requests."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from range_server import range_server

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_core.sources._shards import sharded_chunks


@settings(max_examples=20)  # each example writes an array
@given(
    data=st.data(),
    dtype=st.sampled_from(["uint8", "<u2", "float32", "int16"]),
    compressor=st.sampled_from(["zstd", "blosc", None]),
    shape=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    inner=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    per_shard=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    at_start=st.booleans(),
    holes=st.booleans(),
)
def test_inner_chunks_equal_zarr(tmp_path_factory, data, dtype, compressor, shape, inner, per_shard, at_start, holes):
    from zarr.codecs import BloscCodec, ShardingCodec, ZstdCodec

    path = tmp_path_factory.mktemp("shards") / "a.zarr"
    shards = tuple(c * p for c, p in zip(inner, per_shard))
    compressors = {"zstd": ZstdCodec(level=1), "blosc": BloscCodec(cname="lz4"), None: None}[compressor]
    array = zarr.create_array(store=str(path), shape=shape, chunks=inner, shards=shards, dtype=dtype,
                              compressors=compressors, fill_value=3, zarr_format=3)
    if at_start:  # index_location="start": rewrite the metadata's codec
        array = zarr.create_array(
            store=str(path), shape=shape, dtype=dtype, fill_value=3, zarr_format=3, overwrite=True,
            chunks=shards, serializer=ShardingCodec(chunk_shape=inner, index_location="start",
                                                    codecs=[zarr.codecs.BytesCodec(), *([compressors] if compressors else [])]),
            compressors=None,
        )
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    values = (rng.random(shape) * 200).astype(dtype)
    if holes:  # the first inner chunk row of every shard row stays unwritten, and values equal to fill vanish
        values[: inner[0]] = 3
    array[...] = values
    expected = zarr.open_array(str(path), mode="r")
    assert sharded_chunks(expected) is not None
    image = open_image(str(path), axes="YX")
    selections, wanted = [], []
    for y in range(0, shape[0], inner[0]):
        for x in range(0, shape[1], inner[1]):
            y1, x1 = min(y + inner[0], shape[0]), min(x + inner[1], shape[1])
            a, b = data.draw(st.integers(y, y1 - 1)), data.draw(st.integers(x, x1 - 1))
            for sel in ((slice(y, y1), slice(x, x1)), (slice(a, y1), slice(b, x1))):
                selections.append(sel)
                wanted.append(expected[sel])
    for got, want in zip(image.read_many(selections), wanted):
        assert not isinstance(got, Exception), got
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    np.testing.assert_array_equal(image.read(selections[-1]), wanted[-1])
    shards_total = int(np.prod([-(-n // s) for n, s in zip(shape, shards)]))
    assert image.shard_index_reads <= shards_total


@pytest.fixture(scope="module")
def sharded_tree(tmp_path_factory):
    """(3, 256, 256) uint8: 64 inner chunks of 32 x 32 in 4 shards of 128 x 128."""
    root = tmp_path_factory.mktemp("sharded")
    values = np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8)
    zarr.create_array(store=str(root / "s.zarr"), data=values, chunks=(3, 32, 32), shards=(3, 128, 128),
                      zarr_format=3)
    return root, values


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
@pytest.mark.parametrize("order", [{}, {"shuffle": True, "draw_same_chunk": True}])
def test_an_epoch_over_http_reads_each_shard_index_once_in_few_requests(sharded_tree, backend, order):
    root, values = sharded_tree
    with range_server(root) as (url, server):
        coll = ImageCollection({"images": open_image(f"{url}/s.zarr", axes="CYX", backend=backend)},
                               spatial_axes="YX")
        ds = PatchDataset(coll, PatchSampler(32, spatial_axes="YX"), return_positions=True, seed=1, **order)
        server.requests.clear()
        samples = list(ds.epoch(0))
        data = sum(n for path, n in server.requests.items() if "/c/" in path)
    assert len(samples) == 64
    for s in samples:
        (y0, y1), (x0, x1) = s["position"]
        np.testing.assert_array_equal(s["images"], values[:, y0:y1, x0:x1])
    # At most one index read per shard plus one request per run of neighbours (<= 68); loads are
    # grouped by shard, so a run is most of a shard (was 80 requests with zarr, 44-48 with tensorstore).
    assert data <= 4 + 16, server.requests
    stats = ds.stats()
    assert stats["chunk_reads"] == 64
    if backend == "zarr":
        assert stats["shard_index_reads"] == 4


def test_a_missing_shard_reads_as_the_fill_value(tmp_path):
    path = tmp_path / "m.zarr"
    array = zarr.create_array(store=str(path), shape=(8, 8), chunks=(2, 2), shards=(4, 4), dtype="uint8",
                              fill_value=9, zarr_format=3)
    array[:4, :4] = 1  # only the first shard exists
    image = open_image(str(path), axes="YX")
    got = image.read_many([(slice(0, 2), slice(0, 2)), (slice(4, 6), slice(6, 8))])
    np.testing.assert_array_equal(got[0], 1)
    np.testing.assert_array_equal(got[1], 9)


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_http_headers_in_storage_options_reach_the_server(sharded_tree, backend):
    from zarrsample_core import ZarrsampleError

    root, values = sharded_tree
    with range_server(root, required_header=("Authorization", "Bearer t0ken")) as (url, _):
        options = {"headers": {"Authorization": "Bearer t0ken"}}
        image = open_image(f"{url}/s.zarr", axes="CYX", backend=backend, storage_options=options)
        np.testing.assert_array_equal(image.read((slice(None), slice(0, 40), slice(30, 70))), values[:, :40, 30:70])
        with pytest.raises((ZarrsampleError, OSError, PermissionError)):
            open_image(f"{url}/s.zarr", axes="CYX", backend=backend).read()
    if backend == "tensorstore":
        with pytest.raises(ZarrsampleError, match=r"\['timeout'\].*tensorstore"):
            open_image(f"{url}/s.zarr", axes="CYX", backend=backend, storage_options={"timeout": 3})
