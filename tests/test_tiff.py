"""TIFF-family files opened as images, pixel for pixel equal to tifffile's own reading."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from tiff_files import write_files

from zarrsample_core import ImageCollection, PatchReader, ZarrsampleError, open_image
from zarrsample_core.sources._placement import map_window


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("tiff"))


def levels_of(path, series=0):
    with tifffile.TiffFile(path) as tif:
        return len(tif.series[series].levels)


def windows(shape, rng, count=12):
    """Random windows of a 2-D+ shape, edges and whole image included."""
    out = [tuple(slice(0, n) for n in shape), tuple(slice(max(0, n - 37), n) for n in shape)]
    for _ in range(count):
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        y1, x1 = rng.integers(y0 + 1, shape[0] + 1), rng.integers(x0 + 1, shape[1] + 1)
        out.append((slice(y0, y1), slice(x0, x1), *[slice(None)] * (len(shape) - 2)))
    return out


@pytest.mark.parametrize("kind", ["jpeg", "zlib", "ome", "svs", "stripped", "planar", "zstack"])
def test_every_level_reads_what_tifffile_reads(files, kind):
    rng = np.random.default_rng(1)
    path = str(files[kind])
    for level in range(levels_of(path)):
        expected = tifffile.imread(path, level=level)
        image = open_image(path, level=level)
        assert image.shape == expected.shape and image.dtype == expected.dtype
        np.testing.assert_array_equal(image.read(), expected)
        for selection in windows(expected.shape, rng):
            np.testing.assert_array_equal(image.read(selection), expected[selection])
        results = image.read_many([s for s in windows(expected.shape, rng, 4)])
        assert all(isinstance(r, np.ndarray) for r in results)


def test_axes_chunks_and_pixel_sizes_come_from_the_file(files):
    jpeg = open_image(str(files["jpeg"]))
    assert jpeg.axes == "YXC" and jpeg.chunks == (128, 128, 3)
    assert jpeg.levels == ((1000, 1300, 3), (500, 650, 3), (250, 325, 3))
    assert jpeg.pixel_size == {"Y": 0.25, "X": 0.25}
    assert open_image(str(files["jpeg"]), level=2).pixel_size == {"Y": 1.0, "X": 1.0}
    assert open_image(str(files["ome"]), level=1).pixel_size == {"Y": 1.0, "X": 1.0}
    svs = open_image(str(files["svs"]), level=1)
    assert svs.pixel_size == {"Y": pytest.approx(0.499 * 4), "X": pytest.approx(0.499 * 4)}
    assert open_image(str(files["svs"]), series=2).pixel_size == {"Y": None, "X": None}  # the label
    zlib = open_image(str(files["zlib"]))
    assert zlib.axes == "YX" and zlib.chunks == (128, 256) and zlib.pixel_size == {"Y": None, "X": None}
    assert open_image(str(files["stripped"])).chunks == (50, 1031)
    planar = open_image(str(files["planar"]))
    assert planar.axes == "CYX" and planar.chunks == (1, 64, 64)
    zstack = open_image(str(files["zstack"]))
    assert zstack.axes == "ZYX" and zstack.chunks == (1, 64, 64)
    assert zstack.pixel_size == {"Z": 1.5, "Y": 0.2, "X": 0.2}


def test_series_of_a_file_with_several(files):
    path = str(files["two_series"])
    second = open_image(path, series=1)
    assert second.axes == "YX"
    np.testing.assert_array_equal(second.read(), tifffile.imread(path, series=1))
    with pytest.raises(ZarrsampleError, match=r"series=2 is out of range .* 2 series \(0: .*YXS.*; 1: "):
        open_image(path, series=2)


@pytest.mark.parametrize("kwargs, match", [
    ({"level": 3}, r"level=3 is out of range for series 0 .* available levels are \[0, 1, 2\]"),
    ({"backend": "tensorstore"}, r"backend='tensorstore' cannot read TIFF files .* use backend='zarr'"),
    ({"axes": "CYX"}, r"axes='CYX' disagrees with the TIFF series axes 'YXS'.*read as 'YXC'"),
    ({"data_group": "0"}, r"data_group='0' applies to zarr groups, but .* is a TIFF file"),
    ({"resolution": 0.7}, r"resolution=0.7 um/px matches no level .*level 0: 0.25, level 1: 0.5, level 2: 1 um/px"),
    ({"resolution": 0.5, "level": 1}, r"give level or resolution, not both"),
])
def test_errors_name_what_exists(files, kwargs, match):
    with pytest.raises(ZarrsampleError, match=match):
        open_image(str(files["jpeg"]), **kwargs)


def test_a_file_that_is_not_a_tiff_and_a_truncated_one(files, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(files["jpeg"].read_bytes()[:300])
    with pytest.raises(ZarrsampleError, match=r"broken.tif.* (is not a TIFF file tifffile can read|the file may be truncated)"):
        open_image(str(broken))
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    with pytest.raises(ZarrsampleError, match=r"notes.tif' is a file, not a zarr array or group directory, and not a TIFF file"):
        open_image(str(text))


def test_resolution_picks_the_level(files):
    assert open_image(str(files["jpeg"]), resolution=0.5).level == 1
    assert open_image(str(files["jpeg"]), resolution=1.05).level == 2
    with pytest.raises(ZarrsampleError, match=r"resolution=1 needs pixel sizes, but .*zlib_pyramid.tif"):
        open_image(str(files["zlib"]), resolution=1)


def test_tifffile_stores_and_zarr_nodes_on_them_are_read_from_the_file(files):
    path = str(files["jpeg"])
    expected = tifffile.imread(path, level=1)
    store = tifffile.imread(path, aszarr=True)
    for source, kwargs in [
        (store, {"level": 1}),
        (zarr.open(store, mode="r"), {"level": 1}),
        (zarr.open(store, mode="r")["1"], {}),
        (tifffile.TiffFile(path).aszarr(series=0, level=1), {}),
    ]:
        image = open_image(source, **kwargs)
        assert image.level == 1 and image._spec == ("tiff", str(files["jpeg"]), 0, 1)
        again = pickle.loads(pickle.dumps(image))  # by description: no handle travels
        assert again._cache == {}
        np.testing.assert_array_equal(again.read(), expected)


def test_levels_of_one_file_align_by_their_factor(files):
    path = str(files["zlib"])  # 777 x 1031 -> 388 x 516 (floor and ceil halves)
    coll = ImageCollection({"images": open_image(path), "low": open_image(path, level=1)}, spatial_axes="YX")
    assert [map_window(128, 256, m) for m in coll.window_maps("low")] == [(64, 64), (64, 64)]
    low = tifffile.imread(path, level=1)
    out = PatchReader().read(coll, (640, 896), (768, 1024), spatial_axes="YX")
    np.testing.assert_array_equal(out["low"][:-1], low[320:383, 448:512])  # last row: padding


def test_pictures_open_through_pillow(tmp_path):
    from PIL import Image as PILImage
    from tiff_files import smooth_rgb

    rgb = smooth_rgb(40, 60)
    PILImage.fromarray(rgb).save(tmp_path / "a.png")
    PILImage.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    image = open_image(str(tmp_path / "a.png"))
    assert image.axes == "YXC" and image.name.endswith("a.png")
    np.testing.assert_array_equal(image.read(), rgb)
    assert open_image(str(tmp_path / "g.png")).axes == "YX"
    (tmp_path / "bad.png").write_text("no")
    with pytest.raises(ZarrsampleError, match=r"bad.png is not an image file Pillow can read"):
        open_image(str(tmp_path / "bad.png"))


def test_info_lists_levels_tiles_compression_and_pixel_size(files):
    out = subprocess.run(
        [sys.executable, "-m", "zarrsample_core", "info", str(files["svs"])],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "TIFF" in text and "Baseline" in text and "JPEG" in text
    assert "(1000, 1300, 3)" in text and "(250, 325, 3)" in text and "tiles (128, 128" in text
    assert "0.499" in text and "Label" in text


def test_tissue_mask_reads_a_low_level_of_the_slide(files):
    from zarrsample_core import tissue_mask
    from zarrsample_core.sources._thumbnail import open_level

    slide = open_image(str(files["jpeg"]))
    low = open_level(slide, 2)
    assert low.level == 2 and low.shape == (250, 325, 3)
    np.testing.assert_array_equal(low.read(), tifffile.imread(files["jpeg"], level=2))
    mask = tissue_mask(slide, side=200)
    assert mask.shape[0] < slide.shape[0]


@pytest.fixture(scope="module")
def decoded(files):
    """tifffile's own decode of every level of the tiled and stripped files."""
    return {(kind, level): tifffile.imread(files[kind], level=level)
            for kind in ("jpeg", "zlib", "stripped") for level in range(levels_of(files[kind]))}


