"""Tests of open_image / Image: zarr v2/v3, OME-Zarr, ROI, backends, errors."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import read_only_tree, serve_directory
from conftest import tree_snapshot as snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrsample_core._errors import ZarrsampleError
from zarrsample_core.sources._image import Image
from zarrsample_core.sources._io import open_image
from zarrsample_core.sources._ome import axis_letters, read_multiscale, resolve_axes
from zarrsample_core.sources._roi import parse_roi

# --------------------------------------------------------------------------- helpers


def data_of(shape, dtype="uint16", seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 60000, size=shape).astype(dtype)


def write_array(path, data, *, zarr_format, chunks=None, **kwargs):
    chunks = chunks or tuple(max(1, n // 2 + 1) for n in data.shape)
    array = zarr.create_array(
        store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
        zarr_format=zarr_format, **kwargs,
    )
    array[...] = data
    return array


def write_ome(path, data, axes, *, zarr_format, n_levels=3):
    """An OME-Zarr image group; v0.4 for zarr v2, v0.5 for zarr v3."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    levels, datasets = [], []
    spatial = [i for i, a in enumerate(axes.upper()) if a in "ZYX"]
    for i in range(n_levels):
        index = tuple(slice(None, None, 2**i) if d in spatial else slice(None) for d in range(data.ndim))
        level = np.ascontiguousarray(data[index])
        chunks = tuple(max(1, n // 2) for n in level.shape)
        group.create_array(str(i), shape=level.shape, chunks=chunks, dtype=level.dtype)[...] = level
        levels.append(level)
        scale = [2.0**i if d in spatial else 1.0 for d in range(data.ndim)]
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    kinds = {"T": "time", "C": "channel"}
    multiscale = {
        "axes": [{"name": a, "type": kinds.get(a.upper(), "space")} for a in axes],
        "datasets": datasets,
    }
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return group, levels


def random_selection(draw_int, shape):
    sel = []
    for n in shape:
        start = draw_int(0, n)
        sel.append(slice(start, draw_int(start, n)))
    return tuple(sel)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """Arrays and groups shared by read-only tests (nothing may modify them)."""
    root = tmp_path_factory.mktemp("stores")
    data = data_of((7, 9, 11))
    write_array(root / "v2.zarr", data, zarr_format=2, chunks=(3, 4, 5))
    write_array(root / "v3.zarr", data, zarr_format=3, chunks=(3, 4, 5), dimension_names=["c", "y", "x"])
    write_array(root / "v3_plain.zarr", data, zarr_format=3, chunks=(3, 4, 5))
    write_array(root / "v2_be.zarr", data.astype(">u2"), zarr_format=2, chunks=(3, 4, 5))
    write_array(root / "v3_sharded.zarr", data, zarr_format=3, chunks=(2, 3, 3), shards=(4, 6, 6))
    plain = zarr.open_group(str(root / "plain.zarr"), mode="w", zarr_format=2)
    plain.create_array("0", shape=data.shape, chunks=(3, 4, 5), dtype=data.dtype)[...] = data
    masks = plain.create_group("labels").create_group("masks")
    masks.create_array("0", shape=(9, 11), chunks=(4, 4), dtype="uint8")[...] = data[0] % 2
    cyx = data_of((3, 16, 20), seed=1)
    _, cyx_levels = write_ome(root / "ome04_cyx.zarr", cyx, "cyx", zarr_format=2)
    tczyx = data_of((2, 2, 3, 8, 10), "float32", seed=2)
    _, tczyx_levels = write_ome(root / "ome04_tczyx.zarr", tczyx, "tczyx", zarr_format=2)
    group, ome05_levels = write_ome(root / "ome05.zarr", cyx, "cyx", zarr_format=3)
    labels = group.create_group("labels")
    write_ome(root / "ome05.zarr" / "labels" / "cells", cyx[:1] % 3, "cyx", zarr_format=3, n_levels=2)
    del labels
    (root / "not_zarr").mkdir()
    (root / "not_zarr" / "readme.txt").write_text("hello")
    return {
        "root": root, "data": data, "cyx": cyx_levels, "tczyx": tczyx_levels, "ome05": ome05_levels,
    }


# --------------------------------------------------------------------------- plain arrays


@pytest.mark.parametrize("name", ["v2.zarr", "v3_plain.zarr"])
def test_plain_array_with_explicit_axes(store_dir, name):
    image = open_image(store_dir["root"] / name, axes="cyx")
    assert (image.axes, image.shape, image.chunks, image.ndim) == ("CYX", (7, 9, 11), (3, 4, 5), 3)
    assert image.dtype == np.uint16 and image.origin == (0, 0, 0)
    assert (image.level, image.levels, image.backend) == (0, ((7, 9, 11),), "zarr")
    np.testing.assert_array_equal(image.read(), store_dir["data"])


def test_v3_dimension_names_give_axes(store_dir):
    image = open_image(str(store_dir["root"] / "v3.zarr"))
    assert image.axes == "CYX"
    assert open_image(store_dir["root"] / "v3.zarr", axes="CYX").axes == "CYX"
    with pytest.raises(ZarrsampleError, match=r"axes='ZYX' disagrees with the zarr dimension_names.*'CYX'"):
        open_image(store_dir["root"] / "v3.zarr", axes="ZYX")


@pytest.mark.parametrize("name", ["v2.zarr", "v3_plain.zarr"])
def test_plain_array_requires_axes(store_dir, name):
    with pytest.raises(ValueError, match=r"axes is required .*ndim=3"):
        open_image(store_dir["root"] / name)


def test_big_endian_and_sharded_arrays(store_dir):
    for name in ("v2_be.zarr", "v3_sharded.zarr"):
        for backend in ("zarr", "tensorstore"):
            image = open_image(store_dir["root"] / name, axes="CYX", backend=backend)
            out = image.read((slice(1, 5), slice(2, 9), slice(0, 11)))
            assert out.dtype == np.dtype("uint16") and out.dtype.isnative
            np.testing.assert_array_equal(out, store_dir["data"][1:5, 2:9, :])
            assert image.is_sharded == (name == "v3_sharded.zarr")
    assert open_image(store_dir["root"] / "v3_sharded.zarr", axes="CYX").chunks == (2, 3, 3)
    assert not open_image(store_dir["data"], axes="CYX").is_sharded


def test_zarr_objects_as_source(store_dir):
    array = zarr.open_array(str(store_dir["root"] / "v2.zarr"), mode="r")
    image = open_image(array, axes="CYX")
    np.testing.assert_array_equal(image.read(), store_dir["data"])
    group = zarr.open_group(str(store_dir["root"] / "ome04_cyx.zarr"), mode="r")
    image = open_image(group, level=1, backend="tensorstore")
    np.testing.assert_array_equal(image.read(), store_dir["cyx"][1])


def test_in_memory_zarr_array(store_dir):
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 6), chunks=(2, 3), dtype="int32")
    array[...] = np.arange(24).reshape(4, 6)
    image = open_image(array, axes="YX", roi=(slice(1, 3), slice(None)))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(image)).read(), array[1:3])
    with pytest.raises(ZarrsampleError, match=r"backend='tensorstore' needs .*MemoryStore"):
        open_image(array, axes="YX", backend="tensorstore")


