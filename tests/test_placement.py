"""Modalities aligned by their coordinate transformations (OME-Zarr scale and translation)."""

from __future__ import annotations

import json
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from zarrsample_core import ImageCollection, PatchReader, ZarrsampleError, open_image
from zarrsample_core.sources._placement import (
    AxisMap,
    Placement,
    axis_map,
    exact,
    map_window,
)


def naive_window(start, stop, ref, mod, n, m):
    """The modality pixels holding the reference window's first edge, by scanning pixels."""
    if ref is None or mod is None:
        ref, mod = Placement(Fraction(1), Fraction(0)), Placement(Fraction(n, m), Fraction(n - m, 2 * m))
    edge = ref.translation + ref.scale * (Fraction(start) - Fraction(1, 2))
    def right_edge(j):
        return mod.translation + mod.scale * (j + Fraction(1, 2))

    j = int(float((edge - mod.translation) / mod.scale)) - 3  # a guess; scanned from below
    while right_edge(j - 1) > edge:
        j -= 1
    while right_edge(j) <= edge:
        j += 1
    size = Fraction(stop - start) * ref.scale / mod.scale
    return j, max(1, int(size + Fraction(1, 2)))


fractions = st.fractions(min_value=Fraction(1, 8), max_value=8, max_denominator=16)


@given(
    start=st.integers(-50, 300), size=st.integers(1, 64), n=st.integers(1, 400),
    s_ref=fractions, s_mod=fractions,
    t_ref=st.fractions(-20, 20, max_denominator=8), t_mod=st.fractions(-20, 20, max_denominator=8),
)
def test_map_window_equals_a_pixel_scan(start, size, n, s_ref, s_mod, t_ref, t_mod):
    m = max(1, int(n * s_ref / s_mod))
    ref, mod = Placement(s_ref, t_ref), Placement(s_mod, t_mod)
    amap, why = axis_map(ref, mod, n, m)
    assert why is None
    assert map_window(start, start + size, amap) == naive_window(start, start + size, ref, mod, n, m)


@given(start=st.integers(-50, 300), size=st.integers(1, 64), n=st.integers(1, 400), m=st.integers(1, 400))
def test_without_metadata_the_ratio_of_shapes_aligns_corners(start, size, n, m):
    amap, why = axis_map(None, None, n, m)
    assert why is None and amap == AxisMap(Fraction(m, n))
    assert map_window(start, start + size, amap) == naive_window(start, start + size, None, None, n, m)


def test_decimal_scales_are_exact():
    assert exact(0.1) == Fraction(1, 10) and exact(0.3) / exact(0.1) == 3
    amap, _ = axis_map(Placement(exact(0.1), exact(0)), Placement(exact(0.3), exact(0.1)), 300, 100)
    assert amap.ratio == Fraction(1, 3) and amap.offset == 0
    assert map_window(3, 6, amap) == (1, 1)


def test_units_are_converted_and_unknown_units_fall_back():
    ref = Placement(Fraction(500), Fraction(0), "nanometer")
    mod = Placement(Fraction(1), Fraction(1, 4), "micrometer")
    amap, why = axis_map(ref, mod, 1000, 500)
    assert why is None and amap.ratio == Fraction(1, 2)
    amap, why = axis_map(ref, Placement(Fraction(1), Fraction(0), "parsnip"), 1000, 500)
    assert amap == AxisMap(Fraction(1, 2)) and "cannot be compared" in why