@given(data=st.data())
@settings(max_examples=60)
def test_any_region_of_any_level_is_tifffiles(files, decoded, data):
    """The tile-by-tile reader against tifffile decoding the whole level (the naive reference)."""
    kind, level = data.draw(st.sampled_from(sorted(decoded)))
    expected = decoded[kind, level]
    h, w = expected.shape[:2]
    y0 = data.draw(st.integers(0, h - 1))
    x0 = data.draw(st.integers(0, w - 1))
    y1 = data.draw(st.integers(y0 + 1, min(h, y0 + 400)))
    x1 = data.draw(st.integers(x0 + 1, min(w, x0 + 400)))
    image = open_image(str(files[kind]), level=level)
    selection = (slice(y0, y1), slice(x0, x1), *[slice(None)] * (expected.ndim - 2))
    np.testing.assert_array_equal(image.read(selection), expected[selection])
    [many] = image.read_many([selection])
    np.testing.assert_array_equal(many, expected[selection])


def test_one_page_levels_decode_tiles_and_other_layouts_use_the_zarr_store(files):
    from zarrsample_core.sources._tiff_tiles import TileReader

    for kind in ("jpeg", "zlib", "ome", "svs", "stripped"):
        assert isinstance(open_image(str(files[kind]))._array(), TileReader), kind
    for kind in ("planar", "zstack"):
        assert isinstance(open_image(str(files[kind]))._array(), zarr.Array), kind