def test_numpy_source():
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    image = open_image(data, axes="zyx", roi="(1,0,2):(2,0,3)")
    assert (image.shape, image.origin, image.chunks, image.backend) == ((2, 4, 3), (1, 0, 2), (3, 4, 5), "numpy")
    out = image.read((slice(0, 1), slice(1, 3), slice(None)))
    np.testing.assert_array_equal(out, data[1:2, 1:3, 2:5])
    out[...] = -1
    assert data.min() == 0, "read must not return a view of the source"
    assert open_image(data, axes="ZYX", backend="tensorstore").backend == "numpy"


# --------------------------------------------------------------------------- groups


def test_plain_group_needs_data_group(store_dir):
    with pytest.raises(ValueError, match=r"data_group.*'0'.*'labels/masks/0'"):
        open_image(store_dir["root"] / "plain.zarr", axes="CYX")
    with pytest.raises(ValueError, match=r"data_group='labels'.*'labels/masks/0'"):
        open_image(store_dir["root"] / "plain.zarr", data_group="labels")


def test_data_group_selects_array(store_dir):
    image = open_image(store_dir["root"] / "plain.zarr", data_group="0", axes="CYX")
    np.testing.assert_array_equal(image.read(), store_dir["data"])
    mask = open_image(store_dir["root"] / "plain.zarr", data_group="/labels/masks/0", axes="YX")
    assert mask.name.endswith("plain.zarr/labels/masks/0")
    np.testing.assert_array_equal(mask.read(), store_dir["data"][0] % 2)