def write_multiscale(path, levels, scales, translations, unit=None):
    """An OME-Zarr 0.4 image written by hand with the given per-level transforms."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for i, (data, scale, shift) in enumerate(zip(levels, scales, translations)):
        group.create_array(str(i), data=data, chunks=(64, 64))
        transforms = [{"type": "scale", "scale": scale}]
        if shift is not None:
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(i), "coordinateTransformations": transforms})
    axes = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "yx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return group


def test_odd_pyramid_levels_align_by_their_transformations(tmp_path):
    rng = np.random.default_rng(0)
    level0 = rng.integers(0, 255, (1001, 1537), dtype=np.uint8)
    level1 = level0[:1000:2, :1536:2].copy()  # 500 x 768
    write_multiscale(tmp_path / "odd.zarr", [level0, level1], [[1, 1], [2, 2]], [None, [0.5, 0.5]], "micrometer")
    coll = ImageCollection({
        "images": open_image(str(tmp_path / "odd.zarr"), level=0),
        "low": open_image(str(tmp_path / "odd.zarr"), level=1),
    }, spatial_axes="YX")
    assert coll["low"].pixel_size == {"Y": 2.0, "X": 2.0}
    reader = PatchReader()
    starts = [(y, x) for y in range(0, 873, 128) for x in range(0, 1409, 128)]
    for start in starts:
        out = reader.read(coll, start, (start[0] + 128, start[1] + 128), spatial_axes="YX")
        y, x = start[0] // 2, start[1] // 2
        np.testing.assert_array_equal(out["low"], level1[y:y + 64, x:x + 64])
        np.testing.assert_array_equal(out["low"], out["images"][::2, ::2])


def test_ngff_zarr_odd_pyramid_window_128_maps_to_64(tmp_path):
    import ngff_zarr as nz
    data = (np.arange(1001 * 1537) % 251).astype(np.uint8).reshape(1001, 1537)
    image = nz.to_ngff_image(data, dims=["y", "x"])
    nz.to_ngff_zarr(str(tmp_path / "odd.ome.zarr"), nz.to_multiscales(image, scale_factors=[2]), version="0.5")
    level1 = open_image(str(tmp_path / "odd.ome.zarr"), level=1)
    assert level1.shape == (500, 768)
    coll = ImageCollection({"images": open_image(str(tmp_path / "odd.ome.zarr")), "low": level1}, spatial_axes="YX")
    maps = coll.window_maps("low")
    assert [map_window(128, 256, m) for m in maps] == [(64, 64), (64, 64)]
    # The writer's own pixels at level 1, read through zarr directly.
    stored = zarr.open_group(str(tmp_path / "odd.ome.zarr"), mode="r")
    path = stored.attrs["ome"]["multiscales"][0]["datasets"][1]["path"]
    out = PatchReader().read(coll, (128, 256), (256, 384), spatial_axes="YX")
    np.testing.assert_array_equal(out["low"], stored[path][64:128, 128:192])


def test_region_of_interest_shifts_the_placement(tmp_path):
    level0 = np.arange(256 * 256, dtype=np.int32).reshape(256, 256)
    level1 = level0[::2, ::2].copy()
    write_multiscale(tmp_path / "img.zarr", [level0, level1], [[1, 1], [2, 2]], [None, [0.5, 0.5]])
    coll = ImageCollection({
        "images": open_image(str(tmp_path / "img.zarr"), roi=(slice(32, 160), slice(64, 192))),
        "low": open_image(str(tmp_path / "img.zarr"), level=1),
    }, spatial_axes="YX")
    out = PatchReader().read(coll, (0, 0), (32, 32), spatial_axes="YX")
    np.testing.assert_array_equal(out["low"], level1[16:32, 32:48])


def test_metadata_that_contradicts_the_shapes_falls_back_with_a_warning(tmp_path):
    level0 = np.zeros((256, 256), np.uint8)
    write_multiscale(tmp_path / "a.zarr", [level0], [[0.25, 0.25]], [None])
    # 64 px x 2 = 128 um, where the image covers 256 px x 0.25 = 64 um: one of them is wrong
    write_multiscale(tmp_path / "b.zarr", [np.zeros((64, 64), np.uint8)], [[2, 2]], [None])
    coll = ImageCollection({
        "images": open_image(str(tmp_path / "a.zarr")), "labels": open_image(str(tmp_path / "b.zarr")),
    }, spatial_axes="YX")
    with pytest.warns(UserWarning, match=r"ratio of shapes.*physical extents disagree"):
        maps = coll.window_maps("labels")
    assert maps == (AxisMap(Fraction(1, 4)), AxisMap(Fraction(1, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert coll.window_maps("labels") == maps  # computed once


def test_malformed_translation_is_one_line_error(tmp_path):
    group = write_multiscale(tmp_path / "bad.zarr", [np.zeros((8, 8), np.uint8)], [[1, 1]], [[0.5]])
    assert group is not None
    with pytest.raises(ZarrsampleError, match=r"translation of level 0 must be 2 finite numbers"):
        open_image(str(tmp_path / "bad.zarr"))


def test_pixel_size_in_micrometres(tmp_path):
    write_multiscale(tmp_path / "nm.zarr", [np.zeros((8, 8), np.uint8)], [[250, 250]], [None], "nanometer")
    assert open_image(str(tmp_path / "nm.zarr")).pixel_size == {"Y": 0.25, "X": 0.25}
    attrs = json.loads((tmp_path / "nm.zarr" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["axes"][0]["unit"] == "nanometer"


def test_ome_zarr_0_6_sequences_and_coordinate_systems(tmp_path):
    import ngff_zarr as nz

    data = (np.arange(301 * 257) % 251).astype(np.uint8).reshape(301, 257)
    image = nz.to_ngff_image(data, dims=["y", "x"], scale={"y": 0.5, "x": 0.5}, translation={"y": 3.0, "x": 1.0})
    nz.to_ngff_zarr(str(tmp_path / "v6.ome.zarr"), nz.to_multiscales(image, scale_factors=[2]), version="0.6")
    top, low = open_image(str(tmp_path / "v6.ome.zarr")), open_image(str(tmp_path / "v6.ome.zarr"), level=1)
    assert top.axes == "YX" and low.pixel_size == {"Y": 1.0, "X": 1.0}
    coll = ImageCollection({"images": top, "low": low}, spatial_axes="YX")
    assert [map_window(64, 128, m) for m in coll.window_maps("low")] == [(32, 32), (32, 32)]


def test_an_affine_transformation_leaves_the_level_to_the_ratio_of_shapes(tmp_path):
    group = write_multiscale(tmp_path / "aff.zarr", [np.zeros((8, 8), np.uint8)], [[2, 2]], [None])
    attrs = group.attrs.asdict()
    attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"] = [
        {"type": "sequence", "transformations": [{"type": "affine", "affine": [[2, 0, 0], [0, 2, 0]]}]}
    ]
    group.attrs.put(attrs)
    assert open_image(str(tmp_path / "aff.zarr")).placement is None


def test_ome_zarr_py_pyramid_levels_read_and_align_as_its_reader_says(tmp_path):
    """ome-zarr-py resamples each level from the whole image: scales like 2.002, translations (s - 1) / 2."""
    import logging

    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ome-zarr-py's own deprecations
        from ome_zarr.writer import write_image

        data = (np.arange(1001 * 1537) % 251).astype(np.uint8).reshape(1001, 1537)
        group = zarr.open_group(str(tmp_path / "py.ome.zarr"), mode="w", zarr_format=2)
        write_image(data, group, axes="yx", fmt=FormatV04())
        node = next(iter(Reader(parse_url(str(tmp_path / "py.ome.zarr")))()))
    theirs = [np.asarray(level) for level in node.data]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert abs(scales[1][0] - 2) > 1e-6  # not a power of two: the ratio needs the metadata
    coll = ImageCollection({
        "images": open_image(str(tmp_path / "py.ome.zarr")),
        "low": open_image(str(tmp_path / "py.ome.zarr"), level=1),
    }, spatial_axes="YX")
    np.testing.assert_array_equal(coll["low"].read(), theirs[1])
    shift = [t[1]["translation"] for t in node.metadata["coordinateTransformations"]][1]
    for start in (0, 128, 640, 896):
        for axis, amap in enumerate(coll.window_maps("low")):
            # naive: the level-1 pixel whose extent holds the reference window's first edge
            edge = Fraction(start) - Fraction(1, 2)
            s, t = exact(scales[1][axis]), exact(shift[axis])
            assert map_window(start, start + 128, amap)[0] == math.floor((edge - t) / s + Fraction(1, 2))
