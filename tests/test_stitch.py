"""Stitcher: identity models reproduce their source, blends against a naive reference,
bounded memory (early writes with positions, spills without), errors, temporary files."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from zarr.storage import MemoryStore

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, ZarrsampleError, open_image
from zarrsample_core.inference._stitch import Stitcher
from zarrsample_core.inference._stitch_blocks import patch_weights

REPO = Path(__file__).resolve().parents[1]


# -- the naive reference: a dense float64 sum / weight pair, one pixel at a time -------------


def naive_stitch(shape, patches, positions, *, crop, blend="mean", sigma=0.125):
    positions = np.asarray(positions)
    d = positions.shape[1]
    spatial, lead = tuple(shape[-d:]), tuple(shape[:-d])
    crop = [crop] * d if isinstance(crop, int) else list(crop)
    values = np.full(shape, -np.inf if blend == "max" else 0.0)
    weight = np.zeros(spatial)
    for patch, pos in zip(patches, positions):
        start = [int(a) + c for a, c in zip(pos[:, 0], crop)]
        stop = [int(b) - c for b, c in zip(pos[:, 1], crop)]
        for pixel in itertools.product(*(range(a, b) for a, b in zip(start, stop))):
            if not all(0 <= p < n for p, n in zip(pixel, spatial)):
                continue
            w = 1.0
            if blend == "gaussian":
                for p, a, b in zip(pixel, start, stop):
                    side = b - a
                    x = p - a + 0.5 - side / 2
                    w *= max(math.exp(-x * x / (2 * (sigma * side) ** 2)), 1e-12)
            local = tuple(p - int(a) for p, a in zip(pixel, pos[:, 0]))
            for index in itertools.product(*(range(n) for n in lead)):
                v = float(patch[index + local])
                if blend == "max":
                    values[index + pixel] = max(values[index + pixel], v)
                else:
                    values[index + pixel] += w * v
            weight[pixel] += w
    covered = np.broadcast_to(weight > 0, shape)
    if blend == "max":
        return np.where(covered, values, 0.0)
    return np.where(covered, values / np.where(weight > 0, weight, 1.0), 0.0)


def grid_windows(spatial, patch, stride, pad):
    """All windows (pad included) of a grid whose top-lefts start inside the output."""
    axes = [np.arange(0, n, s) for n, s in zip(spatial, stride)]
    tl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(spatial))
    pad, patch = np.asarray(pad), np.asarray(patch)
    return np.stack([tl - pad, tl + patch + pad], axis=-1).astype(np.int64)


def cut(source, positions, lead):
    """The patches of ``source`` at ``positions`` (zero outside), as an identity model sees them."""
    d = positions.shape[1]
    out = []
    for pos in positions:
        window = tuple((pos[:, 1] - pos[:, 0]).tolist())
        patch = np.zeros(source.shape[: len(lead)] + window, source.dtype)
        lo, hi = np.maximum(pos[:, 0], 0), np.minimum(pos[:, 1], source.shape[-d:])
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, pos[:, 0]))
        patch[(Ellipsis, *dst)] = source[(Ellipsis, *(slice(a, b) for a, b in zip(lo, hi)))]
        out.append(patch)
    return np.stack(out)


# -- identity models over PatchDataset ----------------------------------------------------------


def dataset_2d(shuffle=True):
    image = np.random.default_rng(0).random((3, 50, 37), dtype=np.float32)
    stored = zarr.create_array(store=MemoryStore(), shape=image.shape, chunks=(3, 16, 16), dtype="float32")
    stored[...] = image
    coll = ImageCollection({"images": open_image(stored, axes="CYX")}, spatial_axes="YX")
    sampler = PatchSampler(12, stride=9, pad=3, allow_incomplete_patches=True, spatial_axes="YX")
    return image, PatchDataset(coll, sampler, shuffle=shuffle, seed=0, return_positions=True)


def dataset_3d():
    image = np.random.default_rng(1).random((20, 23, 18), dtype=np.float32)
    coll = ImageCollection({"images": open_image(image, axes="ZYX")}, spatial_axes="ZYX")
    sampler = PatchSampler((6, 8, 8), stride=(5, 6, 7), pad=(1, 2, 2), allow_incomplete_patches=True,
                           spatial_axes="ZYX")
    return image, PatchDataset(coll, sampler, shuffle=True, seed=3, return_positions=True)


def stitch_dataset(stitcher, ds, batch=5):
    samples = list(ds.epoch(0))
    for i in range(0, len(samples), batch):
        part = samples[i : i + batch]
        stitcher.add(np.stack([s["images"] for s in part]), np.stack([s["position"] for s in part]))
    return samples


def test_identity_2d_channels_zarr_output_is_exact(tmp_path):
    image, ds = dataset_2d()
    path = tmp_path / "pred.zarr"
    with Stitcher(path, shape=image.shape, crop=3, chunks=(3, 16, 16), max_bytes=2**20) as s:
        samples = stitch_dataset(s, ds)
        assert samples[0]["images"].shape == (3, 18, 18)
        assert any((smp["position"][:, 0] < 0).any() for smp in samples)        # pad before the image
        assert any((smp["position"][:, 1] > (50, 37)).any() for smp in samples)  # past its end
    np.testing.assert_array_equal(zarr.open_array(path, mode="r")[...], image)
    assert s.stats()["patches"] == len(ds)


def test_identity_2d_numpy_output_is_exact_one_patch_at_a_time():
    image, ds = dataset_2d()
    out = np.full(image.shape, 7, np.float32)
    s = Stitcher(out, shape=image.shape, crop=(3, 3))
    for sample in ds.epoch(0):
        s.add(sample["images"], sample["position"])
    assert s.finalize() is out
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("output", ["zarr", "numpy"])
def test_identity_3d_is_exact(tmp_path, output):
    image, ds = dataset_3d()
    out = tmp_path / "vol.zarr" if output == "zarr" else np.zeros(image.shape, np.float32)
    s = Stitcher(out, shape=image.shape, crop=(1, 2, 2), chunks=(7, 8, 5) if output == "zarr" else None)
    stitch_dataset(s, ds, batch=4)
    result = s.finalize()
    np.testing.assert_array_equal(result[...], image)
    if output == "zarr":
        np.testing.assert_array_equal(zarr.open_array(out, mode="r")[...], image)


def test_ome_output_opens_as_an_image(tmp_path):
    image, ds = dataset_2d(shuffle=False)
    path = tmp_path / "pred.ome.zarr"
    s = Stitcher(path, shape=image.shape, crop=3, ome=True, axes="CYX")
    stitch_dataset(s, ds, batch=8)
    s.finalize()
    opened = open_image(str(path))
    assert opened.axes == "CYX" and opened.shape == image.shape
    np.testing.assert_array_equal(opened.read((slice(None),) * 3), image)
    group = zarr.open_group(path, mode="r")
    assert group.attrs["ome"]["version"] == "0.5"
    assert Stitcher(tmp_path / "default.zarr", shape=(4, 5, 6), ome=True).finalize().metadata.dimension_names == (
        "z", "y", "x"
    )


# -- the naive reference, with hypothesis ------------------------------------------------------


@st.composite
def stitch_cases(draw):
    d = draw(st.integers(1, 3))
    top = {1: 40, 2: 18, 3: 8}[d]
    spatial = tuple(draw(st.lists(st.integers(1, top), min_size=d, max_size=d)))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
    patch = [draw(st.integers(1, min(6, n + 2))) for n in spatial]
    stride = [draw(st.integers(1, p + 1)) for p in patch]
    pad = [draw(st.integers(0, 2)) for _ in spatial]
    crop = [draw(st.integers(0, p)) for p in pad]
    chunks = [draw(st.integers(1, n)) for n in spatial]
    positions = grid_windows(spatial, patch, stride, pad)
    order = np.asarray(draw(st.permutations(range(len(positions)))), np.int64)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(order) - 1)), max_size=4, unique=True)))
    return dict(
        shape=lead + spatial, chunks=lead + tuple(chunks), positions=positions, order=order,
        batches=np.split(order, cuts), crop=crop if draw(st.booleans()) else crop[0] if len(set(crop)) == 1 else crop,
        blend=draw(st.sampled_from(["mean", "gaussian", "max"])),
        sigma=draw(st.sampled_from([0.125, 0.3, 1.0])),
        output=draw(st.sampled_from(["path", "zarr", "numpy"])),
        plan=draw(st.booleans()), max_bytes=draw(st.sampled_from([0, 600, 2**20])),
        seed=draw(st.integers(0, 2**16)),
    )


@given(stitch_cases())
def test_matches_the_naive_reference(case):
    shape, positions = case["shape"], case["positions"]
    lead = shape[: len(shape) - positions.shape[1]]
    rng = np.random.default_rng(case["seed"])
    window = tuple((positions[0, :, 1] - positions[0, :, 0]).tolist())
    patches = rng.integers(-5, 10, (len(positions), *lead, *window)).astype(np.float64)
    expected = naive_stitch(shape, patches, positions, crop=case["crop"], blend=case["blend"],
                            sigma=case["sigma"])
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "path": os.path.join(tmp, "out.zarr"),
            "zarr": zarr.create_array(store=MemoryStore(), shape=shape, chunks=case["chunks"],
                                      dtype="float64", fill_value=3.0),
            "numpy": np.full(shape, 3.0),
        }[case["output"]]
        s = Stitcher(
            out, shape=shape, dtype="float64", chunks=case["chunks"] if case["output"] == "path" else None,
            blend=case["blend"], crop=case["crop"], sigma=case["sigma"], max_bytes=case["max_bytes"],
            positions=positions if case["plan"] else None,
        )
        for batch in case["batches"]:
            s.add(patches[batch], positions[batch])  # batches may be empty
        result = np.asarray(s.finalize()[...])
        if case["plan"] and case["output"] != "numpy":
            assert s.stats()["pending_chunks"] == 0 and s.stats()["spilled_chunks"] == 0
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


# -- blends ------------------------------------------------------------------------------------


def test_gaussian_weights_follow_the_formula():
    sides, sigma = (7, 10), 0.2
    weights = patch_weights(sides, blend="gaussian", sigma=sigma)
    for side, w in zip(sides, weights):
        x = np.arange(side) + 0.5 - side / 2
        np.testing.assert_allclose(w, np.exp(-(x**2) / (2 * (sigma * side) ** 2)), rtol=1e-14)
    assert weights[0].argmax() == 3 and np.allclose(weights[1][:5], weights[1][::-1][:5])


def test_gaussian_blend_weighs_two_patches_by_the_formula():
    out = np.zeros((1, 16))
    s = Stitcher(out, shape=(1, 16), dtype="float64", blend="gaussian", sigma=0.3, crop=1)
    s.add(np.ones((1, 10)), [[-1, 9]])      # cropped to [0, 8)
    s.add(np.zeros((1, 10)), [[3, 13]])     # cropped to [4, 12)
    s.finalize()
    x = np.arange(8) + 0.5 - 4
    w = np.exp(-(x**2) / (2 * (0.3 * 8) ** 2))
    np.testing.assert_allclose(out[0, :4], 1.0)
    np.testing.assert_allclose(out[0, 4:8], w[4:] / (w[4:] + w[:4]), rtol=1e-12)
    np.testing.assert_array_equal(out[0, 8:12], 0.0)
    np.testing.assert_array_equal(out[0, 12:], 0.0)  # covered by no patch


def test_gaussian_of_a_constant_image_is_that_constant(tmp_path):
    shape = (2, 45, 38)
    positions = grid_windows(shape[1:], (10, 12), (7, 5), (2, 3))
    s = Stitcher(tmp_path / "c.zarr", shape=shape, blend="gaussian", crop=(2, 3), chunks=(2, 16, 16))
    s.add(np.full((len(positions), 2, 14, 18), 2.5, np.float32), positions)
    np.testing.assert_allclose(s.finalize()[...], 2.5, rtol=1e-6)


def test_max_blend_equals_the_naive_max():
    rng = np.random.default_rng(5)
    shape = (30, 27)
    positions = grid_windows(shape, (9, 8), (4, 5), (1, 0))
    patches = rng.normal(size=(len(positions), 11, 8))
    expected = np.full(shape, -np.inf)
    for patch, pos in zip(patches, positions):
        lo, hi = np.maximum(pos[:, 0] + (1, 0), 0), np.minimum(pos[:, 1] - (1, 0), shape)
        region = tuple(slice(a, b) for a, b in zip(lo, hi))
        local = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, pos[:, 0]))
        expected[region] = np.maximum(expected[region], patch[local])
    s = Stitcher(np.zeros(shape), shape=shape, blend="max", crop=(1, 0))
    for i in np.random.default_rng(0).permutation(len(positions)):
        s.add(patches[i], positions[i])
    np.testing.assert_array_equal(s.finalize(), np.where(np.isinf(expected), 0, expected))


def test_integer_output_is_rounded():
    out = np.zeros((1, 3), np.uint8)
    s = Stitcher(out, shape=(1, 3))
    s.add(np.array([[1.0, 2.0, 300.0]]), [[0, 3]])
    s.add(np.array([[2.0, 2.0, 300.0]]), [[0, 3]])
    np.testing.assert_array_equal(s.finalize(), [[2, 2, 255]])


# -- borders and errors ------------------------------------------------------------------------


def test_a_patch_partly_outside_is_cropped():
    out = np.zeros((12, 12))
    s = Stitcher(out, shape=(12, 12), dtype="float64", crop=1)
    patch = np.arange(8 * 8, dtype=float).reshape(8, 8)
    s.add(patch, [[-3, 5], [8, 16]])
    s.finalize()
    expected = np.zeros((12, 12))
    expected[0:4, 9:12] = patch[3:7, 1:4]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("position, crop", [([[20, 28], [0, 8]], 0), ([[-4, 2], [0, 8]], 2), ([[0, 8], [-8, 0]], 0)])
def test_a_patch_wholly_outside_raises(position, crop):
    s = Stitcher(np.zeros((12, 12)), shape=(12, 12), crop=crop)
    window = tuple(b - a for a, b in position)
    with pytest.raises(ZarrsampleError, match=r"wholly outside the output.*\(12, 12\)") as info:
        s.add(np.zeros(window), position)
    assert str(position) in str(info.value)


def test_wrong_shapes_raise():
    s = Stitcher(np.zeros((3, 12, 12)), shape=(3, 12, 12))
    with pytest.raises(ZarrsampleError, match=r"patch must have shape .* = \(3, 4, 4\).*got \(3, 4, 5\)"):
        s.add(np.zeros((3, 4, 5)), [[0, 4], [0, 4]])
    with pytest.raises(ZarrsampleError, match=r"= \(2, 3, 4, 4\).*got \(2, 4, 4\)"):
        s.add(np.zeros((2, 4, 4)), [[[0, 4], [0, 4]], [[4, 8], [4, 8]]])
    with pytest.raises(ZarrsampleError, match=r"patch must have shape"):   # windows differ in a batch
        s.add(np.zeros((2, 3, 4, 4)), [[[0, 4], [0, 4]], [[4, 9], [4, 8]]])
    with pytest.raises(ZarrsampleError, match=r"position must be an integer array.*got shape \(2, 3\)"):
        s.add(np.zeros((3, 4, 4)), [[0, 4, 1], [0, 4, 1]])
    with pytest.raises(ZarrsampleError, match=r"position must be an integer array.*dtype float64"):
        s.add(np.zeros((3, 4, 4)), np.array([[0, 4], [0, 4]], float))
    with pytest.raises(ZarrsampleError, match=r"stop > start.*\[\[4, 4\], \[0, 4\]\]"):
        s.add(np.zeros((3, 0, 4)), [[4, 4], [0, 4]])
    s.add(np.zeros((3, 4, 4)), [[0, 4], [0, 4]])
    with pytest.raises(ZarrsampleError, match=r"position must have 2 spatial axes like the previous ones, got 3"):
        s.add(np.zeros((4, 4, 4)), [[0, 4], [0, 4], [0, 4]])
    with pytest.raises(ZarrsampleError, match=r"crop=3 must leave a non-empty window.*\[6, 6\]"):
        Stitcher(np.zeros((12, 12)), shape=(12, 12), crop=3).add(np.zeros((6, 6)), [[0, 6], [0, 6]])
    with pytest.raises(ZarrsampleError, match=r"position has 3 spatial axes but shape=\(12, 12\)"):
        Stitcher(np.zeros((12, 12)), shape=(12, 12)).add(np.zeros((1, 1, 1)), [[0, 1]] * 3)
    with pytest.raises(ZarrsampleError, match=r"patch must hold real numbers, got dtype complex128"):
        Stitcher(np.zeros((4,)), shape=(4,)).add(np.zeros(4, complex), [[0, 4]])


def test_bad_options_raise(tmp_path):
    ok = dict(shape=(8, 8))
    with pytest.raises(ZarrsampleError, match=r"blend must be one of 'mean', 'gaussian', 'max', got 'median'"):
        Stitcher(np.zeros((8, 8)), blend="median", **ok)
    with pytest.raises(ZarrsampleError, match=r"sigma must be a finite number > 0.*got 0"):
        Stitcher(np.zeros((8, 8)), sigma=0, **ok)
    with pytest.raises(TypeError, match=r"sigma must be a number, got '1'"):
        Stitcher(np.zeros((8, 8)), sigma="1", **ok)
    with pytest.raises(ZarrsampleError, match=r"crop must be >= 0, got -1"):
        Stitcher(np.zeros((8, 8)), crop=-1, **ok)
    with pytest.raises(TypeError, match=r"crop\[1\] must be an int"):
        Stitcher(np.zeros((8, 8)), crop=(1, 1.5), **ok)
    with pytest.raises(ZarrsampleError, match=r"crop must be an int or have one value per spatial axis \(2\), got \(1, 1, 1\)"):
        Stitcher(np.zeros((8, 8)), crop=(1, 1, 1), **ok).add(np.zeros((4, 4)), [[0, 4], [0, 4]])
    with pytest.raises(ZarrsampleError, match=r"out must have shape=\(8, 8\), got an array of shape \(8, 9\)"):
        Stitcher(np.zeros((8, 9)), **ok)
    with pytest.raises(ZarrsampleError, match=r"read-only"):
        Stitcher(np.broadcast_to(0.0, (8, 8)), **ok)
    with pytest.raises(TypeError, match=r"out must be a path, a zarr.Array or a numpy array, got list"):
        Stitcher([[0.0]], **ok)
    with pytest.raises(ZarrsampleError, match=r"ome=True needs out to be a path"):
        Stitcher(np.zeros((8, 8)), ome=True, **ok)
    with pytest.raises(ZarrsampleError, match=r"chunks must have one entry per axis of shape=\(8, 8\), got \(4,\)"):
        Stitcher(tmp_path / "a.zarr", chunks=(4,), **ok)
    with pytest.raises(ZarrsampleError, match=r"positions must be an integer array.*\(n, D, 2\)"):
        Stitcher(np.zeros((8, 8)), positions=[[0, 4], [0, 4]], **ok)
    with pytest.raises(ZarrsampleError, match=r"positions\[1\]=\[\[9, 12\], \[0, 4\]\] lies wholly outside"):
        Stitcher(np.zeros((8, 8)), positions=[[[0, 4], [0, 4]], [[9, 12], [0, 4]]], **ok)
    with pytest.raises(ZarrsampleError, match=r"max_bytes must be >= 0, got -1"):
        Stitcher(np.zeros((8, 8)), max_bytes=-1, **ok)
    with pytest.raises(ZarrsampleError, match=r"axes='CYX' has 3 letters but the array has 2"):
        Stitcher(tmp_path / "b.zarr", axes="CYX", **ok)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


# -- bounded memory ----------------------------------------------------------------------------


def test_positions_write_chunks_early_and_bound_memory(tmp_path):
    shape, chunk = (512, 512), 32
    image = np.random.default_rng(2).random(shape, dtype=np.float32)
    stored = zarr.create_array(store=MemoryStore(), shape=shape, chunks=(32, 512), dtype="float32")
    coll = ImageCollection({"images": open_image(stored, axes="YX")}, spatial_axes="YX")
    plan = PatchSampler(32, stride=24, pad=4, allow_incomplete_patches=True, spatial_axes="YX").plan(coll)
    pad = np.asarray(plan.pad)
    positions = np.stack([plan.toplefts - pad, plan.toplefts + np.asarray(plan.patch_size) + pad], axis=-1)
    patches = cut(image, positions, ())
    s = Stitcher(tmp_path / "p.zarr", shape=shape, chunks=(chunk, chunk), crop=4, positions=positions)
    pending = []
    for i in range(len(positions)):
        s.add(patches[i], positions[i])
        pending.append(s.stats()["pending_bytes"])
        if i == len(positions) // 2:
            assert s.stats()["chunks_written"] > 0
    stats = s.stats()
    assert stats["chunks_written"] == (512 // chunk) ** 2 and stats["pending_chunks"] == 0
    one_row = (512 // chunk) * chunk * chunk * 16           # float64 sum + weight of a chunk row
    accumulators = 512 * 512 * 16
    assert max(pending) <= stats["peak_bytes"] <= 3 * one_row < accumulators / 5
    assert stats["spills"] == 0
    np.testing.assert_array_equal(s.finalize()[...], image)


@pytest.mark.parametrize("height, width", [(256, 128), (256, 512), (256, 1024)])
def test_plan_order_keeps_one_row_of_chunks_pending_as_documented(height, width):
    # tiles of 70 x 70 (chunks of 64 rounded up to the stride 14), windows reach o = 2 past them
    stored = zarr.create_array(store=MemoryStore(), shape=(height, width), chunks=(64, 64), dtype="uint8")
    coll = ImageCollection({"images": open_image(stored, axes="YX")}, spatial_axes="YX")
    plan = PatchSampler(16, stride=14, allow_incomplete_patches=True, spatial_axes="YX").plan(coll)
    positions = np.stack([plan.toplefts, plan.toplefts + 16], axis=-1)
    chunk_bytes = 16 * 16 * 16
    expected = (math.ceil(width / 16) + math.ceil((70 + 2) / 16)) * chunk_bytes   # the Notes' formula
    for max_bytes in (2**30, 10 * chunk_bytes):
        out = zarr.create_array(store=MemoryStore(), shape=(height, width), chunks=(16, 16), dtype="float32")
        s = Stitcher(out, shape=(height, width), positions=positions, max_bytes=max_bytes)
        for i in range(0, len(positions), 7):
            s.add(np.ones((len(positions[i : i + 7]), 16, 16)), positions[i : i + 7])
        stats = s.stats()
        np.testing.assert_array_equal(s.finalize()[...], 1.0)
        if max_bytes > expected:
            assert stats["peak_bytes"] == expected and stats["spills"] == 0
        else:   # the waiting row spills: memory bounded for any width
            assert stats["peak_bytes"] <= max_bytes + chunk_bytes and stats["spills"] > 0


def test_a_window_missing_from_positions_raises():
    positions = grid_windows((16, 16), (8, 8), (8, 8), (0, 0))
    s = Stitcher(np.zeros((16, 16)), shape=(16, 16), positions=positions[:3])
    s.add(np.ones((3, 8, 8)), positions[:3])
    with pytest.raises(ZarrsampleError, match=r"touches output chunk \(0, 0\) more often .* listed in positions, once"):
        s.add(np.ones((8, 8)), positions[3])
    z = zarr.create_array(store=MemoryStore(), shape=(16, 16), chunks=(8, 8), dtype="float64")
    t = Stitcher(z, shape=(16, 16), positions=positions[:1])
    t.add(np.ones((8, 8)), positions[0])
    assert t.stats()["chunks_written"] == 1
    with pytest.raises(ZarrsampleError, match=r"touches output chunk \(0, 0\)"):
        t.add(np.ones((8, 8)), positions[0])   # its chunk is written already
    with pytest.raises(ZarrsampleError, match=r"shape \(0, \.\.\.\) for an empty batch, got \(1, 8, 8\)"):
        t.add(np.ones((1, 8, 8)), np.zeros((0, 2, 2), np.int64))


def test_spilled_accumulators_give_the_exact_result(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    shape = (2, 64, 48)
    image = np.random.default_rng(4).integers(0, 100, shape).astype(np.float32)
    positions = grid_windows(shape[1:], (12, 10), (9, 7), (2, 1))
    patches = cut(image, positions, shape[:1])
    order = np.random.default_rng(1).permutation(len(positions))
    s = Stitcher(tmp_path / "s.zarr", shape=shape, chunks=(2, 16, 16), crop=(2, 1), max_bytes=3 * 2 * 16 * 16 * 8)
    for batch in np.array_split(order, 9):
        s.add(patches[batch], positions[batch])
    stats = s.stats()
    assert stats["spills"] > 0 and stats["spilled_chunks"] > 0 and stats["chunks_written"] == 0
    assert stats["peak_bytes"] <= 4 * (2 * 16 * 16 * 8 + 16 * 16 * 8)
    assert s.spill_path is not None and os.listdir(s.spill_path)
    assert Path(s.spill_path).parent == tmp_path / "tmp"
    np.testing.assert_array_equal(s.finalize()[...], image)
    assert s.spill_path is None and os.listdir(tmp_path / "tmp") == []


# -- files -------------------------------------------------------------------------------------


def test_temporaries_are_removed_on_close_and_by_the_context_manager(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    positions = grid_windows((40, 40), (8, 8), (8, 8), (0, 0))
    with pytest.raises(RuntimeError, match="model failed"):
        with Stitcher(tmp_path / "a.zarr", shape=(40, 40), chunks=(8, 8), max_bytes=0) as s:
            s.add(np.ones((len(positions), 8, 8)), positions)
            spill = s.spill_path
            assert spill is not None and os.path.isdir(spill)
            raise RuntimeError("model failed")
    assert not os.path.exists(spill)
    with pytest.raises(ZarrsampleError, match="finalized or closed"):
        s.add(np.ones((8, 8)), positions[0])
    t = Stitcher(tmp_path / "b.zarr", shape=(40, 40), chunks=(8, 8), max_bytes=0)
    t.add(np.ones((len(positions), 8, 8)), positions)
    spill = t.spill_path
    t.close()
    assert spill is not None and not os.path.exists(spill)
    with Stitcher(tmp_path / "c.zarr", shape=(40, 40), chunks=(8, 8), max_bytes=0) as u:
        u.add(np.ones((len(positions), 8, 8)), positions)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "c.zarr", mode="r")[...], 1.0)
    assert sorted(os.listdir(tmp_path)) == ["a.zarr", "b.zarr", "c.zarr"]


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "keep.txt").write_text("data")
    with pytest.raises(FileExistsError, match=r"already exists.*never overwrites"):
        Stitcher(tmp_path / "x.zarr", shape=(4, 4))
    with pytest.raises(FileExistsError):
        Stitcher(str(tmp_path / "x.zarr"), shape=(4, 4), ome=True)
    assert os.listdir(tmp_path / "x.zarr") == ["keep.txt"]


def test_nothing_is_created_in_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(REPO))
    s = Stitcher(tmp_path / "o.zarr", shape=(30, 30), chunks=(8, 8), max_bytes=0)
    positions = grid_windows((30, 30), (10, 10), (7, 7), (0, 0))
    s.add(np.ones((len(positions), 10, 10)), positions)
    s.finalize()
    assert sorted(os.listdir(REPO)) == before
    assert sorted(os.listdir(tmp_path)) == ["o.zarr"]


def test_uncovered_chunks_of_a_given_array_are_zeroed_and_order_does_not_matter():
    rng = np.random.default_rng(9)
    shape = (3, 40, 40)
    positions = grid_windows((24, 40), (8, 8), (6, 6), (1, 1))      # rows 24.. stay uncovered
    patches = rng.random((len(positions), 3, 10, 10))
    results = []
    for seed in range(3):
        out = zarr.create_array(store=MemoryStore(), shape=shape, chunks=(1, 8, 8), dtype="float64", fill_value=5.0)
        s = Stitcher(out, shape=shape, crop=1, blend="gaussian", max_bytes=4000)
        order = np.random.default_rng(seed).permutation(len(positions))
        for batch in np.array_split(order, 7):
            s.add(patches[batch], positions[batch])
        results.append(s.finalize()[...])
    assert np.all(results[0][:, 26:] == 0) and np.all(results[0][:, :26] != 0)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-13)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-13)


def test_framework_tensors_are_accepted_without_importing_a_framework():
    import torch

    image, ds = dataset_2d()
    out = np.zeros(image.shape, np.float32)
    s = Stitcher(out, shape=image.shape, crop=3)
    samples = list(ds.epoch(0))
    for i in range(0, len(samples), 4):   # what a DataLoader's default collate gives
        part = samples[i : i + 4]
        s.add(torch.stack([torch.from_numpy(p["images"]) for p in part]),
              torch.stack([torch.from_numpy(p["position"]) for p in part]))
    np.testing.assert_array_equal(s.finalize(), image)
    code = "import sys, zarrsample_core.inference._stitch; print(sorted({'torch', 'tensorflow', 'jax'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