def test_missing_data_group_is_key_error(store_dir):
    with pytest.raises(KeyError, match=r"data_group='nope'.*'labels/masks/0'"):
        open_image(store_dir["root"] / "plain.zarr", data_group="nope", axes="YX")
    with pytest.raises(ZarrsampleError, match=r"data_group='\.\./x' is not a valid path"):
        open_image(store_dir["root"] / "plain.zarr", data_group="../x", axes="YX")
    with pytest.raises(ZarrsampleError, match=r"data_group='0' needs a group"):
        open_image(store_dir["root"] / "v2.zarr", data_group="0", axes="CYX")


# --------------------------------------------------------------------------- OME-Zarr


@pytest.mark.parametrize(
    ("name", "key", "axes"),
    [("ome04_cyx.zarr", "cyx", "CYX"), ("ome04_tczyx.zarr", "tczyx", "TCZYX"), ("ome05.zarr", "ome05", "CYX")],
)
def test_ome_levels(store_dir, name, key, axes):
    levels = store_dir[key]
    for level in range(3):
        image = open_image(store_dir["root"] / name, level=None if level == 0 else level)
        assert (image.axes, image.level, image.shape) == (axes, level, levels[level].shape)
        assert image.levels == tuple(a.shape for a in levels)
        np.testing.assert_array_equal(image.read(), levels[level])
    with pytest.raises(ValueError, match=r"level=3 is out of range.*available levels are \[0, 1, 2\]"):
        open_image(store_dir["root"] / name, level=3)


def test_ome_explicit_axes(store_dir):
    assert open_image(store_dir["root"] / "ome04_cyx.zarr", axes="cyx").axes == "CYX"
    with pytest.raises(ZarrsampleError, match=r"axes='ZYX' disagrees with the OME-Zarr metadata.*'CYX'"):
        open_image(store_dir["root"] / "ome04_cyx.zarr", axes="ZYX")


def test_ome_data_group(store_dir):
    image = open_image(store_dir["root"] / "ome05.zarr", data_group="1")
    assert (image.axes, image.level, image.shape) == ("CYX", 1, store_dir["ome05"][1].shape)
    with pytest.raises(ZarrsampleError, match=r"level=2 disagrees with data_group='1'"):
        open_image(store_dir["root"] / "ome05.zarr", data_group="1", level=2)
    labels = open_image(store_dir["root"] / "ome05.zarr", data_group="labels/cells", level=1)
    assert (labels.axes, labels.level, len(labels.levels)) == ("CYX", 1, 2)
    np.testing.assert_array_equal(labels.read(), store_dir["cyx"][0][:1, ::2, ::2] % 3)


def test_unusable_axis_names():
    # Names that are not single axis letters: an explicit axes wins, else a clear error.
    assert resolve_axes("CYX", ("channel", "y", "x"), "OME-Zarr metadata of a", (2, 3, 4), "a") == "CYX"
    with pytest.raises(ValueError, match=r"axes is required for a.*\['channel', 'y', 'x'\]"):
        resolve_axes(None, ("channel", "y", "x"), "OME-Zarr metadata of a", (2, 3, 4), "a")


def test_read_multiscale_versions():
    old = {"multiscales": [{"version": "0.3", "axes": ["c", "y", "x"], "datasets": [{"path": "a"}]}]}
    assert read_multiscale(old, where="x").axis_names == ("c", "y", "x")
    oldest = {"multiscales": [{"version": "0.1", "datasets": [{"path": "0"}]}]}
    assert axis_letters(read_multiscale(oldest, where="x").axis_names, 5) == "TCZYX"
    assert read_multiscale({"other": 1}, where="x") is None
    with pytest.raises(ZarrsampleError, match=r"malformed.*datasets"):
        read_multiscale({"multiscales": [{"datasets": []}]}, where="img.zarr")


# --------------------------------------------------------------------------- ROI and selections


