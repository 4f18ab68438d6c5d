"""Hostile metadata: one-line errors before anything large is allocated."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from zarr.storage import MemoryStore

from zarrsample_core import BlueNoisePatchSampler, ImageCollection, PatchSampler, open_image
from zarrsample_core._errors import ZarrsampleError
from zarrsample_core.planning._budget import plan_bytes
from zarrsample_core.sources._validate import check_array_metadata, check_multiscale


def edited(tmp_path, edit, zarr_format=3):
    """A small array whose metadata file ``edit(meta)`` rewrites in place."""
    path = tmp_path / "h.zarr"
    zarr.create_array(store=str(path), shape=(32, 32), chunks=(16, 16), dtype="uint8",
                      zarr_format=zarr_format, fill_value=0)
    name = path / ("zarr.json" if zarr_format == 3 else ".zarray")
    meta = json.loads(name.read_text())
    edit(meta)
    name.write_text(json.dumps(meta))
    return path


def one_line(info):
    message = str(info.value)
    assert "\n" not in message
    return message


V3_CASES = {
    "absurd shape": (lambda m: m.update(shape=[10**15, 10**15]),
                     r"h\.zarr declares shape \(1000000000000000, 1000000000000000\): 1e\+30 elements, "
                     r"more than int64 indexing allows"),
    "zero chunk": (lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[0, 16]),
                   r"h\.zarr declares chunks \(0, 16\) for shape \(32, 32\): one chunk size >= 1 per axis"),
    "negative chunk": (lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[-1, 16]),
                       r"invalid zarr metadata in '.*h\.zarr': ValueError: .*non-negative.*\[-1, 16\]"),
    "negative shape": (lambda m: m.update(shape=[-5, 32]),
                       r"invalid zarr metadata in '.*h\.zarr': ValueError: .*\[-5, 32\]"),
    "unknown codec": (lambda m: m.update(codecs=[{"name": "bytes"}, {"name": "nosuchcodec"}]),
                      r"invalid zarr metadata in '.*h\.zarr': UnknownCodecError: .*nosuchcodec"),
    "unknown dtype": (lambda m: m.update(data_type="float128x"),
                      r"invalid zarr metadata in '.*h\.zarr': ValueError: .*float128x"),
    "chunks of another ndim": (lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[16]),
                               r"invalid zarr metadata in '.*h\.zarr': ValueError: .*same number of dimensions"),
}
V2_CASES = {
    "absurd shape": (lambda m: m.update(shape=[10**15, 10**15]), r"1e\+30 elements"),
    "zero chunk": (lambda m: m.update(chunks=[0, 16]), r"declares chunks \(0, 16\)"),
    "unknown codec": (lambda m: m.update(compressor={"id": "nosuch"}),
                      r"invalid zarr metadata in '.*h\.zarr': UnknownCodecError: .*nosuch"),
    "object dtype": (lambda m: m.update(dtype="|O"), r"invalid zarr metadata in '.*h\.zarr': ValueError"),
}


@pytest.mark.parametrize("case", sorted(V3_CASES))
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_hostile_v3_metadata(tmp_path, case, backend):
    edit, pattern = V3_CASES[case]
    path = edited(tmp_path, edit)
    start = time.perf_counter()
    with pytest.raises(ZarrsampleError, match=pattern) as info:
        open_image(path, axes="YX", backend=backend)
    one_line(info)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("case", sorted(V2_CASES))
def test_hostile_v2_metadata(tmp_path, case):
    edit, pattern = V2_CASES[case]
    with pytest.raises(ZarrsampleError, match=pattern) as info:
        open_image(edited(tmp_path, edit, zarr_format=2), axes="YX")
    one_line(info)


def test_string_dtype_is_not_an_image():
    array = zarr.create_array(store=MemoryStore(), shape=(4,), chunks=(2,), dtype=str)
    with pytest.raises(ZarrsampleError, match=r"has dtype .*: images must be bool, integer, float or complex"):
        open_image(array, axes="X")


# --------------------------------------------------------------------------- OME-Zarr


def ome_group(tmp_path, *, axes="yx", shapes=((32, 40), (16, 20)), scales=((1.0, 1.0), (2.0, 2.0)),
              paths=None, zarr_format=3):
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w", zarr_format=zarr_format)
    datasets = []
    for i, shape in enumerate(shapes):
        group.create_array(str(i), shape=shape, chunks=tuple(max(1, n // 2) for n in shape), dtype="uint8")
        entry = {"path": str(i)}
        if scales is not None:
            entry["coordinateTransformations"] = [{"type": "scale", "scale": list(scales[i])}]
        datasets.append(entry)
    if paths is not None:
        for entry, path in zip(datasets, paths):
            entry["path"] = path
    multiscale = {"axes": [{"name": a} for a in axes], "datasets": datasets}
    group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return tmp_path / "ome.zarr"


def test_consistent_ome_opens(tmp_path):
    image = open_image(ome_group(tmp_path, shapes=((33, 41), (17, 20)), scales=((0.5, 0.5), (1.0, 1.0))), level=1)
    assert (image.axes, image.shape, image.levels) == ("YX", (17, 20), ((33, 41), (17, 20)))


OME_CASES = {
    "axes count": (dict(axes="cyx"),
                   r"OME-Zarr metadata of .*ome\.zarr: 3 axes \['c', 'y', 'x'\] but level '0' has 2 dimensions"),
    "growing levels": (dict(shapes=((32, 40), (32, 41))),
                       r"levels must decrease in size, but level '1' has shape \(32, 41\) after level '0'"),
    "equal levels": (dict(shapes=((32, 40), (32, 40)), scales=((1.0, 1.0), (1.0, 1.0))),
                     r"levels must decrease in size"),
    "ndim of levels": (dict(shapes=((32, 40), (16,)), scales=None),
                       r"level '1' has 1 dimensions \(shape \(16,\)\), level '0' has 2"),
    "scale length": (dict(scales=((1.0, 1.0), (2.0,))),
                     r"the scale of level '1' must be 2 positive finite numbers, got \[2\.0\]"),
    "scale sign": (dict(scales=((1.0, 1.0), (2.0, -2.0))), r"must be 2 positive finite numbers"),
    "scale vs shape": (dict(scales=((1.0, 1.0), (4.0, 4.0))),
                       r"level '1' with shape \(16, 20\) and scale \[4\.0, 4\.0\] covers \[64\.0, 80\.0\], "
                       r"not the extent \[32\.0, 40\.0\] of level '0'"),
    "missing dataset": (dict(paths=["0", "9"]), r"lists level path '9', but there is no array at .*ome\.zarr/9"),
}


@pytest.mark.parametrize("case", sorted(OME_CASES))
def test_hostile_ome_metadata(tmp_path, case):
    kwargs, pattern = OME_CASES[case]
    with pytest.raises(ZarrsampleError, match=pattern) as info:
        open_image(ome_group(tmp_path, **kwargs))
    one_line(info)


@given(n0=st.integers(1, 5000), factor=st.integers(1, 16), rounding=st.sampled_from(["floor", "ceil"]),
       unit=st.sampled_from([1.0, 0.25, 0.325, 3.0]))
def test_scale_rule_accepts_every_floor_or_ceil_pyramid(n0, factor, rounding, unit):
    n1 = n0 // factor if rounding == "floor" else -(-n0 // factor)
    if n1 < 1 or n1 == n0:
        return  # equal levels break the decreasing-size rule (tested above)
    scales = [[unit], [unit * factor]]
    check_multiscale(scales, ["x"], ["0", "1"], [(n0,), (n1,)], "img")  # no error
    if n1 + 2 < n0:  # two level pixels off: more than one pixel from the extent
        with pytest.raises(ZarrsampleError, match="covers"):
            check_multiscale(scales, ["x"], ["0", "1"], [(n0,), (n1 + 2,)], "img")


# --------------------------------------------------------------------------- plan budget


def huge_collection(mask=False):
    array = zarr.create_array(store=MemoryStore(), shape=(2**40, 2**21), chunks=(2**14, 2**14), dtype="uint8")
    modalities = {"images": open_image(array, axes="YX")}
    if mask:
        modalities["masks"] = open_image(np.ones((64, 32), bool), axes="YX")
    return ImageCollection(modalities, spatial_axes="YX")


@pytest.mark.parametrize("sampler_class", [PatchSampler, BlueNoisePatchSampler])
def test_plan_over_budget_is_refused_before_allocating(sampler_class):
    coll = huge_collection()
    start = time.perf_counter()
    with pytest.raises(ZarrsampleError, match=(
        r"planning .* would need about 4\.19e\+08 GiB \(450359962737049600 bytes, a grid of 68719476736 x 131072 positions\), "
        r"more than max_plan_bytes=2147483648; use a larger stride"
    )) as info:
        sampler_class(16, spatial_axes="YX").plan(coll)
    one_line(info)
    assert time.perf_counter() - start < 2


def test_plan_budget_parameter():
    coll = ImageCollection({"images": open_image(np.zeros((64, 64), np.uint8), axes="YX")}, spatial_axes="YX")
    need = plan_bytes([8, 8], masked=False)
    assert need == 64 * (2 + 8 * 6)
    assert len(PatchSampler(8, spatial_axes="YX", max_plan_bytes=need).plan(coll)) == 64
    with pytest.raises(ZarrsampleError, match=rf"about .* GiB \({need} bytes, a grid of 8 x 8 positions\)"):
        PatchSampler(8, spatial_axes="YX", max_plan_bytes=need - 1).plan(coll)
    assert len(PatchSampler(8, spatial_axes="YX", max_plan_bytes=None).plan(coll)) == 64
    with pytest.raises(ZarrsampleError, match=r"max_plan_bytes must be >= 1 \(bytes\) or None, got 0"):
        PatchSampler(8, spatial_axes="YX", max_plan_bytes=0)
    with pytest.raises(TypeError, match=r"max_plan_bytes must be an int or None, got 1\.5"):
        PatchSampler(8, spatial_axes="YX", max_plan_bytes=1.5)


def test_plan_estimate_bounds_what_planning_allocates():
    import tracemalloc

    rng = np.random.default_rng(0)
    mask = rng.random((64, 64)) < 0.5
    coll = ImageCollection({"images": open_image(np.zeros((512, 512), np.uint8), axes="YX"),
                            "masks": open_image(mask, axes="YX")}, spatial_axes="YX")
    sampler = PatchSampler(4, spatial_axes="YX", min_area=0.0)
    tracemalloc.start()
    plan = sampler.plan(coll)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    estimate = plan_bytes([128, 128], masked=True)
    assert len(plan) == 128 * 128
    assert peak <= 2 * estimate, (peak, estimate)  # the estimate is of the right order


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=4))
def test_element_limit_is_exact(shape):
    chunks = [1] * len(shape)
    if math.prod(shape) > 2**63 - 1:
        with pytest.raises(ZarrsampleError, match="more than int64 indexing allows"):
            check_array_metadata(shape, chunks, "uint8", "x")
    else:
        check_array_metadata(shape, chunks, "uint8", "x")


def test_os_errors_are_not_relabelled_as_metadata(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_image(os.path.join(tmp_path, "nope.zarr"), axes="YX")
