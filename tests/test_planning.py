"""plan_collections on executors, PatchPlan files, compact plans."""

from __future__ import annotations

import io
import json
import multiprocessing
import pickle
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import zarr
from conftest import chunked_image, collection
from hypothesis import given
from hypothesis import strategies as st

from zarrsample_core import (
    BlueNoisePatchSampler,
    ImageCollection,
    PatchDataset,
    PatchSampler,
    ZarrsampleError,
    open_image,
)
from zarrsample_core.planning._plan import PatchPlan
from zarrsample_core.planning._plan import check_plan_fits
from zarrsample_core.planning._plan_io import PLAN_VERSION, unordered_rows
from zarrsample_core.planning._planning import PlanningError, plan_collections

# -- helpers --------------------------------------------------------------------


def write_slide(root, k, side=256, chunk=64, mask_side=32):
    """Image k: metadata-only uint8 zarr array plus a random blob mask (both on disk)."""
    image = zarr.create_array(store=str(root / f"im{k}.zarr"), shape=(side, side),
                              chunks=(chunk, chunk), dtype="uint8", fill_value=0)
    rng = np.random.default_rng(k)
    yy, xx = np.mgrid[:mask_side, :mask_side]
    mask = np.zeros((mask_side, mask_side), bool)
    for cy, cx, r in rng.uniform([0, 0, 3], [mask_side, mask_side, mask_side / 3], (3, 3)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    zarr.create_array(store=str(root / f"mask{k}.zarr"), data=mask, chunks=(16, 16))
    assert image.nchunks_initialized == 0
    return ImageCollection({
        "images": open_image(str(root / f"im{k}.zarr"), axes="YX"),
        "masks": open_image(str(root / f"mask{k}.zarr"), axes="YX"),
    }, spatial_axes="YX")


def assert_same_plan(a, b):
    assert isinstance(a, PatchPlan) and isinstance(b, PatchPlan)
    for field in ("spatial_axes", "image_shape", "patch_size", "stride", "pad", "tile_shape"):
        assert getattr(a, field) == getattr(b, field), field
    np.testing.assert_array_equal(a.toplefts, b.toplefts)
    np.testing.assert_array_equal(a.chunk_ids, b.chunk_ids)
    np.testing.assert_array_equal(a.coverage, b.coverage)  # exact, not approximate


def samplers():
    return [
        PatchSampler(24, stride=20, min_area=0.3, spatial_axes="YX"),
        BlueNoisePatchSampler(16, seed=7, min_area=0.2, spatial_axes="YX"),
        BlueNoisePatchSampler(16, seed=3, resample_positions=True, spatial_axes="YX"),
    ]


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    root = tmp_path_factory.mktemp("slides")
    return [write_slide(root, k) for k in range(40)]


# -- plan_collections --------------------------------------------------------------


def test_executors_give_identical_plans(slides):
    """In-process, a process pool and a dask cluster agree exactly, in input order."""
    from distributed import Client, LocalCluster

    expected = {i: plan_collections(slides, s, progress=False) for i, s in enumerate(samplers())}
    assert all(len(p) > 0 for plans in expected.values() for p in plans[:5])
    assert len({len(p) for p in expected[0]}) > 5  # the images differ
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        for i, sampler in enumerate(samplers()):
            for a, b in zip(plan_collections(slides, sampler, executor=pool, progress=False), expected[i]):
                assert_same_plan(a, b)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        executor = client.get_executor()
        for i, sampler in enumerate(samplers()):
            plans = plan_collections(slides, sampler, executor=executor, progress=False)
            assert len(plans) == len(slides)
            for a, b in zip(plans, expected[i]):
                assert_same_plan(a, b)


def test_threads_and_a_single_collection(slides):
    sampler = samplers()[1]
    expected = plan_collections(slides[:6], sampler, progress=False)
    with ThreadPoolExecutor(3) as pool:
        for a, b in zip(plan_collections(slides[:6], sampler, executor=pool, progress=False), expected):
            assert_same_plan(a, b)
    (only,) = plan_collections(slides[2], sampler, progress=False)
    assert_same_plan(only, expected[2])


def corrupt_mask(tmp_path, k):
    """Garbage bytes in every stored chunk of image k's mask: decoding fails anywhere."""
    chunks = [p for p in (tmp_path / f"mask{k}.zarr").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    for p in chunks:
        p.write_bytes(b"not a compressed chunk")


@pytest.mark.parametrize("where", ["in-process", "threads", "processes"])
def test_failure_names_the_image_and_keeps_the_others(tmp_path, where):
    colls = [write_slide(tmp_path, k) for k in range(5)]
    sampler = PatchSampler(32, spatial_axes="YX", min_area=0.1)
    good = [sampler.plan(c) for c in colls]
    corrupt_mask(tmp_path, 3)
    pool = {"in-process": None, "threads": ThreadPoolExecutor(2),
            "processes": ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))}[where]
    try:
        with pytest.raises(PlanningError, match=r"failed for 1 of 5 collections:\n  collection 3 \(.*im3\.zarr\)") as info:
            plan_collections(colls, PatchSampler(32, spatial_axes="YX", min_area=0.1), executor=pool,
                             progress=False)
        err = info.value
        assert isinstance(err, ZarrsampleError) and isinstance(err, ValueError)
        assert "im3.zarr" in str(err)
        assert list(err.errors) == [3] and err.plans[3] is None
        for i in (0, 1, 2, 4):
            assert_same_plan(err.plans[i], good[i])
        returned = plan_collections(colls, PatchSampler(32, spatial_axes="YX", min_area=0.1), executor=pool,
                                    progress=False, errors="return")
        assert isinstance(returned[3], Exception) and not isinstance(returned[3], PatchPlan)
        assert any("collection 3" in note and "im3.zarr" in note for note in returned[3].__notes__)
        for i in (0, 1, 2, 4):
            assert_same_plan(returned[i], good[i])
    finally:
        if pool is not None:
            pool.shutdown()


