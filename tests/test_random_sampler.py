"""Random crops per epoch: exact samplable sets, uniform draws, class balance, epochs, shards and resume."""

from __future__ import annotations

import itertools
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import exact_coverage
from scipy import stats

from zarrsample_core import (
    ClassBalancedPatchSampler,
    ImageCollection,
    PatchDataset,
    PatchSampler,
    RandomPatchSampler,
    ZarrsampleError,
    ZarrsampleWarning,
    open_image,
)
from zarrsample_core.planning._coverage import axis_scales, threshold_numerator
from zarrsample_core.planning._samplable import Criterion, samplable_set
from zarrsample_core.planning._summed_area import SummedArea, summed_area


def required_area(min_area, patch):
    return Fraction(min_area) * int(np.prod(patch)) if min_area < 1 else Fraction(min_area)


def naive_samplable(mask, shape, patch, min_area, incomplete):
    """Every top-left passing the exact coverage test, by brute force."""
    extent = [n if incomplete else n - p + 1 for n, p in zip(shape, patch)]
    area = required_area(min_area, patch)
    out = set()
    for t in itertools.product(*[range(max(e, 0)) for e in extent]):
        stop = [x + p for x, p in zip(t, patch)]
        if mask is None or exact_coverage(mask, shape, t, stop) >= area:
            out.add(t)
    return out


def set_members(found):
    members = []
    for start, size in zip(found.box_start, found.box_size):
        members += itertools.product(*[range(a, a + b) for a, b in zip(start.tolist(), size.tolist())])
    for start, bits in zip(found.leaf_start, found.leaf_bits):
        for j in range(64):
            if (int(bits) >> j) & 1:
                offset = np.unravel_index(j, tuple(found.leaf_shape.tolist()))
                members.append(tuple(int(a + b) for a, b in zip(start, offset)))
    return members


def collection(image_shape, mask=None, labels=None, axes="YX"):
    modalities = {"images": open_image(np.zeros(image_shape, np.uint8), axes=axes)}
    if mask is not None:
        modalities["masks"] = open_image(mask, axes=axes)
    if labels is not None:
        modalities["labels"] = open_image(labels, axes=axes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZarrsampleWarning)  # masks of any aspect ratio, on purpose
        return ImageCollection(modalities, spatial_axes=axes)


@st.composite
def masked_geometry(draw, dims=2):
    shape = tuple(draw(st.integers(2, 14 if dims == 2 else 6)) for _ in range(dims))
    mask_shape = tuple(draw(st.integers(1, 9 if dims == 2 else 4)) for _ in range(dims))
    density = draw(st.sampled_from([0.15, 0.5, 0.85]))
    seed = draw(st.integers(0, 2**16))
    mask = np.random.default_rng(seed).random(mask_shape) < density
    patch = tuple(draw(st.integers(1, n)) for n in shape)
    min_area = draw(st.sampled_from([0.0, 0.25, 0.5, 0.99, 1, 3, 7]))
    incomplete = draw(st.booleans())
    return shape, mask, patch, min_area, incomplete


# -- the summed-area table --------------------------------------------------


@given(masked_geometry(), st.data())
def test_summed_area_coverage_equals_the_naive_area(geometry, data):
    shape, mask, _, _, _ = geometry
    table = summed_area(lambda lo, hi: mask[lo:hi], axis_scales(shape, mask.shape), max_bytes=None, what="m")
    starts = np.array(data.draw(st.lists(st.tuples(*[st.integers(-3, n + 2) for n in shape]), min_size=1, max_size=8)))
    sizes = np.array(data.draw(st.lists(st.tuples(*[st.integers(1, n + 3) for n in shape]),
                                        min_size=len(starts), max_size=len(starts))))
    got = table.coverage(starts, starts + sizes)
    for a, b, g in zip(starts.tolist(), (starts + sizes).tolist(), got):
        assert Fraction(int(g), table.denominator) == exact_coverage(mask, shape, [max(0, x) for x in a], b)