@pytest.mark.parametrize(
    ("roi", "expected"),
    [
        ((slice(1, 4), slice(None), slice(2, 11)), (slice(1, 4), slice(None), slice(2, 11))),
        ("(1,2,3):(3,4,5)", (slice(1, 4), slice(2, 6), slice(3, 8))),
        ("(2, 3, 0):(-1, 0, 0)", (slice(2, None), slice(3, None), slice(None))),
    ],
)
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_roi(store_dir, roi, expected, backend):
    image = open_image(store_dir["root"] / "v2.zarr", axes="CYX", roi=roi, backend=backend)
    reference = store_dir["data"][expected]
    assert image.shape == reference.shape
    assert image.origin == tuple(s.start or 0 for s in expected)
    np.testing.assert_array_equal(image.read(), reference)
    np.testing.assert_array_equal(image.read((slice(1, 2), slice(0, 3), slice(None))), reference[1:2, 0:3, :])


@pytest.mark.parametrize(
    ("roi", "exc", "match"),
    [
        ((slice(0, 8), slice(None), slice(None)), ZarrsampleError, r"roi\[0\].*<= 7"),
        ((slice(2, 2), slice(None), slice(None)), ZarrsampleError, r"roi=.*empty along axes \['C'\]"),
        ((slice(None), slice(None)), ZarrsampleError, r"roi must have one slice per axis \(3\)"),
        ((slice(0, 4, 2), slice(None), slice(None)), ZarrsampleError, r"roi\[0\] must have step None or 1"),
        ("(0,0):(1,1)", ZarrsampleError, r"roi='\(0,0\):\(1,1\)'.*one start and one length per image axis"),
        ("0,0,0", ZarrsampleError, r"roi='0,0,0' must have the form"),
        ("(a,0,0):(1,1,1)", ZarrsampleError, r"with integers"),
        ("(0,0,9):(1,1,5)", ZarrsampleError, r"roi\[2\]"),
        (5, TypeError, r"roi must be a tuple of slices"),
    ],
)
def test_roi_errors(store_dir, roi, exc, match):
    with pytest.raises(exc, match=match):
        open_image(store_dir["root"] / "v2.zarr", axes="CYX", roi=roi)


def test_parse_roi_follows_zarrdataset():
    # zarrdataset: slice(c, c+l) if l > 0, slice(c, None) if c > 0, else slice(None).
    assert parse_roi("(0,3):(0,-2)", (5, 6), "YX") == ((0, 3), (5, 6))


@pytest.mark.parametrize(
    ("selection", "exc", "match"),
    [
        ((slice(0, 8), slice(None), slice(None)), ZarrsampleError, r"selection\[0\].*<= 7"),
        ((slice(-1, None), slice(None), slice(None)), ZarrsampleError, r"selection\[0\]"),
        ((slice(3, 2), slice(None), slice(None)), ZarrsampleError, r"start <= stop"),
        ((slice(None, None, 2), slice(None), slice(None)), ZarrsampleError, r"step None or 1"),
        ((slice(None),), ZarrsampleError, r"one slice per axis \(3\)"),
        ((0, slice(None), slice(None)), TypeError, r"selection\[0\] must be a slice"),
        ((slice(0.5, 1), slice(None), slice(None)), TypeError, r"start must be an int"),
        ([slice(None)] * 3, None, None),
        ("all", TypeError, r"selection must be a tuple"),
    ],
)
def test_selection_errors(store_dir, selection, exc, match):
    image = open_image(store_dir["root"] / "v2.zarr", axes="CYX")
    if exc is None:
        assert image.read(selection).shape == image.shape
        return
    with pytest.raises(exc, match=match):
        image.read(selection)


