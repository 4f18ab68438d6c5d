"""BlueNoisePatchSampler: no overlap, exact mask test, inside the image, seeded."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import collection
from reference import exact_coverage
from zarrsample_core import BlueNoisePatchSampler, ZarrsampleError

AXES = {2: "YX", 3: "ZYX"}


@st.composite
def cases(draw):
    d = draw(st.sampled_from([2, 2, 3]))
    top = 80 if d == 2 else 30
    shape = tuple(draw(st.integers(1, top)) for _ in range(d))
    chunks = tuple(draw(st.integers(1, top)) for _ in range(d))
    patch = tuple(draw(st.integers(1, 12)) for _ in range(d))
    mask = None
    if draw(st.booleans()):
        mshape = tuple(draw(st.integers(1, 6)) for _ in range(d))
        bits = draw(st.lists(st.booleans(), min_size=int(np.prod(mshape)), max_size=int(np.prod(mshape))))
        mask = np.array(bits, dtype=bool).reshape(mshape)
    return dict(
        shape=shape, chunks=chunks, patch=patch, mask=mask,
        min_area=draw(st.sampled_from([0, 0.3, 0.5, 1, 5])),
        incomplete=draw(st.booleans()),
        overlap=draw(st.booleans()),
        resample=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32)),
    )


def pairs_overlap(a, b, patch):
    return bool(np.all(np.abs(a - b) < patch))


@given(cases())
def test_bluenoise_guarantees(case):
    shape, patch = case["shape"], case["patch"]
    axes = AXES[len(shape)]
    coll = collection(shape, case["chunks"], axes, case["mask"])
    sampler = BlueNoisePatchSampler(
        patch, resample_positions=case["resample"], allow_overlap=case["overlap"], seed=case["seed"],
        min_area=case["min_area"], spatial_axes=axes, allow_incomplete_patches=case["incomplete"],
    )
    plan = sampler.plan(coll)
    tl = plan.toplefts
    eff = np.array(plan.patch_size)
    n = np.array(shape)
    # Inside the image.
    assert (tl >= 0).all()
    if case["incomplete"]:
        assert (tl < n).all()
    else:
        assert (tl + eff <= n).all()
    # Spacing: no overlap, or centres at least one patch apart in patch units
    # (sum((d_k / p_k)^2) >= 1: the patch side for square patches).
    for i, j in itertools.combinations(range(len(tl)), 2):
        if case["overlap"]:
            assert sum(Fraction(int(d), int(p)) ** 2 for d, p in zip(tl[i] - tl[j], eff)) >= 1
        else:
            assert not pairs_overlap(tl[i], tl[j], eff)
    # Every patch passes the exact mask test.
    if case["mask"] is not None:
        area = case["min_area"] * np.prod(eff) if case["min_area"] < 1 else case["min_area"]
        for row, start in enumerate(tl.tolist()):
            cover = exact_coverage(case["mask"], shape, start, [s + p for s, p in zip(start, eff)])
            assert cover >= area
            assert plan.coverage[row] == float(cover)
    # Chunk ids agree with the tiles, and the seed-compatible views partition the plan.
    tiles = np.array(plan.tile_shape)
    assert (np.ravel_multi_index(tuple((tl // tiles).T), plan.tile_grid) == plan.chunk_ids).all()
    listed = [p for c in sampler.compute_chunks(coll) for p in sampler.compute_patches(coll, c)]
    assert listed == plan.patch_slices()
    # Deterministic for a seed.
    again = BlueNoisePatchSampler(
        patch, resample_positions=case["resample"], allow_overlap=case["overlap"], seed=case["seed"],
        min_area=case["min_area"], spatial_axes=axes, allow_incomplete_patches=case["incomplete"],
    ).plan(coll)
    np.testing.assert_array_equal(again.toplefts, tl)


def test_sixteenth_scale_mask_yields_patches():
    # The reference library returns no patch at all for a 1/16-scale mask.
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    coll = collection((1024, 1024), (256, 256), "YX", mask)
    plan = BlueNoisePatchSampler(64, min_area=0.5, seed=0, spatial_axes="YX").plan(coll)
    assert len(plan) >= 10  # 4 tiles of 256^2 inside the mask, ~5 patches each
    assert (plan.coverage >= 0.5 * 64 * 64).all()


def test_no_overlap_uses_the_full_diagonal_radius():
    coll = collection((4096, 4096), (1024, 1024), "YX")
    tl = BlueNoisePatchSampler(128, seed=3, spatial_axes="YX").plan(coll).toplefts
    for i, j in itertools.combinations(range(len(tl)), 2):
        assert not pairs_overlap(tl[i], tl[j], 128)
    assert len(tl) > 100


def test_seeds_and_forced_resampling_change_positions():
    coll = collection((2048, 2048), (512, 512), "YX")
    a = BlueNoisePatchSampler(64, seed=1, spatial_axes="YX")
    b = BlueNoisePatchSampler(64, seed=2, spatial_axes="YX")
    first = a.plan(coll).toplefts.copy()
    assert not np.array_equal(first, b.plan(coll).toplefts)
    a.compute_sampling_positions()  # reuses the pattern
    np.testing.assert_array_equal(a.plan(coll).toplefts, first)
    a.compute_sampling_positions(force=True)
    assert not np.array_equal(a.plan(coll).toplefts, first)


def test_base_pattern_repeats_per_tile_unless_resampled():
    coll = collection((1024, 1024), (256, 256), "YX")
    plan = BlueNoisePatchSampler(32, seed=0, spatial_axes="YX").plan(coll)
    offsets = {}
    for cid, t in zip(plan.chunk_ids.tolist(), (plan.toplefts % 256).tolist()):
        offsets.setdefault(cid, []).append(tuple(t))
    assert len({tuple(v) for v in offsets.values()}) == 1
    plan = BlueNoisePatchSampler(32, seed=0, resample_positions=True, spatial_axes="YX").plan(coll)
    offsets = {}
    for cid, t in zip(plan.chunk_ids.tolist(), (plan.toplefts % 256).tolist()):
        offsets.setdefault(cid, []).append(tuple(t))
    assert len({tuple(v) for v in offsets.values()}) > 1


def test_errors():
    with pytest.raises(ZarrsampleError, match="compute_chunks, compute_patches or plan"):
        BlueNoisePatchSampler(8, seed=0, spatial_axes="YX").compute_sampling_positions()
    with pytest.raises(ZarrsampleError, match="seed must be a non-negative int"):
        BlueNoisePatchSampler(8, seed=-1)
    with pytest.raises(TypeError, match="allow_overlap must be a bool"):
        BlueNoisePatchSampler(8, allow_overlap="yes")
    with pytest.raises(ZarrsampleError, match="patch_size"):
        BlueNoisePatchSampler((8, 8, 8), spatial_axes="YX")


def test_repr_names_class_and_patch_size():
    text = repr(BlueNoisePatchSampler(16, seed=5, spatial_axes="YX"))
    assert text.startswith("BlueNoisePatchSampler(") and "'X': 16" in text and "seed=5" in text