@given(masked_geometry(dims=3), st.data())
def test_summed_area_coverage_in_3d(geometry, data):
    shape, mask, _, _, _ = geometry
    table = summed_area(lambda lo, hi: mask[lo:hi], axis_scales(shape, mask.shape), max_bytes=None, what="m")
    start = np.array([data.draw(st.integers(0, n - 1)) for n in shape])
    stop = start + np.array([data.draw(st.integers(1, n)) for n in shape])
    got = table.coverage(start[None], stop[None])[0]
    assert Fraction(int(got), table.denominator) == exact_coverage(mask, shape, start.tolist(), stop.tolist())


def test_a_table_beyond_max_plan_bytes_is_refused_in_one_line():
    mask = np.ones((64, 64), bool)
    sampler = RandomPatchSampler(4, 10, spatial_axes="YX", seed=0, max_plan_bytes=1000)
    with pytest.raises(ZarrsampleError, match=r"summed-area table would take .*max_plan_bytes=1000"):
        sampler.plan(collection((128, 128), mask))


# -- the exact samplable set ----------------------------------------------


@given(masked_geometry(), st.integers(1, 9))
def test_samplable_set_is_exactly_the_positions_that_pass(geometry, cell):
    shape, mask, patch, min_area, incomplete = geometry
    scales = axis_scales(shape, mask.shape)
    table = summed_area(lambda lo, hi: mask[lo:hi], scales, max_bytes=None, what="m")
    criterion = Criterion(table, threshold_numerator(min_area, patch, scales))
    extent = [n if incomplete else n - p + 1 for n, p in zip(shape, patch)]
    found = samplable_set(extent, patch, [criterion], cell=(cell, cell))
    members = set_members(found)
    assert len(members) == len(set(members)) == found.total  # boxes and leaves never overlap
    assert set(members) == naive_samplable(mask, shape, patch, min_area, incomplete)


@given(masked_geometry(dims=3))
def test_samplable_set_in_3d(geometry):
    shape, mask, patch, min_area, incomplete = geometry
    scales = axis_scales(shape, mask.shape)
    table = summed_area(lambda lo, hi: mask[lo:hi], scales, max_bytes=None, what="m")
    extent = [n if incomplete else n - p + 1 for n, p in zip(shape, patch)]
    found = samplable_set(extent, patch, [Criterion(table, threshold_numerator(min_area, patch, scales))])
    assert sorted(set_members(found)) == sorted(naive_samplable(mask, shape, patch, min_area, incomplete))


@given(masked_geometry(), st.integers(0, 2**16))
def test_every_crop_passes_the_exact_coverage_test(geometry, seed):
    shape, mask, patch, min_area, incomplete = geometry
    sampler = RandomPatchSampler(patch, 40, min_area=min_area, spatial_axes="YX",
                                 allow_incomplete_patches=incomplete, seed=seed)
    coll = collection(shape, mask)
    allowed = naive_samplable(mask, shape, patch, min_area, incomplete)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZarrsampleWarning)  # a patch larger than the image
        plan = sampler.epoch_plan(coll, epoch=seed % 5, stream=seed % 3)
    assert len(plan) == (40 if allowed else 0)
    assert {tuple(t) for t in plan.toplefts.tolist()} <= allowed
    for t, cover in zip(plan.toplefts.tolist(), plan.coverage):
        stop = [x + p for x, p in zip(t, patch)]
        assert Fraction(cover).limit_denominator(10**6) == exact_coverage(mask, shape, t, stop)
    ids = plan.chunk_ids
    assert (np.diff(ids) >= 0).all()  # chunk tile by chunk tile


