"""BlueNoisePatchSampler(resample_per_epoch=True): a fresh, checked pattern per tile, epoch and stream."""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
import warnings
from fractions import Fraction

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import collection
from reference import exact_coverage
from zarrsample_core import (
    BlueNoisePatchSampler,
    ImageCollection,
    PatchDataset,
    PatchSampler,
    ZarrsampleError,
    ZarrsampleWarning,
    open_image,
)
from zarrsample_core.planning import _bluenoise_sampler

AXES = {2: "YX", 3: "ZYX"}
#: Patches and sha256 prefix of the top-lefts of epoch 3, stream 2 of a reference plan (see known_plan).
KNOWN_EPOCH = (72, "2e6d57d8aef11301")


def per_epoch(patch=32, **kwargs):
    kwargs.setdefault("seed", 11)
    kwargs.setdefault("spatial_axes", "YX")
    return BlueNoisePatchSampler(patch, resample_per_epoch=True, **kwargs)


def digest(plan):
    return hashlib.sha256(plan.toplefts.astype("<i8").tobytes()).hexdigest()[:16]


@st.composite
def cases(draw):
    d = draw(st.sampled_from([2, 2, 3]))
    top = 80 if d == 2 else 30
    shape = tuple(draw(st.integers(1, top)) for _ in range(d))
    mask = None
    if draw(st.booleans()):
        mshape = tuple(draw(st.integers(1, 5)) for _ in range(d))
        bits = draw(st.lists(st.booleans(), min_size=int(np.prod(mshape)), max_size=int(np.prod(mshape))))
        mask = np.array(bits, dtype=bool).reshape(mshape)
    return dict(
        shape=shape, mask=mask,
        chunks=tuple(draw(st.integers(1, top)) for _ in range(d)),
        patch=tuple(draw(st.integers(1, 12)) for _ in range(d)),
        min_area=draw(st.sampled_from([0, 0.3, 0.5, 1, 5])),
        incomplete=draw(st.booleans()),
        overlap=draw(st.booleans()),
        resample=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32)),
        epochs=draw(st.lists(st.integers(0, 2**20), min_size=1, max_size=2, unique=True)),
        stream=draw(st.integers(0, 1000)),
    )


def close_pairs(toplefts, patch):
    """Pairs ``(i, j)`` whose top-lefts differ by less than the patch on every axis (the patches overlap).

    A sweep along the first axis: shift ``k`` compares each top-left with the
    ``k``-th next one in that order, until no pair is closer than the patch.
    """
    order = np.argsort(toplefts[:, 0], kind="stable")
    ordered = toplefts[order]
    pairs = [np.zeros((0, 2), np.int64)]
    for k in range(1, len(ordered)):
        d = np.abs(ordered[k:] - ordered[:-k])
        if not (d[:, 0] < patch[0]).any():
            break
        i = np.flatnonzero(np.all(d < patch, axis=1))
        pairs.append(np.stack([order[i], order[i + k]], axis=1))
    return np.concatenate(pairs)


