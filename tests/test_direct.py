"""Chunks of local zarr arrays decoded directly (sources/_direct) equal zarr-python's reads."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_core.sources._direct import chunk_files

COMPRESSORS = ["zstd", "blosc", "gzip", None]


def compressor(name, fmt):
    if name is None:
        return None
    if fmt == 3:
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        return {"zstd": ZstdCodec(level=1), "blosc": BloscCodec(cname="lz4"), "gzip": GzipCodec(level=1)}[name]
    import numcodecs

    return {"zstd": numcodecs.Zstd(level=1), "blosc": numcodecs.Blosc(cname="lz4"), "gzip": numcodecs.GZip(level=1)}[name]


@settings(max_examples=60)  # each example writes an array: 150 would cost ~10 s
@given(
    data=st.data(),
    fmt=st.sampled_from([2, 3]),
    dtype=st.sampled_from(["uint8", "<u2", ">u2", "float32", ">f8", "int16", "bool"]),
    name=st.sampled_from(COMPRESSORS),
    shape=st.tuples(st.integers(1, 23), st.integers(1, 23)),
    chunks=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    missing=st.booleans(),
    separator=st.sampled_from([".", "/"]),
)
def test_every_chunk_region_equals_zarr(tmp_path_factory, data, fmt, dtype, name, shape, chunks, missing, separator):
    path = tmp_path_factory.mktemp("direct") / "a.zarr"
    dt = np.dtype(dtype)
    if fmt == 3 and dt.byteorder == ">":
        dt = dt.newbyteorder("<")  # zarr v3 stores the byte order in its bytes codec
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    values = (rng.random(shape) * 1000).astype(dt) if dt.kind != "b" else rng.random(shape) > 0.5
    kwargs = dict(compressors=compressor(name, fmt)) if name else dict(compressors=None)
    if fmt == 2:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": separator}
    elif separator == ".":
        kwargs["chunk_key_encoding"] = {"name": "default", "separator": "."}
    array = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dt, zarr_format=fmt,
                              fill_value=data.draw(st.sampled_from([0, 1]), "fill"), **kwargs)
    if missing:  # leave the first chunk row unwritten: its chunks read as the fill value
        if shape[0] > chunks[0]:
            array[chunks[0]:, :] = values[chunks[0]:, :]
    else:
        array[...] = values
    expected = zarr.open_array(str(path), mode="r")
    assert chunk_files(expected) is not None
    image = open_image(str(path), axes="YX")
    assert image._chunk_files() is not None
    for y in range(0, shape[0], chunks[0]):
        for x in range(0, shape[1], chunks[1]):
            y1, x1 = min(y + chunks[0], shape[0]), min(x + chunks[1], shape[1])
            # a whole chunk, and a random part of it
            a, b = data.draw(st.integers(y, y1 - 1)), data.draw(st.integers(x, x1 - 1))
            for sel in ((slice(y, y1), slice(x, x1)), (slice(a, y1), slice(b, x1))):
                got, want = image.read(sel), expected[sel]
                assert got.dtype == want.dtype.newbyteorder("=") and got.dtype.isnative
                np.testing.assert_array_equal(got, want)
                assert got.flags.writeable and got.flags.c_contiguous


def test_unsupported_layouts_go_through_zarr(tmp_path):
    import numcodecs

    data = np.arange(60, dtype=np.int32).reshape(6, 10)
    cases = {
        "filters": dict(zarr_format=2, filters=[numcodecs.Delta(dtype="int32")]),
        "sharded": dict(zarr_format=3, shards=(6, 10)),
        "fortran": dict(zarr_format=2, order="F"),
    }
    for name, kwargs in cases.items():
        path = str(tmp_path / f"{name}.zarr")
        zarr.create_array(store=path, data=data, chunks=(3, 5), **kwargs)
        assert chunk_files(zarr.open_array(path, mode="r")) is None, name
        image = open_image(path, axes="YX")
        np.testing.assert_array_equal(image.read((slice(0, 3), slice(5, 10))), data[:3, 5:])
    memory = zarr.create_array(store=zarr.storage.MemoryStore(), data=data, chunks=(3, 5))
    assert chunk_files(memory) is None


def test_a_corrupt_chunk_file_fails_the_patch_with_its_key(tmp_path):
    from zarrsample_core import ChunkReadError

    path = tmp_path / "a.zarr"
    zarr.create_array(store=str(path), data=np.arange(64, dtype=np.uint16).reshape(8, 8), chunks=(4, 4))
    (path / "c" / "1" / "0").write_bytes(b"garbage")
    coll = ImageCollection({"images": open_image(str(path), axes="YX")}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(4, spatial_axes="YX"))
    with pytest.raises(ChunkReadError, match=r"c/1/0"):
        list(ds.epoch(0))