def test_crops_are_uniform_over_the_samplable_positions():
    """Chi-square over every samplable top-left; a sampler that picks boxes, not positions, fails."""
    mask = np.zeros((6, 6), bool)
    mask[1:4, 1:5] = True
    mask[5, 0] = True
    shape, patch = (24, 24), (5, 5)
    coll = collection(shape, mask)
    sampler = RandomPatchSampler(patch, 400, min_area=0.6, spatial_axes="YX", seed=11)
    allowed = sorted(naive_samplable(mask, shape, patch, 0.6, False))
    index = {t: i for i, t in enumerate(allowed)}
    counts = np.zeros(len(allowed), np.int64)
    for epoch in range(100):
        for t in sampler.epoch_plan(coll, epoch=epoch).toplefts.tolist():
            counts[index[tuple(t)]] += 1
    assert counts.sum() == 40_000 and len(allowed) > 100
    assert stats.chisquare(counts).pvalue > 1e-4
    # The same test on a biased draw (a box or leaf uniformly, then a position in it) fails.
    found = sampler.samplable(coll)
    rng = np.random.default_rng(0)
    cells = len(found.box_start) + len(found.leaf_start)
    assert cells > 1
    biased = np.zeros(len(allowed), np.int64)
    for c in rng.integers(0, cells, 40_000):
        if c < len(found.box_start):
            t = found.box_start[c] + rng.integers(0, found.box_size[c])
        else:
            leaf = found.leaf_bits[c - len(found.box_start)]
            on = [j for j in range(64) if (int(leaf) >> j) & 1]
            j = on[rng.integers(len(on))]
            t = found.leaf_start[c - len(found.box_start)] + np.unravel_index(j, tuple(found.leaf_shape))
        biased[index[tuple(int(x) for x in t)]] += 1
    assert stats.chisquare(biased).pvalue < 1e-6


def test_epochs_and_images_differ_and_each_is_reproducible():
    mask = np.ones((8, 8), bool)
    coll = collection((128, 128), mask)
    sampler = RandomPatchSampler(16, 64, spatial_axes="YX", seed=5)
    e0, e1 = sampler.epoch_plan(coll, epoch=0), sampler.epoch_plan(coll, epoch=1)
    s1 = sampler.epoch_plan(coll, epoch=0, stream=1)
    assert not np.array_equal(e0.toplefts, e1.toplefts) and not np.array_equal(e0.toplefts, s1.toplefts)
    again = RandomPatchSampler(16, 64, spatial_axes="YX", seed=5).epoch_plan(collection((128, 128), mask), epoch=1)
    np.testing.assert_array_equal(again.toplefts, e1.toplefts)
    assert sampler.plan(coll).toplefts.tolist() == e0.toplefts.tolist()
    # Pixel positions, not a grid: many top-lefts off any stride.
    assert (e0.toplefts % 16 != 0).any()


def test_num_patches_as_a_float_scales_with_the_samplable_area():
    mask = np.zeros((16, 16), bool)
    mask[:8] = True
    coll = collection((256, 256), mask)
    sampler = RandomPatchSampler(16, 1.0, min_area=1.0 - 1e-9, spatial_axes="YX", seed=0)
    total = sampler.samplable(coll).total
    assert total == 113 * 241  # rows 0..112 keep the window in the top half; 241 columns
    assert sampler.count(coll) == round(total / 256) == len(sampler.plan(coll))
    half = RandomPatchSampler(16, 0.5, min_area=1.0 - 1e-9, spatial_axes="YX", seed=0)
    assert half.count(coll) == round(total / 512)


def test_without_a_mask_every_position_is_samplable():
    coll = collection((40, 30))
    sampler = RandomPatchSampler((8, 6), 10, spatial_axes="YX", seed=0)
    assert sampler.samplable(coll).total == 33 * 25
    incomplete = RandomPatchSampler((8, 6), 10, spatial_axes="YX", seed=0, allow_incomplete_patches=True)
    assert incomplete.samplable(coll).total == 40 * 30


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"num_patches": 0}, ZarrsampleError, r"num_patches must be >= 1"),
    ({"num_patches": True}, TypeError, r"num_patches must be an int or a float"),
    ({"num_patches": float("nan")}, ZarrsampleError, r"num_patches must be a finite float > 0"),
    ({"num_patches": 3, "seed": -1}, ZarrsampleError, r"seed must be a non-negative int"),
])
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomPatchSampler(8, spatial_axes="YX", **kwargs)