class _Unpicklable:
    """An image-like object holding a lambda (cannot be sent to a process)."""

    name, axes, shape, chunks, origin, backend = "lambda-image", "YX", (8, 8), (8, 8), (0, 0), "numpy"
    dtype = np.dtype("uint8")

    def __init__(self):
        self.read = lambda selection: np.zeros((8, 8), np.uint8)


def test_argument_checks():
    coll = collection((16, 16), (8, 8), "YX")
    sampler = PatchSampler(4, spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match=r"errors must be one of \['raise', 'return'\], got 'ignore'"):
        plan_collections([coll], sampler, errors="ignore")
    with pytest.raises(TypeError, match="errors must be one of"):
        plan_collections([coll], sampler, errors=1)
    with pytest.raises(TypeError, match="executor must be None or a concurrent.futures.Executor.*got object"):
        plan_collections([coll], sampler, executor=object())

    class FakeClient:
        def get_executor(self):
            raise AssertionError

    with pytest.raises(TypeError, match=r"for dask, pass client.get_executor\(\)"):
        plan_collections([coll], sampler, executor=FakeClient())
    with pytest.raises(TypeError, match="collections must be a sequence of ImageCollection, got str"):
        plan_collections("slide.zarr", sampler)
    with pytest.raises(TypeError, match="sampler must have a plan"):
        plan_collections([coll], "grid")
    with pytest.raises(TypeError, match="progress must be a bool"):
        plan_collections([coll], sampler, progress=1)
    bad = ImageCollection({"images": _Unpicklable()}, spatial_axes="YX")
    pool = ProcessPoolExecutor(1)  # never started: the check comes before any submit
    try:
        with pytest.raises(TypeError, match=r"collections\[1\] \(lambda-image\) must pickle"):
            plan_collections([coll, bad], sampler, executor=pool)
    finally:
        pool.shutdown()
    assert len(plan_collections([bad], sampler, progress=False)[0]) == 4  # in-process needs no pickling


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    colls = [collection((16, 16), (8, 8), "YX") for _ in range(3)]
    sampler = PatchSampler(4, spatial_axes="YX")
    plan_collections(colls, sampler)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    fake = _Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    plan_collections(colls, sampler)
    assert "planning:" in fake.getvalue() and "/3 " in fake.getvalue()  # tqdm drew a bar of 3
    fake.truncate(0)
    plan_collections(colls, sampler, progress=False)
    assert fake.getvalue() == ""


