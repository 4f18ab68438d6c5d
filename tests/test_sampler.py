"""PatchSampler: the plan against a naive per-patch reference, and the seed API."""

from __future__ import annotations

from fractions import Fraction
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import collection
from reference import exact_coverage, reference_plan
from zarrsample_core import PatchSampler, ZarrsampleError, open_image

AXES = {1: "X", 2: "YX", 3: "ZYX"}


@st.composite
def grid_cases(draw):
    d = draw(st.sampled_from([1, 2, 2, 3]))
    top = {1: 60, 2: 24, 3: 10}[d]
    shape = tuple(draw(st.integers(1, top)) for _ in range(d))
    chunks = tuple(draw(st.integers(1, top)) for _ in range(d))
    patch = tuple(draw(st.integers(1, 9)) for _ in range(d))
    stride = tuple(draw(st.integers(1 if d == 1 else 2, 9)) for _ in range(d))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(d))
    min_area = draw(st.sampled_from([0, 0.25, 0.5, 0.999, 1, 2, 7.5, 20]))
    incomplete = draw(st.booleans())
    mask = None
    if draw(st.booleans()):
        # Coarser, finer and non-integer scales: any mask extent up to 8.
        mshape = tuple(draw(st.integers(1, 8)) for _ in range(d))
        bits = draw(st.lists(st.booleans(), min_size=int(np.prod(mshape)), max_size=int(np.prod(mshape))))
        mask = np.array(bits, dtype=bool).reshape(mshape)
    return shape, chunks, patch, stride, pad, min_area, incomplete, mask


def effective(shape, values, one):
    return tuple(one if n == 1 else v for n, v in zip(shape, values))


@pytest.mark.filterwarnings("ignore::zarrsample_core.ZarrsampleWarning")  # any mask shape, on purpose
@given(grid_cases())
def test_plan_matches_naive_reference(case):
    shape, chunks, patch, stride, pad, min_area, incomplete, mask = case
    axes = AXES[len(shape)]
    coll = collection(shape, chunks, axes, mask)
    sampler = PatchSampler(
        patch, stride=stride, pad=pad, min_area=min_area, spatial_axes=axes,
        allow_incomplete_patches=incomplete,
    )
    plan = sampler.plan(coll)
    expected = reference_plan(
        shape, chunks, mask, effective(shape, patch, 1), effective(shape, stride, 1), min_area, incomplete
    )
    assert [tuple(t) for t in plan.toplefts.tolist()] == [r[0] for r in expected]
    assert plan.chunk_ids.tolist() == [r[1] for r in expected]
    assert plan.coverage.tolist() == [float(r[2]) for r in expected]
    assert plan.toplefts.dtype == np.int64 and plan.toplefts.shape == (len(expected), len(shape))

    # One-row strips, one-tile-row blocks and exact Python-int arithmetic give the same plan.
    with mock.patch("zarrsample_core.planning._coverage.STRIP_ELEMENTS", 1), \
            mock.patch("zarrsample_core.planning._sampler.BLOCK_POSITIONS", 1):
        strips = PatchSampler(
            patch, stride=stride, pad=pad, min_area=min_area, spatial_axes=axes,
            allow_incomplete_patches=incomplete,
        ).plan(coll)
    with mock.patch("zarrsample_core.planning._coverage._numerator_dtype", lambda scales: object):
        exact = sampler._plan(coll, sampler.geometry(coll))
    for other in (strips, exact):
        np.testing.assert_array_equal(other.toplefts, plan.toplefts)
        np.testing.assert_array_equal(other.coverage, plan.coverage)

    # The seed-compatible views: chunks partition the plan, each patch once.
    chunks_seen = sampler.compute_chunks(coll)
    patches = [p for c in chunks_seen for p in sampler.compute_patches(coll, c)]
    eff_pad = effective(shape, pad, 0)
    want = [
        {ax: slice(t - q, t + p + q) for ax, t, p, q in zip(axes, r[0], effective(shape, patch, 1), eff_pad)}
        for r in expected
    ]
    assert patches == want
    for c in chunks_seen:
        for ax, n in zip(axes, shape):
            assert 0 <= c[ax].start < c[ax].stop <= n


def one_collection(shape=(64, 64), chunks=(32, 32), mask=None, axes="YX"):
    return collection(shape, chunks, axes, mask)


def test_overlapping_patches_are_measured_over_the_whole_window():
    # stride < patch: a patch half covered by the mask is samplable at 0.5,
    # wherever its stride cell lies (the reference library measures the cell).
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True  # left half of a 64 x 64 image
    plan = PatchSampler(16, stride=8, min_area=0.5, spatial_axes="YX").plan(one_collection(mask=mask))
    xs = sorted(set(plan.toplefts[:, 1].tolist()))
    assert xs == [0, 8, 16, 24]  # [24, 40) is half inside the mask: kept at 0.5
    assert set(plan.coverage[plan.toplefts[:, 1] == 24].tolist()) == {128.0}
    assert len(plan) == 7 * 4  # 7 rows of overlapping patches