def test_bad_epochs_are_named():
    sampler = RandomPatchSampler(8, 4, spatial_axes="YX", seed=0)
    with pytest.raises(ZarrsampleError, match=r"epoch must be >= 0, got -1"):
        sampler.epoch_plan(collection((16, 16)), epoch=-1)


# -- class balance --------------------------------------------------------


def class_cover(labels, c, toplefts, patch=16, factor=4):
    """Pixels of class ``c`` in each window, on the labels repeated to image pixels (integer scale)."""
    up = labels.repeat(factor, 0).repeat(factor, 1) == c
    return np.array([up[y:y + patch, x:x + patch].sum() for y, x in toplefts.tolist()])


def labelled():
    labels = np.zeros((32, 32), np.uint8)
    labels[2:10, 2:12] = 1
    labels[20:23, 25:28] = 2
    labels[28:, :4] = 3  # not asked for
    return labels


def test_class_frequencies_follow_the_ratios_and_each_crop_covers_its_class():
    labels = labelled()
    shape, patch = (128, 128), (16, 16)
    coll = collection(shape, labels=labels)
    ratios = {0: 0.2, 1: 0.3, 2: 0.5}
    sampler = ClassBalancedPatchSampler(patch, 3000, class_ratios=ratios, min_class_area=0.25,
                                        spatial_axes="YX", seed=3)
    plan = sampler.epoch_plan(coll, epoch=0)
    assert len(plan) == 3000
    covers = {c: class_cover(labels, c, plan.toplefts) >= 64 for c in ratios}
    # Every crop covers at least one of the target classes as required.
    assert np.logical_or.reduce(list(covers.values())).all()
    # Class 2 windows are rare by area (a 3 x 3 label blob): without balancing, few crops would cover it.
    observed = covers[2].mean()
    assert abs(observed - 0.5) < 0.05, observed
    uniform = RandomPatchSampler(patch, 3000, spatial_axes="YX", seed=3).epoch_plan(coll, epoch=0)
    by_chance = np.mean(class_cover(labels, 2, uniform.toplefts) >= 64)
    assert by_chance < 0.2


def test_the_multinomial_counts_match_the_ratios():
    labels = labelled()
    coll = collection((128, 128), labels=labels)
    sampler = ClassBalancedPatchSampler(16, 500, class_ratios={1: 1, 2: 3}, min_class_area=0.5,
                                        spatial_axes="YX", seed=0)
    assert sampler.classes(coll) == {1: 0.25, 2: 0.75}
    hits = {1: 0, 2: 0}
    for epoch in range(20):
        toplefts = sampler.epoch_plan(coll, epoch=epoch).toplefts
        for c in hits:
            hits[c] += int((class_cover(labels, c, toplefts) >= 128).sum())
    assert hits[1] + hits[2] == 10_000  # the class windows are disjoint here
    assert abs(hits[2] / 10_000 - 0.75) < 0.02


def test_absent_classes_are_skipped_and_the_others_renormalised():
    labels = labelled()
    coll = collection((128, 128), labels=labels)
    sampler = ClassBalancedPatchSampler(16, 100, class_ratios={1: 0.2, 2: 0.2, 7: 0.6}, spatial_axes="YX", seed=0)
    assert sampler.classes(coll) == {1: 0.5, 2: 0.5}
    assert len(sampler.plan(coll)) == 100
    none = ClassBalancedPatchSampler(16, 100, class_ratios={7: 1}, spatial_axes="YX", seed=0)
    assert len(none.plan(coll)) == 0


