"""tissue_mask: Otsu against brute force, blobs recovered, specks and holes, levels, errors."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zarrsample_core import ImageCollection, PatchSampler, ZarrsampleError, open_image
from zarrsample_core import _thumbnail
from zarrsample_core.sources._thumbnail import choose_level, read_reduced
from zarrsample_core.inference._tissue import clean_mask, grey_levels, otsu_threshold, tissue_mask

BACKGROUND, TISSUE = 232, 96


def naive_otsu(values, bins=256):
    """Every edge of the histogram tried; between-class variance from the values themselves."""
    v = np.asarray(values, np.float64).ravel()
    edges = np.linspace(v.min(), v.max(), bins + 1)
    scores = {}
    for t in edges[1:-1]:
        low, high = v[v < t], v[v >= t]
        if len(low) and len(high):
            scores[t] = len(low) * len(high) * (low.mean() - high.mean()) ** 2
    return scores


def naive_reduce(pixels, axes, factor):
    """Block means by explicit loops over output pixels (Y and X only)."""
    ky, kx = axes.index("Y"), axes.index("X")
    shape = list(pixels.shape)
    shape[ky], shape[kx] = -(-shape[ky] // factor), -(-shape[kx] // factor)
    out = np.zeros(shape)
    for i in range(shape[ky]):
        for j in range(shape[kx]):
            src = [slice(None)] * pixels.ndim
            dst = [slice(None)] * pixels.ndim
            src[ky], src[kx] = slice(i * factor, (i + 1) * factor), slice(j * factor, (j + 1) * factor)
            dst[ky], dst[kx] = i, j
            block = pixels[tuple(src)].astype(np.float64)
            out[tuple(dst)] = block.mean(axis=(ky, kx))
    return out


def blobs(height, width):
    """Two discs and a square ring (whose hole fill_holes closes), as the true tissue."""
    yy, xx = np.mgrid[0:height, 0:width]
    truth = ((yy - 0.3 * height) ** 2 + (xx - 0.3 * width) ** 2) < (0.18 * height) ** 2
    truth |= ((yy - 0.7 * height) ** 2 + (xx - 0.65 * width) ** 2) < (0.2 * height) ** 2
    ring = np.zeros((height, width), bool)
    ring[height // 10 : height // 10 + 24, width - 40 : width - 16] = True
    ring[height // 10 + 8 : height // 10 + 16, width - 32 : width - 24] = False
    return truth, ring


def slide(truth, rng, specks=()):
    """RGB uint8 (3, H, W): bright noisy background, darker noisy tissue, dark specks."""
    dark = truth.copy()
    for y, x in specks:
        dark[y : y + 2, x : x + 2] = True
    base = np.where(dark, TISSUE, BACKGROUND)
    tint = np.array([0, -30, 10])[:, None, None] * dark
    noise = rng.integers(-6, 7, (3, *truth.shape))
    return np.clip(base + tint + noise, 0, 255).astype(np.uint8)


# -- Otsu -------------------------------------------------------------------------------------


@given(
    hnp.arrays(np.float64, st.integers(2, 300),
               elements=st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)),
    st.sampled_from([2, 3, 16, 256]),
)
def test_otsu_maximises_between_class_variance_like_brute_force(values, bins):
    threshold = otsu_threshold(values, bins=bins)
    scores = naive_otsu(values, bins)
    if not scores:  # every split leaves a class empty: constant values (up to the bin grid)
        assert np.isclose(threshold, values.max()) or values.min() == values.max()
        return
    best = max(scores.values())
    assert threshold in scores, (threshold, sorted(scores))
    assert scores[threshold] >= best * (1 - 1e-9) - 1e-9


def test_otsu_separates_two_modes_and_is_first_edge_of_a_tie():
    values = np.r_[np.full(50, 10.0), np.full(70, 200.0)]
    t = otsu_threshold(values)
    assert 10 < t <= 200 and t == np.linspace(10, 200, 257)[1]
    assert otsu_threshold(np.full(7, 3.0)) == 3.0  # constant: nothing is below


def test_otsu_errors():
    with pytest.raises(ZarrsampleError, match="at least one finite"):
        otsu_threshold([np.nan, np.inf])
    with pytest.raises(ZarrsampleError, match="bins must be >= 2"):
        otsu_threshold([1, 2], bins=1)


# -- grey levels and clean-up -----------------------------------------------------------------


def test_grey_levels_rgb_luminance_single_channel_and_mean():
    rgb = np.zeros((2, 3, 3), np.uint8)  # (Y, X, C)
    rgb[..., 0] = 100
    grey, axes = grey_levels(rgb, "YXC")
    assert axes == "YX" and np.allclose(grey, 100 * 0.2125)
    one, axes = grey_levels(np.full((1, 4, 5), 7), "CYX")
    assert axes == "YX" and one.shape == (4, 5) and np.all(one == 7)
    two, _ = grey_levels(np.stack([np.zeros((4, 5)), np.full((4, 5), 10.0)]), "CYX")
    assert np.all(two == 5)


def test_clean_mask_removes_specks_and_fills_holes():
    truth, ring = blobs(96, 128)
    noisy = truth | ring
    noisy[2:4, 2:4] = True  # a 4-pixel speck
    noisy[60, 10] = True  # a single pixel
    cleaned = clean_mask(noisy, min_size=5)
    filled_ring = ring.copy()
    filled_ring[96 // 10 + 8 : 96 // 10 + 16, 128 - 32 : 128 - 24] = True
    assert np.array_equal(cleaned, truth | filled_ring)
    kept = clean_mask(noisy, min_size=0, fill_holes=False)
    assert np.array_equal(kept, noisy)


def test_diagonal_pixels_are_one_component():
    diagonal = np.eye(5, dtype=bool)
    assert np.array_equal(clean_mask(diagonal, min_size=5, fill_holes=False), diagonal)
    assert not clean_mask(diagonal, min_size=6, fill_holes=False).any()


# -- tissue_mask ------------------------------------------------------------------------------


def test_full_resolution_mask_equals_the_blobs():
    rng = np.random.default_rng(0)
    truth, ring = blobs(128, 160)
    image = open_image(slide(truth | ring, rng, specks=[(5, 5), (120, 80), (64, 2)]), axes="CYX")
    mask = tissue_mask(image, min_size=16)
    filled = ring.copy()
    filled[128 // 10 + 8 : 128 // 10 + 16, 160 - 32 : 160 - 24] = True
    assert mask.axes == "YX" and mask.shape == (128, 160) and mask.dtype == bool
    # Noise (+-6) never crosses Otsu's threshold between 96 and 232: exact equality.
    assert np.array_equal(mask.read(), truth | filled)
    holes = tissue_mask(image, min_size=16, fill_holes=False).read()
    assert np.array_equal(holes, truth | ring)
    specks = tissue_mask(image, min_size=0).read()
    assert specks[5:7, 5:7].all() and specks[120:122, 80:82].all()


def test_explicit_threshold_on_the_grey_scale():
    rng = np.random.default_rng(1)
    truth, _ = blobs(64, 64)
    image = open_image(np.moveaxis(slide(truth, rng), 0, -1), axes="YXC")
    assert np.array_equal(tissue_mask(image, threshold=150).read(), truth)
    assert not tissue_mask(image, threshold=50).read().any()


def write_pyramid(path, pixels, levels=3, chunks=64):
    """An OME-Zarr v0.5 group whose levels are 2x block means of the previous one."""
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [
        {"axes": axes, "datasets": [{"path": str(k)} for k in range(levels)]}]}
    level = pixels.astype(np.float64)
    for k in range(levels):
        root.create_array(str(k), data=np.rint(level).astype(np.uint8), chunks=(3, chunks, chunks))
        c, h, w = level.shape
        level = level.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return path


def test_low_level_mask_matches_blobs_away_from_their_boundary(tmp_path):
    rng = np.random.default_rng(2)
    truth, _ = blobs(256, 256)
    path = write_pyramid(tmp_path / "slide.zarr", slide(truth, rng))
    for source in (path, str(path), open_image(path)):
        mask = tissue_mask(source, side=64)  # level 2: 64 x 64, a 4 x 4 block per mask pixel
        assert mask.shape == (64, 64)
        blocks = truth.reshape(64, 4, 64, 4)
        pure_in, pure_out = blocks.all(axis=(1, 3)), ~blocks.any(axis=(1, 3))
        # A mixed block's mean grey may land on either side of the threshold; a pure one may not.
        got = mask.read()
        assert np.array_equal(got[pure_in | pure_out], pure_in[pure_in | pure_out])
        assert (pure_in | pure_out).mean() > 0.9
    assert tissue_mask(path, side=100).shape == (128, 128)  # coarsest level with a side >= 100
    assert tissue_mask(path, level=0, side=64).shape == (64, 64)  # level 0 block-averaged by 4
    assert tissue_mask(open_image(path, level=2), level=1, side=1000).shape == (128, 128)


def test_mask_drives_the_sampler_onto_tissue(tmp_path):
    rng = np.random.default_rng(3)
    truth, _ = blobs(256, 256)
    path = write_pyramid(tmp_path / "slide.zarr", slide(truth, rng))
    image = open_image(path)
    coll = ImageCollection({"images": image, "masks": tissue_mask(image, side=64)}, spatial_axes="YX")
    plan = PatchSampler(16, stride=8, min_area=0.99, spatial_axes="YX").plan(coll)
    assert len(plan) > 50
    windows = np.lib.stride_tricks.sliding_window_view(truth, (16, 16))
    inside = windows[plan.toplefts[:, 0], plan.toplefts[:, 1]].mean(axis=(1, 2))
    assert inside.min() >= 0.75 and inside.mean() > 0.95
    centres = plan.toplefts + 8
    assert truth[centres[:, 0], centres[:, 1]].all()


def test_roi_images_use_their_own_level(tmp_path):
    rng = np.random.default_rng(4)
    truth, _ = blobs(128, 128)
    path = write_pyramid(tmp_path / "slide.zarr", slide(truth, rng), levels=2)
    image = open_image(path, roi=(slice(None), slice(0, 64), slice(0, 128)))
    mask = tissue_mask(image, side=32)  # own level, block-averaged by 4
    assert mask.shape == (16, 32)
    with pytest.raises(ZarrsampleError, match="region of interest"):
        tissue_mask(image, level=1)


def test_errors():
    with pytest.raises(ZarrsampleError, match="spatial axes"):
        tissue_mask(open_image(np.zeros(3, np.uint8), axes="C"))
    with pytest.raises(ZarrsampleError, match="one time point"):
        tissue_mask(open_image(np.zeros((2, 8, 8), np.uint8), axes="TYX"))
    image = open_image(np.zeros((3, 8, 8), np.uint8), axes="CYX")
    with pytest.raises(ZarrsampleError, match=r"level=1 is out of range .* available levels are \[0\]"):
        tissue_mask(image, level=1)
    with pytest.raises(TypeError, match="level must be an int"):
        tissue_mask(image, level="0")
    with pytest.raises(ZarrsampleError, match="level must be >= 0"):
        tissue_mask(image, level=-1)
    with pytest.raises(TypeError, match="threshold"):
        tissue_mask(image, threshold=float("nan"))
    with pytest.raises(ZarrsampleError, match="min_size must be >= 0"):
        tissue_mask(image, min_size=-1)
    with pytest.raises(TypeError, match="fill_holes must be a bool"):
        tissue_mask(image, fill_holes=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tissue_mask("/nonexistent/slide.zarr")


# -- low-resolution views ---------------------------------------------------------------------


@given(
    st.integers(1, 40), st.integers(1, 40), st.integers(1, 7), st.integers(1, 16), st.integers(1, 16),
    st.sampled_from(["CYX", "YXC", "XY"]), st.integers(0, 2**32 - 1),
)
def test_read_reduced_matches_naive_block_means(height, width, factor, chunk_y, chunk_x, axes, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 2)).astype(np.uint8)
    order = {"CYX": (2, 0, 1), "YXC": (0, 1, 2), "XY": (1, 0)}[axes]
    data = pixels[..., 0].T if axes == "XY" else np.transpose(pixels, order)
    chunks = tuple({"C": 2, "Y": chunk_y, "X": chunk_x}[a] for a in axes)
    array = zarr.create_array(store=zarr.storage.MemoryStore(), shape=data.shape, chunks=chunks, dtype="uint8")
    array[...] = data
    image = open_image(array, axes=axes)
    tile_bytes = _thumbnail.TILE_BYTES
    try:
        _thumbnail.TILE_BYTES = 1  # one chunk-sized tile at a time
        got = read_reduced(image, factor)
    finally:
        _thumbnail.TILE_BYTES = tile_bytes
    expected = data if factor == 1 else naive_reduce(data, axes, factor)
    assert got.shape == expected.shape
    assert np.allclose(got, expected)


def test_choose_level():
    levels = ((3, 1000, 4000), (3, 500, 2000), (3, 250, 1000), (3, 125, 500))
    assert choose_level(levels, "CYX", side=1000) == 2
    assert choose_level(levels, "CYX", side=1) == 3
    assert choose_level(levels, "CYX", side=5000) == 0


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_single_level_image_shows_a_progress_bar_on_a_terminal(monkeypatch, tmp_path):
    """A plain array without a pyramid is read tile by tile to be block-averaged: a bar over the tiles."""
    array = zarr.create_array(store=str(tmp_path / "plain.zarr"), shape=(3, 2048, 2048), chunks=(3, 256, 256),
                              dtype="uint8")
    array[...] = 200
    array[:, 512:1536, 512:1536] = 60
    image = open_image(tmp_path / "plain.zarr", axes="CYX")
    monkeypatch.setattr(_thumbnail, "TILE_BYTES", 3 * 256 * 512)  # many tiles
    fake = _Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    mask = tissue_mask(image, side=256)
    assert re.search(r"tissue mask: .*/32 ", fake.getvalue()), fake.getvalue()  # tqdm drew a bar of 32 tiles
    fake.truncate(0)
    fake.seek(0)
    again = tissue_mask(image, side=256, progress=False)
    assert fake.getvalue() == "" and np.array_equal(mask.read(), again.read()) and mask.read().mean() == 0.25