def test_coarse_mask_covers_exact_footprints():
    # 1/16 scale: one mask pixel covers 16 x 16 image pixels.
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    plan = PatchSampler(8, min_area=1, spatial_axes="YX").plan(one_collection(mask=mask))
    assert sorted(map(tuple, plan.toplefts.tolist())) == [(16, 32), (16, 40), (24, 32), (24, 40)]
    assert set(plan.coverage.tolist()) == {64.0}


def test_non_integer_scale_is_exact():
    # image 10 px, mask 3 px: each mask pixel covers 10/3 image pixels.
    mask = np.array([True, False, True])
    plan = PatchSampler(2, min_area=0, spatial_axes="X").plan(one_collection((10,), (10,), mask, "X"))
    want = [exact_coverage(mask, (10,), (t,), (t + 2,)) for t in range(0, 10, 2)]
    assert want == [2, Fraction(4, 3), 0, Fraction(4, 3), 2]
    assert plan.coverage.tolist() == [float(w) for w in want]


def test_finer_mask_counts_partial_pixels():
    mask = np.zeros((8, 8), bool)  # 2x finer than a 4 x 4 image
    mask[0, 0] = True
    plan = PatchSampler(2, min_area=0.25 / 4, spatial_axes="YX").plan(one_collection((4, 4), (4, 4), mask))
    assert plan.toplefts.tolist() == [[0, 0]]
    assert plan.coverage.tolist() == [0.25]


def test_without_mask_every_position_is_samplable():
    plan = PatchSampler(16, min_area=0.99, spatial_axes="YX").plan(one_collection((50, 70), (32, 32)))
    assert len(plan) == 3 * 4


def test_incomplete_patches_cover_every_pixel():
    shape = (50, 70)
    plan = PatchSampler(16, allow_incomplete_patches=True, spatial_axes="YX").plan(one_collection(shape, (20, 30)))
    hit = np.zeros(shape, bool)
    for y, x in plan.toplefts.tolist():
        hit[y : y + 16, x : x + 16] = True
    assert hit.all()
    # A border patch's coverage is its part inside the image.
    assert plan.coverage.min() == (50 - 48) * (70 - 64)


def test_fraction_min_area_uses_the_full_patch_area_for_border_patches():
    mask = np.ones((50, 70), bool)
    sampler = PatchSampler(16, min_area=0.5, allow_incomplete_patches=True, spatial_axes="YX")
    plan = sampler.plan(one_collection((50, 70), (32, 32), mask))
    # Row 48 keeps 2 of 16 rows: 2*16 < 128 px, never samplable at 0.5.
    assert plan.toplefts[:, 0].max() == 32
    assert (plan.coverage >= 128).all()


def test_image_not_a_multiple_of_chunk_or_patch_keeps_border_patches():
    plan = PatchSampler(10, spatial_axes="YX").plan(one_collection((95, 33), (40, 7)))
    assert len(plan) == 9 * 3
    assert plan.toplefts[:, 0].max() == 80 and plan.toplefts[:, 1].max() == 20


def test_default_spatial_axes_work_on_a_yx_image():
    coll = collection((3, 40, 40), (3, 16, 16), "CYX", spatial_axes="YX")
    sampler = PatchSampler(8)  # spatial_axes="ZYX", no Z in the image
    plan = sampler.plan(coll)
    assert plan.patch_size == (1, 8, 8)
    assert len(plan) == 25
    patch = sampler.compute_patches(coll, sampler.compute_chunks(coll)[0])[0]
    assert patch == {"Z": slice(0, 1), "Y": slice(0, 8), "X": slice(0, 8)}


def test_chunks_round_up_to_the_stride_and_skip_empty_tiles():
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True
    coll = one_collection((64, 64), (20, 20), mask)
    sampler = PatchSampler(8, min_area=1, spatial_axes="YX")
    assert sampler.compute_chunks(coll) == [{"Y": slice(48, 64), "X": slice(48, 64)}]


def test_compute_patches_accepts_any_region():
    coll = one_collection((64, 64), (32, 32))
    sampler = PatchSampler(16, spatial_axes="YX")
    everything = sampler.compute_patches(coll, {"Y": slice(None), "X": slice(None)})
    assert len(everything) == 16
    assert len(sampler.compute_patches(coll, {"Y": slice(10, 40)})) == 8


def test_repr_names_class_and_patch_size():
    text = repr(PatchSampler(32, spatial_axes="YX"))
    assert text.startswith("PatchSampler(") and "'Y': 32" in text