def test_class_balance_works_with_a_tissue_mask_at_another_scale():
    labels = labelled()
    mask = np.zeros((8, 8), bool)
    mask[:4] = True  # top half only
    coll = collection((128, 128), mask=mask, labels=labels)
    sampler = ClassBalancedPatchSampler(16, 400, class_ratios={0: 1, 1: 1, 2: 1}, min_area=1.0 - 1e-9,
                                        spatial_axes="YX", seed=0)
    plan = sampler.plan(coll)
    assert (plan.toplefts[:, 0] <= 64 - 16).all()  # every window inside the mask
    assert sampler.classes(coll) == {0: 0.5, 1: 0.5}  # class 2 lies in the bottom half


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"class_ratios": {}}, TypeError, r"class_ratios must be a non-empty dict"),
    ({"class_ratios": {"a": 1}}, TypeError, r"class_ratios keys must be int classes"),
    ({"class_ratios": {1: -1}}, ZarrsampleError, r"class_ratios values must be finite numbers >= 0"),
    ({"class_ratios": {1: 0}}, ZarrsampleError, r"class_ratios must have a positive sum"),
    ({"class_ratios": {1: 1}, "min_class_area": -2}, ZarrsampleError, r"min_class_area must be a finite"),
    ({"class_ratios": {1: 1}, "labels": 3}, TypeError, r"labels must be the name of a modality"),
])
def test_bad_class_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        ClassBalancedPatchSampler(8, 10, spatial_axes="YX", **kwargs)


def test_a_missing_or_float_label_image_is_refused_in_one_line():
    sampler = ClassBalancedPatchSampler(8, 10, class_ratios={1: 1}, spatial_axes="YX", seed=0)
    with pytest.raises(ZarrsampleError, match=r"needs the label modality 'labels', but the collection has"):
        sampler.plan(collection((32, 32)))
    with pytest.raises(ZarrsampleError, match=r"must hold integer classes, got dtype float32"):
        sampler.plan(collection((32, 32), labels=np.zeros((32, 32), np.float32)))


# -- in a dataset ---------------------------------------------------------


def dataset(**kwargs):
    image = np.arange(96 * 80, dtype=np.uint16).reshape(96, 80)
    mask = np.zeros((12, 10), bool)
    mask[2:10, 1:8] = True
    coll = ImageCollection({
        "images": open_image(image, axes="YX"),
        "masks": open_image(mask, axes="YX"),
    }, spatial_axes="YX")
    sampler = RandomPatchSampler(12, 37, min_area=0.5, spatial_axes="YX", seed=9)
    options = dict(shuffle=True, seed=1, return_positions=True)
    options.update(kwargs)
    return PatchDataset([coll, coll], sampler, **options), image


def positions(samples):
    return [(int(s["image_index"]), *s["position"][:, 0].tolist()) for s in samples]


@pytest.mark.parametrize("order", [{}, {"draw_same_chunk": True}, {"shuffle_window": 2}, {"shuffle": False}])
def test_dataset_epochs_draw_new_crops_with_exact_pixels(order):
    ds, image = dataset(**order)
    assert len(ds) == 74 and ds.per_epoch
    first, second = list(ds.epoch(0)), list(ds.epoch(1))
    assert sorted(positions(first)) != sorted(positions(second))
    for s in first + second:
        (y0, y1), (x0, x1) = s["position"]
        np.testing.assert_array_equal(s["images"], image[y0:y1, x0:x1])
    # An epoch is the plans of that epoch, in the epoch order.
    plans = [ds.sampler.epoch_plan(c, epoch=1, stream=k) for k, c in enumerate(ds.collections)]
    expected = sorted((k, *t) for k, p in enumerate(plans) for t in p.toplefts.tolist())
    assert sorted(positions(second)) == expected