def check_guarantees(plan, case):
    """Inside the image, tile-local, chunk-major, spaced, and every patch passes the exact mask test."""
    tl, eff, n = plan.toplefts, np.array(plan.patch_size), np.array(case["shape"])
    assert (tl >= 0).all()
    assert (tl < n).all() if case["incomplete"] else (tl + eff <= n).all()
    tiles = np.array(plan.tile_shape)
    assert (np.ravel_multi_index(tuple((tl // tiles).T), plan.tile_grid) == plan.chunk_ids).all()
    assert (tl % tiles + eff <= tiles).all()  # offsets in [0, tile - patch]: the tile holds the patch
    rows = [(c, *t) for c, t in zip(plan.chunk_ids.tolist(), tl.tolist())]
    assert rows == sorted(rows)  # chunk-major, then C order of the top-left
    # No overlap, or centres at least one patch apart in patch units: sum((d_k / p_k)**2) >= 1.
    pairs = close_pairs(tl, eff)
    if case["overlap"]:
        for i, j in pairs.tolist():
            assert sum(Fraction(int(d), int(p)) ** 2 for d, p in zip(tl[i] - tl[j], eff)) >= 1
    else:
        assert len(pairs) == 0, tl[pairs[0]]
    if case["mask"] is not None:
        area = case["min_area"] * np.prod(eff) if case["min_area"] < 1 else case["min_area"]
        for row, start in enumerate(tl.tolist()):
            cover = exact_coverage(case["mask"], case["shape"], start, [s + p for s, p in zip(start, eff)])
            assert cover >= area
            assert plan.coverage[row] == float(cover)


@pytest.mark.filterwarnings("ignore::zarrsample_core.ZarrsampleWarning")  # any mask shape, on purpose
@settings(max_examples=max(10, settings.default.max_examples // 4))  # each example plans several epochs
@given(cases())
def test_every_epoch_keeps_the_guarantees(case):
    axes = AXES[len(case["shape"])]
    coll = collection(case["shape"], case["chunks"], axes, case["mask"])

    def sampler():
        return BlueNoisePatchSampler(
            case["patch"], resample_positions=case["resample"], allow_overlap=case["overlap"],
            seed=case["seed"], min_area=case["min_area"], spatial_axes=axes,
            allow_incomplete_patches=case["incomplete"], resample_per_epoch=True,
        )

    one, other = sampler(), sampler()
    for epoch in case["epochs"]:
        plan = one.epoch_plan(coll, epoch=epoch, stream=case["stream"])
        check_guarantees(plan, case)
        again = other.epoch_plan(coll, epoch=epoch, stream=case["stream"])  # deterministic
        np.testing.assert_array_equal(again.toplefts, plan.toplefts)
        np.testing.assert_array_equal(again.coverage, plan.coverage)
    np.testing.assert_array_equal(one.plan(coll).toplefts, other.epoch_plan(coll, epoch=0, stream=0).toplefts)


def test_epochs_and_streams_draw_fresh_patterns_in_every_tile():
    coll = collection((1024, 1024), (256, 256), "YX")
    sampler = per_epoch()
    plans = {(e, s): sampler.epoch_plan(coll, epoch=e, stream=s) for e in range(3) for s in range(2)}
    digests = {key: digest(plan) for key, plan in plans.items()}
    assert len(set(digests.values())) == len(digests)
    for plan in plans.values():
        offsets = {}
        for cid, t in zip(plan.chunk_ids.tolist(), (plan.toplefts % 256).tolist()):
            offsets.setdefault(cid, []).append(tuple(t))
        assert len(offsets) == 16 and len({tuple(v) for v in offsets.values()}) == 16
    # Another epoch does not only move the tiles' patterns around: most tiles change.
    first, second = plans[0, 0], plans[1, 0]
    changed = [
        not np.array_equal(first.toplefts[first.chunk_ids == c], second.toplefts[second.chunk_ids == c])
        for c in range(16)
    ]
    assert sum(changed) >= 15


def test_plan_and_the_seed_compatible_views_show_epoch_zero_of_stream_zero():
    coll = collection((512, 384), (128, 128), "YX")
    sampler = per_epoch(16)
    zero = per_epoch(16).epoch_plan(coll, epoch=0, stream=0)
    np.testing.assert_array_equal(sampler.plan(coll).toplefts, zero.toplefts)
    listed = [p for c in sampler.compute_chunks(coll) for p in sampler.compute_patches(coll, c)]
    assert listed == zero.patch_slices()


def test_the_plan_cache_keeps_epochs_and_streams_apart():
    coll = collection((512, 512), (128, 128), "YX")
    sampler = per_epoch(16)
    fresh = {key: digest(per_epoch(16).epoch_plan(coll, epoch=key[0], stream=key[1]))
             for key in [(0, 0), (1, 0), (0, 1)]}
    for key in [(0, 0), (1, 0), (1, 0), (0, 1), (0, 0)]:
        assert digest(sampler.epoch_plan(coll, epoch=key[0], stream=key[1])) == fresh[key]
    assert digest(sampler.plan(coll)) == fresh[0, 0]
    sampler.epoch_plan(coll, epoch=1, stream=0)
    assert digest(sampler.plan(coll)) == fresh[0, 0]


def test_the_touched_tiles_are_reused_across_epochs_of_one_collection_only(monkeypatch):
    calls = []
    original = _bluenoise_sampler.windows_coverage
    monkeypatch.setattr(_bluenoise_sampler, "windows_coverage", lambda *a: calls.append(1) or original(*a))
    left, right = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    left[:, :2], right[:, 2:] = True, True
    a = collection((1024, 1024), (256, 256), "YX", left)
    b = collection((1024, 1024), (256, 256), "YX", right)
    sampler = per_epoch(32, min_area=0.5)
    plans = [sampler.epoch_plan(a, epoch=e, stream=0) for e in range(3)]
    assert len(calls) == 1
    assert all(set(p.chunk_ids.tolist()) == {0, 1, 4, 5, 8, 9, 12, 13} for p in plans)
    on_b = sampler.epoch_plan(b, epoch=1, stream=0)  # another mask: its own tiles
    assert len(calls) == 2
    np.testing.assert_array_equal(on_b.toplefts, per_epoch(32, min_area=0.5).epoch_plan(b, epoch=1, stream=0).toplefts)
    assert (on_b.toplefts[:, 1] >= 512).all()


def written_collection(root):
    """An image stored on disk (it pickles as its path) and a 1/32-scale numpy mask."""
    zarr.create_array(str(root / "image.zarr"), shape=(768, 640), chunks=(128, 128), dtype="uint8")
    mask = np.zeros((24, 20), bool)
    mask[4:20, 2:15] = True
    return ImageCollection({"images": open_image(str(root / "image.zarr"), axes="YX"),
                            "masks": open_image(mask, axes="YX")}, spatial_axes="YX")


def test_same_plan_after_pickling_and_in_a_spawned_process(tmp_path):
    coll = written_collection(tmp_path)
    sampler = per_epoch(24, min_area=0.25, seed=2024)
    expected = sampler.epoch_plan(coll, epoch=7, stream=3)
    copied = pickle.loads(pickle.dumps(sampler))
    assert repr(copied) == repr(sampler) and copied.per_epoch
    np.testing.assert_array_equal(copied.epoch_plan(coll, epoch=7, stream=3).toplefts, expected.toplefts)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        remote = pool.apply_async(sampler.epoch_plan, (coll,), dict(epoch=7, stream=3)).get(timeout=120)
    np.testing.assert_array_equal(remote.toplefts, expected.toplefts)
    np.testing.assert_array_equal(remote.coverage, expected.coverage)


def test_known_epoch_plan_is_stable():
    # Same seed, epoch and stream -> same positions on every machine (keys from integers only).
    plan = per_epoch(16).epoch_plan(collection((256, 192), (64, 64), "YX"), epoch=3, stream=2)
    assert (len(plan), digest(plan)) == KNOWN_EPOCH


def test_fixed_samplers_have_one_plan_for_every_epoch():
    coll = collection((512, 512), (128, 128), "YX")
    assert PatchSampler(16, spatial_axes="YX").per_epoch is False
    for resample in (False, True):
        sampler = BlueNoisePatchSampler(16, seed=4, resample_positions=resample, spatial_axes="YX")
        assert sampler.per_epoch is False and sampler.resample_per_epoch is False
        plan = sampler.plan(coll)
        assert sampler.epoch_plan(coll, epoch=5, stream=1) is plan
    fixed = BlueNoisePatchSampler(16, seed=4, resample_positions=True, spatial_axes="YX").plan(coll)
    assert digest(fixed) != digest(per_epoch(16, seed=4).plan(coll))


def test_resample_positions_makes_no_difference_per_epoch():
    coll = collection((512, 512), (128, 128), "YX")
    a = per_epoch(16, resample_positions=False).epoch_plan(coll, epoch=2, stream=0)
    b = per_epoch(16, resample_positions=True).epoch_plan(coll, epoch=2, stream=0)
    np.testing.assert_array_equal(a.toplefts, b.toplefts)


def test_forced_draws_change_every_epoch():
    coll = collection((512, 512), (128, 128), "YX")
    sampler = per_epoch(16)
    before = [digest(sampler.epoch_plan(coll, epoch=e, stream=0)) for e in range(2)]
    sampler.compute_sampling_positions(force=True)
    after = [digest(sampler.epoch_plan(coll, epoch=e, stream=0)) for e in range(2)]
    assert not set(before) & set(after)


def test_a_patch_larger_than_the_image_warns_at_the_callers_line():
    coll = collection((32, 32), (32, 32), "YX")
    for call in (lambda s: s.plan(coll), lambda s: s.epoch_plan(coll, epoch=1, stream=0)):
        for sampler in (per_epoch(64), BlueNoisePatchSampler(64, seed=0, spatial_axes="YX")):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call(sampler)
            (warning,) = [w for w in caught if issubclass(w.category, ZarrsampleWarning)]
            assert warning.filename == __file__, (sampler, warning.filename)


def test_errors():
    coll = collection((64, 64), (32, 32), "YX")
    with pytest.raises(TypeError, match="resample_per_epoch must be a bool, got 'yes'"):
        BlueNoisePatchSampler(8, resample_per_epoch="yes")
    with pytest.raises(TypeError, match="resample_per_epoch must be a bool, got 1"):
        BlueNoisePatchSampler(8, resample_per_epoch=1)
    sampler = per_epoch(8)
    for kwargs, error, message in [
        (dict(epoch="1", stream=0), TypeError, "epoch must be an int >= 0, got str '1'"),
        (dict(epoch=True, stream=0), TypeError, "epoch must be an int >= 0, got bool True"),
        (dict(epoch=0, stream=1.5), TypeError, "stream must be an int >= 0, got float 1.5"),
        (dict(epoch=-1, stream=0), ZarrsampleError, "epoch must be >= 0, got -1"),
        (dict(epoch=0, stream=-2), ZarrsampleError, "stream must be >= 0, got -2"),
    ]:
        with pytest.raises(error, match=message):
            sampler.epoch_plan(coll, **kwargs)
    with pytest.raises(TypeError):
        sampler.epoch_plan(coll, 0, 0)  # keyword-only
    with pytest.raises(AttributeError):
        sampler.resample_per_epoch = False


def test_repr_shows_the_option_when_set():
    assert repr(per_epoch(16)).endswith("seed=11, resample_per_epoch=True)")
    assert "resample_per_epoch" not in repr(BlueNoisePatchSampler(16, seed=11, spatial_axes="YX"))


def test_a_dataset_reads_each_epoch_pattern_and_resumes():
    image = np.arange(160 * 192, dtype=np.uint32).reshape(160, 192)
    coll = ImageCollection({"images": open_image(image, axes="YX")}, spatial_axes="YX")
    sampler = BlueNoisePatchSampler(16, seed=3, spatial_axes="YX", resample_per_epoch=True)
    ds = PatchDataset([coll, coll], sampler, shuffle=True, draw_same_chunk=True, return_positions=True)
    assert ds.per_epoch

    def keys(samples):
        return [(int(s["image_index"]), *s["position"][:, 0].tolist()) for s in samples]

    lengths = set()
    for epoch in range(4):
        got = keys(ds.epoch(epoch))
        expected = sorted((k, *t) for k in range(2)
                          for t in sampler.epoch_plan(coll, epoch=epoch, stream=k).toplefts.tolist())
        assert sorted(got) == expected
        lengths.add(len(got))
        it = ds.epoch(epoch, rank=1, world_size=2)
        head = keys(next(it) for _ in range(5))
        assert head + keys(ds.epoch(rank=1, world_size=2, state=it.state())) == keys(
            ds.epoch(epoch, rank=1, world_size=2))
    assert len(lengths) > 1  # the pattern's size changes from epoch to epoch, and so does the epoch's
    for s in ds.epoch(2):
        (y0, y1), (x0, x1) = s["position"]
        np.testing.assert_array_equal(s["images"], image[y0:y1, x0:x1])
    ds.set_epoch(2)
    assert len(ds) == ds.patches_in_epoch(2) == ds.epoch_length(epoch=2)
