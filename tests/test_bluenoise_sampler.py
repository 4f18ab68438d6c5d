"""BlueNoisePatchSampler: no overlap, exact mask test, inside the image, seeded."""

from __future__ import annotations

import hashlib
import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import collection
from reference import exact_coverage
from zarrsample_core import BlueNoisePatchSampler, ZarrsampleError, _bluenoise

AXES = {2: "YX", 3: "ZYX"}
#: Patches and sha256 prefix of the top-lefts of a reference resampled plan (see resampled_plan).
KNOWN_RESAMPLED = (287, "40e603c3a1c944be")


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


@pytest.mark.filterwarnings("ignore::zarrsample_core.ZarrsampleWarning")  # any mask shape, on purpose
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


def resampled_plan(coll, patch=32, **kwargs):
    return BlueNoisePatchSampler(patch, seed=11, resample_positions=True, spatial_axes="YX", **kwargs).plan(coll)


def offsets_by_tile(plan):
    """{chunk id: top-left offsets inside the tile, in plan order}."""
    offsets = {}
    for cid, t in zip(plan.chunk_ids.tolist(), (plan.toplefts % np.array(plan.tile_shape)).tolist()):
        offsets.setdefault(cid, []).append(tuple(t))
    return offsets


@pytest.mark.parametrize("allow_overlap", [False, True])
def test_a_resampled_tile_does_not_depend_on_the_tiles_planned_with_it(allow_overlap):
    everything = offsets_by_tile(resampled_plan(collection((1024, 1024), (256, 256), "YX"),
                                                allow_overlap=allow_overlap))
    assert len(everything) == 16
    for chosen in ([1, 11, 12], [5], [0, 2, 3, 4, 6, 7, 8, 9, 10, 13, 14, 15]):
        mask = np.zeros(16, bool)
        mask[chosen] = True  # one mask pixel per tile: the other tiles are never planned
        coll = collection((1024, 1024), (256, 256), "YX", mask.reshape(4, 4))
        some = offsets_by_tile(resampled_plan(coll, min_area=1, allow_overlap=allow_overlap))
        assert sorted(some) == chosen
        assert all(some[c] == everything[c] for c in chosen)


def test_resampled_patches_stay_in_their_tile_and_never_overlap():
    coll = collection((2048, 1792), (256, 256), "YX")
    plan = resampled_plan(coll, patch=24)
    tl, tiles = plan.toplefts, np.array(plan.tile_shape)
    tile_index = np.stack(np.unravel_index(plan.chunk_ids, plan.tile_grid), -1)
    assert (tl // tiles == tile_index).all()
    assert (tl % tiles + 24 <= tiles).all()
    apart = (np.abs(tl[:, None, :] - tl[None, :, :]) >= 24).any(axis=2)
    assert apart[~np.eye(len(tl), dtype=bool)].all()
    assert len(offsets_by_tile(plan)) == 8 * 7


def test_resampled_centres_keep_one_patch_apart_with_overlap():
    coll = collection((1024, 1024), (256, 256), "YX")
    plan = resampled_plan(coll, patch=(20, 30), allow_overlap=True)
    tl = plan.toplefts
    d = tl[:, None, :] - tl[None, :, :]
    # sum((d_k / p_k)**2) >= 1 in integers: (d0 * 30)**2 + (d1 * 20)**2 >= (20 * 30)**2
    sq = (d[..., 0] * 30) ** 2 + (d[..., 1] * 20) ** 2
    same_tile = plan.chunk_ids[:, None] == plan.chunk_ids[None, :]
    assert (sq[same_tile & ~np.eye(len(tl), dtype=bool)] >= 600**2).all()
    assert len(np.unique(plan.chunk_ids)) == 16


def test_resampled_density_matches_the_base_pattern():
    coll = collection((4096, 4096), (512, 512), "YX")
    base = len(BlueNoisePatchSampler(64, seed=11, spatial_axes="YX").plan(coll)) / 64
    fresh = len(resampled_plan(coll, patch=64)) / 64
    assert 0.9 < fresh / base < 1.1


def test_resampling_in_blocks_gives_the_same_plan(monkeypatch):
    coll = collection((1024, 768), (128, 128), "YX")
    whole = resampled_plan(coll, patch=16).toplefts
    monkeypatch.setattr(_bluenoise, "_BLOCK_CELLS", 100)  # one tile per block
    np.testing.assert_array_equal(resampled_plan(coll, patch=16).toplefts, whole)


def test_known_resampled_plan_is_stable():
    # Same seed -> same resampled positions on every machine (keys from seed and chunk id).
    plan = resampled_plan(collection((512, 384), (128, 128), "YX"), patch=16)
    digest = hashlib.sha256(plan.toplefts.astype("<i8").tobytes()).hexdigest()
    assert (len(plan), digest[:16]) == KNOWN_RESAMPLED


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