def test_worker_splits_and_ranks_give_the_same_union():
    ds, _ = dataset()
    whole = positions(ds.epoch(3))
    for num_workers in (2, 3):
        parts = [positions(ds.epoch(3, worker=w, num_workers=num_workers)) for w in range(num_workers)]
        assert sum(parts, []) == whole
    fresh, _ = dataset()  # another process would plan the same crops
    assert positions(fresh.epoch(3)) == whole
    ranks = [positions(ds.epoch(3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 37


@pytest.mark.parametrize("stop", [0, 1, 20, 37])
def test_resume_equals_uninterrupted(stop):
    ds, _ = dataset()
    it = ds.epoch(2, rank=1, world_size=2)
    head = positions(next(it) for _ in range(stop))
    state = it.state()
    resumed, _ = dataset()
    tail = positions(resumed.epoch(rank=1, world_size=2, state=state))
    assert head + tail == positions(ds.epoch(2, rank=1, world_size=2))
    if stop == 37:  # a finished epoch lets the next one start
        assert positions(resumed.epoch(3, rank=1, world_size=2, state=state)) == positions(
            ds.epoch(3, rank=1, world_size=2))


def test_a_state_of_another_sampler_seed_is_refused():
    ds, _ = dataset()
    state = ds.epoch(0).state()
    other = PatchDataset(ds.collections, RandomPatchSampler(12, 37, min_area=0.5, spatial_axes="YX", seed=10),
                         shuffle=True, seed=1, return_positions=True)
    with pytest.raises(ZarrsampleError, match="state does not match"):
        other.epoch(state=state)


def test_batches_and_map_access_follow_the_epoch():
    ds, _ = dataset()
    single = positions(ds.epoch(4))
    batches = list(ds.epoch(4).batches(8))
    got = [(int(k), *p[:, 0].tolist()) for b in batches for k, p in zip(b["image_index"], b["position"])]
    assert got == single
    ds.set_epoch(4)
    assert ds.current_epoch == 4
    order = ds.order(4)
    assert positions(ds[int(i)] for i in order) == single
    batch = ds.read_batch(order[:5])
    assert [(int(k), *p[:, 0].tolist()) for k, p in zip(batch["image_index"], batch["position"])] == single[:5]


def test_fixed_samplers_are_unchanged_by_epochs():
    ds = PatchDataset(collection((64, 64)), PatchSampler(16, spatial_axes="YX"), return_positions=True)
    assert not ds.per_epoch
    before = positions(ds.epoch(0))
    ds.set_epoch(5)
    assert positions(ds.epoch(5)) == before == positions(ds[i] for i in range(len(ds)))


@pytest.mark.parametrize("balanced", [False, True])
def test_a_pickled_dataset_keeps_its_samplable_sets(balanced):
    import pickle

    labels = labelled()
    coll = collection((128, 128), mask=np.ones((8, 8), bool), labels=labels)
    sampler = (ClassBalancedPatchSampler(16, 30, class_ratios={1: 1, 2: 1}, spatial_axes="YX", seed=0) if balanced
               else RandomPatchSampler(16, 30, min_area=0.5, spatial_axes="YX", seed=0))
    ds = PatchDataset(coll, sampler, return_positions=True)
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives

    def again(*args):
        raise AssertionError("the samplable set was searched again")

    (entry,) = copy.sampler._sets.values()
    assert entry[0]() is copy.collections[0]
    assert not isinstance(entry[1][1], SummedArea)  # the summed-area table stayed behind
    copy.sampler._prepare = again
    assert positions(copy.epoch(5)) == positions(ds.epoch(5))


def test_coverage_without_a_kept_table_reads_the_mask_and_agrees():
    mask = np.random.default_rng(1).random((24, 20)) < 0.6
    coll = collection((96, 80), mask)
    kept = RandomPatchSampler(10, 200, min_area=0.4, spatial_axes="YX", seed=0)
    dropped = RandomPatchSampler(10, 200, min_area=0.4, spatial_axes="YX", seed=0)
    dropped._tables.max_bytes = 0  # no table fits: plans read the mask for their coverage
    a, b = kept.epoch_plan(coll, epoch=2), dropped.epoch_plan(coll, epoch=2)
    assert kept._tables.get(coll) is not None and dropped._tables.get(coll) is None
    np.testing.assert_array_equal(a.toplefts, b.toplefts)
    np.testing.assert_array_equal(a.coverage, b.coverage)
    for t, cover in zip(b.toplefts.tolist()[:20], b.coverage[:20]):
        assert Fraction(cover).limit_denominator(10**6) == exact_coverage(mask, (96, 80), t, [x + 10 for x in t])


def test_a_state_saved_over_another_mask_is_refused():
    ds, _ = dataset()
    state = ds.epoch(0).state()
    other_mask = np.zeros((12, 10), bool)
    other_mask[1:11, 2:9] = True  # same shape, other tissue
    coll = ImageCollection({"images": ds.collections[0]["images"], "masks": open_image(other_mask, axes="YX")},
                           spatial_axes="YX")
    other = PatchDataset([coll, coll], ds.sampler, shuffle=True, seed=1, return_positions=True)
    with pytest.raises(ZarrsampleError, match="state does not match"):
        other.epoch(state=state)


@pytest.mark.parametrize("dims", [2, 3])
@given(data=st.data())
def test_grid_coverage_equals_the_window_by_window_lookups(dims, data):
    shape, mask, patch, _, _ = data.draw(masked_geometry(dims=dims))
    table = summed_area(lambda lo, hi: mask[lo:hi], axis_scales(shape, mask.shape), max_bytes=None, what="m")
    d = len(shape)
    grid = np.array([data.draw(st.integers(1, 4)) for _ in range(d)])
    starts = np.array(data.draw(st.lists(st.tuples(*[st.integers(-2, n) for n in shape]), min_size=1, max_size=6)))
    got = table.grid_coverage(starts, grid, np.array(patch))
    if got is None:
        return  # a mask much finer than the image: the caller looks windows up one by one
    offsets = np.stack(np.unravel_index(np.arange(int(np.prod(grid))), tuple(grid)), axis=-1)
    points = (starts[:, None, :] + offsets[None]).reshape(-1, d)
    expected = table.coverage(points, points + np.array(patch)).reshape(got.shape)
    np.testing.assert_array_equal(got, expected)


def test_grid_coverage_serves_coarse_masks_and_declines_fine_ones():
    coarse = summed_area(lambda lo, hi: np.ones((8, 8), bool)[lo:hi], axis_scales((128, 128), (8, 8)),
                         max_bytes=None, what="m")
    assert coarse.grid_coverage(np.array([[3, 5]]), np.array([4, 4]), np.array([16, 16])).shape == (1, 4, 4)
    fine = summed_area(lambda lo, hi: np.ones((512, 512), bool)[lo:hi], axis_scales((64, 64), (512, 512)),
                       max_bytes=None, what="m")
    assert fine.grid_coverage(np.array([[3, 5]]), np.array([4, 4]), np.array([16, 16])) is None


def test_a_label_image_beyond_max_plan_bytes_is_refused_before_it_is_read():
    reads = []
    labels = np.zeros((64, 64), np.uint8)
    coll = collection((128, 128), labels=labels)
    original = coll.block_reader

    def counting_reader(*args, **kwargs):
        read = original(*args, **kwargs)
        return lambda lo, hi: reads.append((lo, hi)) or read(lo, hi)

    coll.block_reader = counting_reader
    sampler = ClassBalancedPatchSampler(8, 10, class_ratios={0: 1}, spatial_axes="YX", seed=0, max_plan_bytes=1000)
    with pytest.raises(ZarrsampleError, match=r"the label image .* summed-area table would take .*=1000"):
        sampler.plan(coll)
    assert reads == []


def test_the_class_balanced_count_is_that_of_its_plans():
    coll = collection((128, 128), labels=labelled())
    absent = ClassBalancedPatchSampler(16, 100, class_ratios={7: 1}, spatial_axes="YX", seed=0)
    assert absent.count(coll) == len(absent.plan(coll)) == 0
    present = ClassBalancedPatchSampler(16, 100, class_ratios={1: 1}, spatial_axes="YX", seed=0)
    assert present.count(coll) == len(present.plan(coll)) == 100
    assert present.samplable(coll).total == 113 * 113  # no mask: every complete position
    by_area = ClassBalancedPatchSampler(16, 0.5, class_ratios={1: 1}, spatial_axes="YX", seed=0)
    assert by_area.count(coll) == len(by_area.plan(coll)) == round(0.5 * 113 * 113 / 256)