def test_properties_are_read_only_copies():
    sampler = PatchSampler((4, 8), stride={"Y": 2}, pad=1, spatial_axes="YX")
    assert sampler.patch_size == {"Y": 4, "X": 8}
    assert sampler.stride == {"Y": 2, "X": 1}
    assert sampler.pad == {"Y": 1, "X": 1}
    sampler.patch_size["Y"] = 99
    assert sampler.patch_size["Y"] == 4
    with pytest.raises(AttributeError):
        sampler.patch_size = 3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"patch_size": (8, 8, 8)}, ZarrsampleError, r"patch_size=\(8, 8, 8\) has 3 values .* 'YX'"),
        ({"patch_size": "8"}, TypeError, "patch_size must be an int, a sequence"),
        ({"patch_size": 0}, ZarrsampleError, r"patch_size\['Y'\] must be >= 1, got 0"),
        ({"patch_size": 8.5}, TypeError, "patch_size must be"),
        ({"patch_size": {"Q": 3}}, ZarrsampleError, "names axes"),
        ({"patch_size": 8, "stride": [1]}, ZarrsampleError, r"stride=\[1\] has 1 values"),
        ({"patch_size": 8, "stride": 0}, ZarrsampleError, r"stride\['Y'\] must be >= 1"),
        ({"patch_size": 8, "pad": -1}, ZarrsampleError, r"pad\['Y'\] must be >= 0"),
        ({"patch_size": 8, "min_area": -0.5}, ZarrsampleError, "min_area must be a finite number >= 0"),
        ({"patch_size": 8, "min_area": float("nan")}, ZarrsampleError, "min_area"),
        ({"patch_size": 8, "min_area": True}, TypeError, "min_area must be a number"),
        ({"patch_size": 8, "spatial_axes": "YQ"}, ZarrsampleError, "unknown axis letters"),
        ({"patch_size": 8, "spatial_axes": "YY"}, ZarrsampleError, "repeats"),
        ({"patch_size": 8, "allow_incomplete_patches": 1}, TypeError, "allow_incomplete_patches"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(kwargs, error, match):
    kwargs.setdefault("spatial_axes", "YX")
    with pytest.raises(error, match=match):
        PatchSampler(**kwargs)


def test_bad_collection_and_chunk_arguments():
    sampler = PatchSampler(8, spatial_axes="YX")
    with pytest.raises(TypeError, match="ImageCollection"):
        sampler.plan({"images": None})
    with pytest.raises(TypeError, match="chunk_tlbr"):
        sampler.compute_patches(one_collection(), [slice(0, 8)])


@pytest.mark.parametrize("chunks", [(64, 64), (2048, 2048)])  # many tiles across, one tile
def test_planning_memory_is_the_plan_plus_a_bounded_working_set(chunks):
    import tracemalloc

    # 1024 x 1024 grid positions, all kept: a 24 MiB plan.
    rng = np.random.default_rng(0)
    coll = one_collection((2048, 2048), chunks, rng.random((128, 128)) < 0.5)
    sampler = PatchSampler(2, min_area=0, spatial_axes="YX", max_plan_bytes=None)
    with mock.patch("zarrsample_core.planning._coverage.STRIP_ELEMENTS", 1 << 16), \
            mock.patch("zarrsample_core.planning._sampler.BLOCK_POSITIONS", 1 << 14):
        tracemalloc.start()
        try:
            plan = sampler.plan(coll)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(plan) == 1024 * 1024 and plan.nbytes == 24 * 2**20
    # The plan, compact pass-1 pieces (6 bytes per patch) and small blocks:
    # no grid-sized int64 arrays, no sort permutation.
    assert peak < 1.4 * plan.nbytes, peak / plan.nbytes
    # Chunk-major order: a 64-pixel tile holds 32 positions per row.
    assert plan.toplefts[32].tolist() == ([2, 0] if chunks[0] == 64 else [0, 64])


def test_plan_arrays_hold_only_the_patches_found():
    # Planning writes into arrays sized for every grid position, then cuts them
    # in place: the plan must not keep the grid-sized buffers alive.
    mask = np.zeros((16, 16), bool)
    mask[3, 5] = mask[12, 0] = True
    plan = PatchSampler(4, min_area=1, spatial_axes="YX").plan(one_collection((256, 256), (64, 64), mask))
    assert len(plan) == 2 * 16
    for array in (plan.toplefts, plan.coverage):
        owner = array if array.base is None else array.base
        assert owner.nbytes == array.nbytes
    assert plan.toplefts[0].tolist() == [48, 80] and plan.toplefts[-1].tolist() == [204, 12]


@pytest.mark.parametrize("kwargs", [{"patch_size": "16"}, {"patch_size": 16, "stride": "8"},
                                    {"patch_size": 16, "pad": 1.5}, {"patch_size": [16, "a"]}])
def test_wrong_types_are_catchable_as_zarrdataset_raises_them(kwargs):
    """zarrdataset raises ValueError for a string patch_size, zarrsample TypeError: both catch it."""
    for kind in (TypeError, ValueError):
        with pytest.raises(kind, match=r"must be|an int"):
            PatchSampler(spatial_axes="YX", **kwargs)


def test_a_bare_slice_roi_is_the_whole_image():
    image = open_image(np.arange(20).reshape(4, 5), axes="YX", roi=slice(None))
    assert image.shape == (4, 5) and image.origin == (0, 0)