# -- compact plans ---------------------------------------------------------------


plan_cases = st.tuples(
    st.integers(20, 90), st.integers(20, 90), st.integers(4, 24), st.integers(4, 24),
    st.integers(3, 12), st.integers(3, 12), st.integers(0, 3), st.integers(0, 2**16),
    st.booleans(), st.sampled_from(["grid", "bluenoise", "none"]),
)


def random_plan(case):
    """A plan from a real sampler on a random image, chunking and mask."""
    h, w, ch, cw, patch, stride, pad, seed, incomplete, kind = case
    rng = np.random.default_rng(seed)
    mask = rng.random((max(1, h // 4), max(1, w // 4))) < 0.6
    coll = collection((h, w), (ch, cw), "YX", mask=mask)
    common = {"pad": pad, "spatial_axes": "YX", "allow_incomplete_patches": incomplete, "min_area": 0.2}
    if kind == "bluenoise":
        sampler = BlueNoisePatchSampler(patch, seed=seed, **common)
    else:
        sampler = PatchSampler(patch, stride=stride, **common)
        if kind == "none":
            coll = collection((h, w), (ch, cw), "YX")
    return coll, sampler.plan(coll)


@given(plan_cases)
def test_chunk_ids_are_derived_and_plans_are_24_bytes_per_patch(case):
    coll, plan = random_plan(case)
    tiles = plan.toplefts // np.asarray(plan.tile_shape)
    naive = [int(np.ravel_multi_index(tuple(t), plan.tile_grid)) for t in tiles.tolist()]
    assert plan.chunk_ids.dtype == np.int64 and plan.chunk_ids.tolist() == naive
    assert (np.diff(plan.chunk_ids) >= 0).all() and len(unordered_rows(plan.toplefts, plan.tile_shape, plan.image_shape)) == 0
    assert plan.nbytes == 24 * len(plan)  # the documented 8 * (D + 1)
    assert not plan.toplefts.flags.writeable and not plan.coverage.flags.writeable
    for cid in range(int(np.prod(plan.tile_grid)) + 1):
        rows = np.flatnonzero(np.asarray(naive, np.int64) == cid)
        got = plan.patches_in_chunk(cid)
        assert (got.start, got.stop) == ((int(rows[0]), int(rows[-1]) + 1) if len(rows) else (got.start, got.start))
        assert got.stop - got.start == len(rows)
    assert [s for s in plan.chunk_slices()] == [
        {"Y": slice(y * plan.tile_shape[0], min((y + 1) * plan.tile_shape[0], plan.image_shape[0])),
         "X": slice(x * plan.tile_shape[1], min((x + 1) * plan.tile_shape[1], plan.image_shape[1]))}
        for y, x in sorted({tuple(t) for t in tiles.tolist()})
    ]
    check_plan_fits(plan, coll)


def test_3d_plans_are_32_bytes_per_patch_and_pickle_read_only():
    coll = collection((12, 40, 40), (4, 16, 16), "ZYX")
    plan = PatchSampler(4, spatial_axes="ZYX").plan(coll)
    assert len(plan) == 3 * 10 * 10 and plan.nbytes == 32 * len(plan)
    again = pickle.loads(pickle.dumps(plan))
    assert_same_plan(again, plan)
    assert not again.toplefts.flags.writeable and not again.coverage.flags.writeable


# -- save / load -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".zarr", ""])
@given(case=plan_cases)
def test_save_load_round_trip(tmp_path_factory, suffix, case):
    coll, plan = random_plan(case)
    path = tmp_path_factory.mktemp("plan") / f"plan{suffix}"
    plan.save(path)
    assert path.is_dir() == (suffix == ".zarr")
    loaded = PatchPlan.load(path, collection=coll)
    assert_same_plan(loaded, plan)
    assert loaded.toplefts.dtype == np.int64 and loaded.coverage.dtype == np.float64
    assert not loaded.toplefts.flags.writeable
    assert_same_plan(PatchPlan.load(str(path)), plan)


def test_npz_has_no_pickled_objects_and_a_version(tmp_path):
    _, plan = random_plan((40, 40, 8, 8, 4, 4, 1, 5, False, "grid"))
    plan.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        assert sorted(data.files) == ["coverage", "header", "toplefts"]
    assert header["version"] == PLAN_VERSION and header["format"] == "zarrsample.PatchPlan"
    assert header["tile_shape"] == list(plan.tile_shape) and header["n_patches"] == len(plan)
    plan.save(tmp_path / "p.zarr")
    assert zarr.open_group(tmp_path / "p.zarr", mode="r").attrs["zarrsample_plan"] == header


def test_refuses_to_overwrite(tmp_path):
    _, plan = random_plan((40, 40, 8, 8, 4, 4, 0, 1, False, "grid"))
    _, other = random_plan((30, 50, 8, 8, 5, 5, 0, 2, False, "grid"))
    for name in ("p.npz", "p.zarr"):
        plan.save(tmp_path / name)
        with pytest.raises(FileExistsError, match=f"{name} already exists; pass overwrite=True"):
            other.save(tmp_path / name)
        assert_same_plan(PatchPlan.load(tmp_path / name), plan)
        other.save(tmp_path / name, overwrite=True)
        assert_same_plan(PatchPlan.load(tmp_path / name), other)
    with pytest.raises(TypeError, match="overwrite must be a bool"):
        plan.save(tmp_path / "q.npz", overwrite="yes")


def rewrite_npz(src, dst, **changes):
    with np.load(src, allow_pickle=False) as data:
        entries = {k: data[k] for k in data.files}
    header = json.loads(str(entries["header"]))
    for key, value in changes.items():
        if key in ("toplefts", "coverage"):
            entries[key] = value
        elif value is None:
            header.pop(key)
        else:
            header[key] = value
    entries["header"] = np.array(json.dumps(header))
    np.savez(dst, **entries)


@pytest.mark.parametrize(("changes", "message"), [
    ({"version": 2}, r"format version 2; this zarrsample reads version 1 only"),
    ({"version": None}, r"format version None"),
    ({"format": "other"}, r"is not a PatchPlan file \(format marker"),
    ({"image_shape": [40]}, r"image_shape must be a list of 2 ints >= 1 .*got \[40\]"),
    ({"stride": [4, 0]}, r"stride must be a list of 2 ints >= 1"),
    ({"pad": [1.5, 1]}, r"pad must be a list of 2 ints >= 0"),
    ({"spatial_axes": "QX"}, r"spatial_axes='QX' has unknown axis letters"),
    ({"n_patches": 3}, r"toplefts must be \(3, 2\) integers"),
    ({"coverage": np.zeros(100, np.int64)}, r"coverage must be \(100,\) floats, got int64"),
    ({"coverage": np.full(100, np.nan)}, r"coverage must be finite and >= 0"),
    ({"toplefts": np.full((100, 2), 40)}, r"toplefts must lie in \[0, image_shape=\(40, 40\)\)"),
    ({"toplefts": np.zeros((100, 2), np.int64)}, r"chunk-tile order, each once; row 1 \(\[0, 0\]\)"),
    ({"toplefts": np.zeros((100, 2))}, r"toplefts must be \(100, 2\) integers, got float64"),
])
def test_load_rejects_bad_files(tmp_path, changes, message):
    _, plan = random_plan((40, 40, 8, 8, 4, 4, 0, 1, False, "none"))
    assert len(plan) == 100
    plan.save(tmp_path / "good.npz")
    rewrite_npz(tmp_path / "good.npz", tmp_path / "bad.npz", **changes)
    with pytest.raises(ZarrsampleError, match=message):
        PatchPlan.load(tmp_path / "bad.npz")


def test_load_rejects_corrupted_and_foreign_files(tmp_path):
    _, plan = random_plan((40, 40, 8, 8, 4, 4, 0, 1, False, "grid"))
    plan.save(tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.npz").write_bytes(b"\x00" * 300)
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", toplefts=np.zeros((1, 2), np.int64))
    for name, message in [("cut.npz", "not a readable PatchPlan file"), ("junk.npz", "not a readable PatchPlan"),
                          ("array.npy", "a single .npy array"), ("other.npz", r"missing entries \['header', 'coverage'\]")]:
        with pytest.raises(ZarrsampleError, match=message):
            PatchPlan.load(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no PatchPlan file at"):
        PatchPlan.load(tmp_path / "missing.npz")
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(ZarrsampleError, match="is not a PatchPlan group: no 'zarrsample_plan'"):
        PatchPlan.load(tmp_path / "empty.zarr")
    plan.save(tmp_path / "p.zarr")
    shutil.rmtree(tmp_path / "p.zarr" / "coverage")
    with pytest.raises(ZarrsampleError, match=r"missing arrays \['coverage'\]"):
        PatchPlan.load(tmp_path / "p.zarr")
    with pytest.raises(TypeError, match="collection must be an ImageCollection or None"):
        PatchPlan.load(tmp_path / "good.npz", collection="slide")


def test_load_checks_the_collection(tmp_path):
    coll = collection((40, 48), (8, 8), "YX")
    plan = PatchSampler(4, stride=6, spatial_axes="YX").plan(coll)
    plan.save(tmp_path / "p.npz")
    assert_same_plan(PatchPlan.load(tmp_path / "p.npz", collection=coll), plan)
    cases = [
        (collection((40, 50), (8, 8), "YX"), r"was made for an image of shape \(40, 48\) along 'YX', but .* has \(40, 50\)"),
        (collection((40, 48), (16, 8), "YX"), r"has chunk tile \(12, 12\) .* storage chunks \(16, 8\), i.e. tile \(18, 12\)"),
        (ImageCollection({"images": chunked_image((3, 48), (3, 8), "CX")}, spatial_axes="YX"),
         r"samples along axes \['Y'\] that the reference image .* \(axes 'CX'\) lacks"),
    ]
    for other, message in cases:
        with pytest.raises(ZarrsampleError, match=r"^the plan in .*p\.npz " + message):
            PatchPlan.load(tmp_path / "p.npz", collection=other)
        with pytest.raises(ZarrsampleError, match=r"^plans\[0\] " + message):
            PatchDataset(other, plans=[plan])


def test_dataset_from_loaded_plans_equals_planning(tmp_path):
    colls = [write_slide(tmp_path, k, side=128) for k in range(3)]
    sampler = BlueNoisePatchSampler(16, seed=4, spatial_axes="YX", min_area=0.1)
    for i, plan in enumerate(plan_collections(colls, sampler, progress=False)):
        plan.save(tmp_path / f"plan{i}.npz")
    loaded = PatchDataset(colls, plans=[PatchPlan.load(tmp_path / f"plan{i}.npz") for i in range(3)],
                          shuffle=True, seed=2, return_positions=True)
    planned = PatchDataset(colls, sampler, shuffle=True, seed=2, return_positions=True)
    assert len(loaded) == len(planned) > 10 and loaded.fingerprint == planned.fingerprint
    np.testing.assert_array_equal(loaded.order(1), planned.order(1))
    a, b = loaded.epoch(1, rank=1, world_size=2), planned.epoch(1, rank=1, world_size=2)
    for _ in range(5):
        np.testing.assert_array_equal(next(a)["position"], next(b)["position"])


def test_windows_are_the_positions_the_dataset_returns():
    image = open_image(np.arange(3 * 30 * 26, dtype=np.uint16).reshape(3, 30, 26), axes="CYX")
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    sampler = PatchSampler(8, stride=6, pad=2, allow_incomplete_patches=True, spatial_axes="YX")
    ds = PatchDataset(coll, sampler, return_positions=True)
    windows = ds.plans[0].windows()
    assert windows.shape == (len(ds), 2, 2) and windows.dtype == np.int64
    np.testing.assert_array_equal(windows, np.stack([ds[i]["position"] for i in range(len(ds))]))
    np.testing.assert_array_equal(ds.plans[0].windows(slice(3, 5)), windows[3:5])