@pytest.fixture(scope="module")
def hypothesis_images(store_dir):
    roi = (slice(1, 6), slice(2, 9), slice(0, 10))
    return store_dir["data"][roi], [
        open_image(store_dir["root"] / name, axes="CYX", roi=roi, backend=backend)
        for name in ("v2.zarr", "v3.zarr")
        for backend in ("zarr", "tensorstore")
    ]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_read_matches_numpy(hypothesis_images, data):
    reference, images = hypothesis_images
    selection = random_selection(lambda a, b: data.draw(st.integers(a, b)), reference.shape)
    for image in images:
        out = image.read(selection)
        assert out.dtype == reference.dtype
        np.testing.assert_array_equal(out, reference[selection])


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize("name", ["v2.zarr", "v3.zarr", "ome04_tczyx.zarr", "ome05.zarr"])
def test_tensorstore_matches_zarr(store_dir, name):
    kwargs = {} if name.startswith("ome") else {"axes": "CYX"}
    by_zarr = open_image(store_dir["root"] / name, level=0, **kwargs)
    roi = tuple(slice(n // 4, n - n // 4) if n > 1 else slice(None) for n in by_zarr.shape)
    by_zarr = open_image(store_dir["root"] / name, roi=roi, **kwargs)
    by_ts = open_image(store_dir["root"] / name, roi=roi, backend="tensorstore", **kwargs)
    assert (by_ts.shape, by_ts.dtype, by_ts.chunks, by_ts.origin) == (
        by_zarr.shape, by_zarr.dtype, by_zarr.chunks, by_zarr.origin)
    partial = tuple(slice(n // 3, n) for n in by_zarr.shape)
    for selection in (None, partial):
        a, b = by_zarr.read(selection), by_ts.read(selection)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_bad_backend(store_dir):
    with pytest.raises(ZarrsampleError, match=r"backend must be one of \['zarr', 'tensorstore'\], got 'dask'"):
        open_image(store_dir["root"] / "v2.zarr", axes="CYX", backend="dask")


# --------------------------------------------------------------------------- pickling and processes


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_pickle_round_trip(store_dir, backend):
    image = open_image(store_dir["root"] / "ome04_cyx.zarr", level=1, roi="(1,2,3):(2,5,6)", backend=backend)
    payload = pickle.dumps(image)
    assert len(payload) < 2000, "an Image must pickle as a small description"
    clone = pickle.loads(payload)
    assert isinstance(clone, Image) and repr(clone) == repr(image)
    np.testing.assert_array_equal(clone.read(), image.read())
    np.testing.assert_array_equal(copy.copy(image).read(), image.read())
    np.testing.assert_array_equal(copy.deepcopy(image).read(), image.read())


def _read_sum(image):
    return int(image.read().astype(np.int64).sum())


def _read_sum_or_error(image):
    try:
        return _read_sum(image)
    except ZarrsampleError as exc:
        return str(exc)


def test_zarr_read_after_fork(store_dir):
    image = open_image(store_dir["root"] / "v3.zarr")
    expected = _read_sum(image)  # the parent's handle is open before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_read_sum, (image,)).get(timeout=30) == expected
        assert pool.apply_async(_read_sum, (pickle.loads(pickle.dumps(image)),)).get(timeout=30) == expected


def test_tensorstore_after_fork_is_a_clear_error(store_dir):
    image = open_image(store_dir["root"] / "v3.zarr", backend="tensorstore")
    image.read()  # tensorstore now runs in this (parent) process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        message = pool.apply_async(_read_sum_or_error, (image,)).get(timeout=30)
    assert "fork()ed after process" in message and "spawn" in message


_FORK_SCRIPT = """
import multiprocessing, sys
import numpy as np
from zarrsample_core.sources._io import open_image

def read_sum(image):
    return int(image.read().astype(np.int64).sum())

if __name__ == "__main__":
    image = open_image(sys.argv[1], backend="tensorstore")  # opens nothing with tensorstore yet
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(read_sum, (image,)).get(timeout=30)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        spawned = pool.apply_async(read_sum, (image,)).get(timeout=60)
    print(child, spawned, read_sum(image))
"""


def test_tensorstore_in_forked_and_spawned_workers(store_dir, tmp_path):
    script = tmp_path / "fork_script.py"
    script.write_text(_FORK_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(store_dir["root"] / "v3.zarr")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = int(store_dir["data"].astype(np.int64).sum())
    assert done.stdout.split() == [str(expected)] * 3


def test_repr(store_dir):
    text = repr(open_image(store_dir["root"] / "ome05.zarr", level=2, backend="tensorstore"))
    for part in ("ome05.zarr/2", "axes='CYX'", "shape=(3, 4, 5)", "level=2", "backend='tensorstore'"):
        assert part in text


# --------------------------------------------------------------------------- input errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere.zarr"
    with pytest.raises(FileNotFoundError, match="nowhere.zarr"):
        open_image(missing, axes="YX")
    assert not missing.exists()


def test_not_zarr(store_dir):
    with pytest.raises(ZarrsampleError, match=r"not_zarr.*is not a zarr array or group"):
        open_image(store_dir["root"] / "not_zarr", axes="YX")
    with pytest.raises(ZarrsampleError, match=r"readme.txt.*is a file"):
        open_image(store_dir["root"] / "not_zarr" / "readme.txt", axes="YX")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"axes": "YX"}, ValueError, r"axes='YX' has 2 letters but the array has 3 dimensions"),
        ({"axes": "YYX"}, ValueError, r"axes='YYX' repeats axis letters \['Y'\]"),
        ({"axes": "QYX"}, ValueError, r"axes='QYX' has unknown axis letters \['Q'\]"),
        ({"axes": 3}, TypeError, r"axes must be a string"),
        ({"axes": "CYX", "level": 1}, ValueError, r"level=1 is out of range.*available levels: \[0\]"),
        ({"axes": "CYX", "level": "0"}, TypeError, r"level must be an int"),
        ({"axes": "CYX", "data_group": 0}, TypeError, r"data_group must be a string"),
    ],
)
def test_argument_errors(store_dir, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        open_image(store_dir["root"] / "v2.zarr", **kwargs)


def test_source_errors():
    with pytest.raises(TypeError, match=r"source must be a path or URL.*got list"):
        open_image([[1, 2]], axes="YX")
    with pytest.raises(ValueError, match=r"axes is required for a numpy array source.*ndim=2"):
        open_image(np.zeros((2, 3)))
    for shape, likely in (((3, 64, 64), "CYX"), ((64, 64, 4), "YXC"), ((2, 40, 64, 64), "CZYX")):
        with pytest.raises(ZarrsampleError, match=rf"shape {re.escape(str(shape))}\); pass e\.g\. axes='{likely}'$") as info:
            open_image(np.zeros(shape, np.uint8))
        assert info.value.hints == (("axes", likely),)  # what the command line spells --axes
    with pytest.raises(ValueError, match=r"axes='ZYX' has 3 letters but the array has 2"):
        open_image(np.zeros((2, 3)), axes="ZYX")
    with pytest.raises(ZarrsampleError, match=r"data_group='0' applies to zarr groups"):
        open_image(np.zeros((2, 3)), axes="YX", data_group="0")


# --------------------------------------------------------------------------- nothing is written


def test_opening_and_reading_writes_nothing(store_dir):
    root = store_dir["root"]
    before = snapshot(root)
    names = ["v2.zarr", "v3.zarr", "plain.zarr", "ome04_cyx.zarr", "ome05.zarr", "v3_sharded.zarr"]
    for backend in ("zarr", "tensorstore"):
        for name in names:
            kwargs = {"data_group": "0"} if name == "plain.zarr" else {}
            if not name.startswith("ome"):
                kwargs["axes"] = "CYX"
            image = pickle.loads(pickle.dumps(open_image(root / name, backend=backend, **kwargs)))
            image.read()
    assert snapshot(root) == before


def test_read_only_directory(tmp_path):
    data = data_of((5, 6))
    write_array(tmp_path / "ro.zarr", data, zarr_format=3, dimension_names=["y", "x"])
    with read_only_tree(tmp_path / "ro.zarr"):
        before = snapshot(tmp_path / "ro.zarr")
        for backend in ("zarr", "tensorstore"):
            np.testing.assert_array_equal(open_image(tmp_path / "ro.zarr", backend=backend).read(), data)
        assert snapshot(tmp_path / "ro.zarr") == before


# --------------------------------------------------------------------------- http


@pytest.fixture
def http_root(store_dir, monkeypatch):
    with serve_directory(store_dir["root"], monkeypatch) as url:
        yield url


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_http(store_dir, http_root, backend):
    pytest.importorskip("aiohttp")
    image = open_image(f"{http_root}/v2.zarr", axes="CYX", roi="(1,1,1):(4,5,6)", backend=backend)
    np.testing.assert_array_equal(image.read(), store_dir["data"][1:5, 1:6, 1:7])
    ome = open_image(f"{http_root}/ome05.zarr", level=1, backend=backend)
    assert ome.axes == "CYX" and ome.name == f"{http_root}/ome05.zarr/1"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ome)).read(), store_dir["ome05"][1])
    with pytest.raises(FileNotFoundError, match=r"missing.zarr"):
        open_image(f"{http_root}/missing.zarr", axes="YX", backend=backend)


def test_pathlike_and_str_agree(store_dir):
    a = open_image(Path(store_dir["root"] / "v2.zarr"), axes="CYX")
    b = open_image(str(store_dir["root"] / "v2.zarr"), axes="CYX")
    assert a.name == b.name and a.read().tobytes() == b.read().tobytes()
