"""PatchDataset: exact pixels, ordering, shards, resumable state, cache reads."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
import zarr

from conftest import serve_directory
from zarrsample_core import (
    ImageCollection,
    PatchDataset,
    PatchSampler,
    ZarrsampleError,
    open_image,
)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A (3, 96, 80) image (chunks 32) and labels at half scale, v2 and v3."""
    root = tmp_path_factory.mktemp("slide")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, (3, 96, 80), dtype=np.uint16)
    labels = rng.integers(0, 7, (48, 40), dtype=np.uint8)
    mask = np.zeros((6, 5), bool)
    mask[1:5, 1:4] = True
    for fmt in (2, 3):
        group = zarr.open_group(root / f"v{fmt}.zarr", mode="w", zarr_format=fmt)
        group.create_array("image", data=image, chunks=(3, 32, 32))
        group.create_array("labels", data=labels, chunks=(16, 16))
    return {"root": root, "image": image, "labels": labels, "mask": mask}


def make_collection(slide, fmt=3, backend="zarr", mask=True, root=None):
    base = f"{root or slide['root']}/v{fmt}.zarr"
    modalities = {
        "images": open_image(base, data_group="image", axes="CYX", backend=backend),
        "labels": open_image(base, data_group="labels", axes="YX", backend=backend),
    }
    if mask:
        modalities["masks"] = open_image(slide["mask"], axes="YX")
    return ImageCollection(modalities, spatial_axes="YX")


def expected_window(array, start, stop, scale=1):
    """numpy slicing of the in-memory source, constant-padded with 0."""
    start = np.asarray(start) // scale
    size = -(-(np.asarray(stop) - np.asarray(start) * scale) // scale)
    padded = np.pad(array, [(0, 0)] * (array.ndim - 2) + [(64, 64), (64, 64)])
    return padded[(...,) + tuple(slice(a + 64, a + 64 + s) for a, s in zip(start, size))]


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_every_patch_equals_numpy_slicing(slide, fmt, backend):
    sampler = PatchSampler(16, stride=12, pad=4, min_area=0.25, spatial_axes="YX", allow_incomplete_patches=True)
    ds = PatchDataset(make_collection(slide, fmt, backend), sampler, return_positions=True, shuffle=True, seed=3)
    assert len(ds) == len(sampler.plan(ds.collections[0])) > 10
    seen = 0
    for sample in ds.epoch(0):
        start, stop = sample["position"][:, 0], sample["position"][:, 1]
        assert sample["position"].dtype == np.int64 and sample["image_index"] == 0
        assert sample.keys() == {"images", "labels", "position", "image_index"}
        np.testing.assert_array_equal(sample["images"], expected_window(slide["image"], start, stop))
        assert sample["images"].dtype == np.uint16 and sample["images"].shape == (3, 24, 24)
        np.testing.assert_array_equal(sample["labels"], expected_window(slide["labels"], start, stop, 2))
        seen += 1
    assert seen == len(ds)


def test_random_access_follows_the_plan(slide):
    coll = make_collection(slide)
    sampler = PatchSampler(16, spatial_axes="YX")
    ds = PatchDataset(coll, sampler, return_positions=True)
    plan = sampler.plan(coll)
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i]["position"][:, 0], plan.toplefts[i])
    np.testing.assert_array_equal(ds[-1]["position"][:, 0], plan.toplefts[-1])
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    with pytest.raises(TypeError, match="index must be an int"):
        ds["0"]


def positions(ds, **kwargs):
    return [tuple(s["position"][:, 0]) for s in ds.epoch(**kwargs)]


def test_order_is_seeded_and_changes_with_the_epoch(slide):
    coll = make_collection(slide, mask=False)
    kw = dict(sampler=PatchSampler(8, spatial_axes="YX"), return_positions=True, shuffle=True)
    a = PatchDataset(coll, seed=5, **kw)
    b = PatchDataset(coll, seed=5, **kw)
    assert positions(a, epoch=1) == positions(b, epoch=1)
    assert positions(a, epoch=1) != positions(a, epoch=2)
    assert positions(a, epoch=1) != positions(PatchDataset(coll, seed=6, **kw), epoch=1)
    plain = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), return_positions=True)
    assert positions(plain) == [tuple(t) for t in plain.plans[0].toplefts.tolist()]


@pytest.mark.parametrize("drop_remainder", [False, True])
@pytest.mark.parametrize("world_size, num_workers", [(1, 1), (2, 1), (2, 2), (3, 2)])
def test_shards_are_disjoint_equal_and_cover_the_epoch(slide, world_size, num_workers, drop_remainder):
    coll = make_collection(slide)
    ds = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), return_positions=True, shuffle=True, seed=1)
    full = positions(ds, epoch=4)
    per_rank, union = [], collections.Counter()
    for rank in range(world_size):
        count = 0
        for worker in range(num_workers):
            got = positions(ds, epoch=4, rank=rank, world_size=world_size, worker=worker,
                            num_workers=num_workers, drop_remainder=drop_remainder)
            union.update(got)
            count += len(got)
        per_rank.append(count)
    assert len(set(per_rank)) == 1  # DDP never waits on a shorter rank
    n = len(full)
    if drop_remainder:
        assert per_rank[0] == n // world_size
        assert union == collections.Counter(full[: per_rank[0] * world_size])
    else:
        assert per_rank[0] == -(-n // world_size)
        extra = per_rank[0] * world_size - n
        assert union == collections.Counter(full + full[:extra])


def test_sequential_and_chunk_local_epochs_read_each_chunk_once(slide):
    coll = make_collection(slide, mask=False)
    for kwargs in ({}, {"shuffle": True, "draw_same_chunk": True}, {"shuffle": True, "shuffle_window": 3}):
        ds = PatchDataset(coll, PatchSampler(16, spatial_axes="YX"), cache_bytes=4 * 3 * 32 * 32 * 2 + 40 * 40,
                          prefetch=0, **kwargs)
        assert sum(1 for _ in ds.epoch(0)) == len(ds) == 30
        stats = ds.stats()
        # 3 x 3 image chunks of 32 px, 3 x 3 labels chunks of 16 px.
        assert stats["chunk_reads"] == 9 + 9, kwargs


def test_resume_equals_the_uninterrupted_run(slide):
    coll = make_collection(slide)
    ds = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), return_positions=True, shuffle=True, seed=9)
    kw = dict(rank=1, world_size=2, worker=1, num_workers=2)
    whole = positions(ds, epoch=2, **kw)
    for stop in (0, 1, len(whole) // 2, len(whole)):
        it = ds.epoch(2, **kw)
        head = [tuple(next(it)["position"][:, 0]) for _ in range(stop)]
        state = it.state()
        assert set(state) >= {"version", "epoch", "position", "fingerprint"}
        assert all(type(v) is int for v in state.values())
        tail = [tuple(s["position"][:, 0]) for s in ds.epoch(state=pickle.loads(pickle.dumps(state)), **kw)]
        assert head + tail == whole


def test_a_state_from_another_configuration_is_refused(slide):
    coll = make_collection(slide)
    ds = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), shuffle=True)
    state = ds.epoch(0, world_size=2).state()
    with pytest.raises(ZarrsampleError, match="world_size saved 2, now 4"):
        ds.epoch(state=state, world_size=4)
    other = PatchDataset(coll, PatchSampler(16, spatial_axes="YX"), shuffle=True)
    with pytest.raises(ZarrsampleError, match="fingerprint saved"):
        other.epoch(state=state, world_size=2)
    with pytest.raises(ZarrsampleError, match=r"epoch=3 but the state was saved inside epoch 0 \(0 of \d+"):
        ds.epoch(3, state=state, world_size=2)


def test_a_finished_state_starts_the_next_epoch(slide):
    ds = PatchDataset(make_collection(slide), PatchSampler(8, spatial_axes="YX"), shuffle=True,
                      return_positions=True)
    it = ds.epoch(2)
    list(it)
    assert len(it) == ds.epoch_length() == len(ds)
    assert positions(ds, epoch=3, state=it.state()) == positions(ds, epoch=3)


def test_whole_images_transform_and_output_axes(slide):
    ds = PatchDataset(
        [make_collection(slide, 2, mask=False), make_collection(slide, 3, mask=False)],
        transform=lambda s: {**s, "sum": int(s["labels"].sum())},
        output_axes={"images": "YXC", "labels": "CYX"},
    )
    assert len(ds) == 2
    sample = ds[1]
    assert sample["images"].shape == (96, 80, 3)
    np.testing.assert_array_equal(sample["images"], np.moveaxis(slide["image"], 0, -1))
    assert sample["labels"].shape == (1, 48, 40)
    assert sample["sum"] == int(slide["labels"].sum())


@pytest.mark.parametrize("backend", ["zarr", "tensorstore"])
def test_http_store_reads_the_same_patches(slide, monkeypatch, backend):
    sampler = PatchSampler(16, spatial_axes="YX")
    local = PatchDataset(make_collection(slide), sampler)
    with serve_directory(slide["root"], monkeypatch) as url:
        remote = PatchDataset(make_collection(slide, backend=backend, root=url), sampler)
        assert len(remote) == len(local)
        for a, b in zip(remote.epoch(0), local.epoch(0)):
            assert a["images"].tobytes() == b["images"].tobytes()
            assert a["labels"].tobytes() == b["labels"].tobytes()


def test_nothing_is_written_to_the_source(slide):
    before = {p: p.stat().st_mtime_ns for p in slide["root"].rglob("*")}
    ds = PatchDataset(make_collection(slide), PatchSampler(16, spatial_axes="YX"), shuffle=True)
    list(ds.epoch(0))
    assert {p: p.stat().st_mtime_ns for p in slide["root"].rglob("*")} == before


def test_bad_arguments(slide):
    coll = make_collection(slide)
    with pytest.raises(ValueError, match="collections is empty: a PatchDataset needs at least one ImageCollection"):
        PatchDataset([])
    with pytest.raises(TypeError, match="collections must be"):
        PatchDataset(["a"])
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        PatchDataset(coll, shuffle="yes")
    with pytest.raises(ZarrsampleError, match="shuffle_window must be >= 1"):
        PatchDataset(coll, shuffle_window=0)
    with pytest.raises(ZarrsampleError, match="padding_mode"):
        PatchDataset(coll, padding_mode="mirror")
    with pytest.raises(ZarrsampleError, match="plans must hold one PatchPlan per collection"):
        PatchDataset(coll, plans=[])
    ds = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"))
    with pytest.raises(ZarrsampleError, match="rank must be"):
        ds.epoch(0, rank=-1)
    with pytest.raises(ZarrsampleError, match="worker"):
        list(ds.epoch(0, worker=2, num_workers=2))


def test_a_dataset_pickles_with_its_sampler_and_reads_the_same(slide):
    sampler = PatchSampler(16, spatial_axes="YX")
    ds = PatchDataset(make_collection(slide), sampler, shuffle=True)
    first = [s["images"].tobytes() for s in ds.epoch(1)]
    copy = pickle.loads(pickle.dumps(ds))
    assert [s["images"].tobytes() for s in copy.epoch(1)] == first
    assert copy.fingerprint == ds.fingerprint
    assert pickle.loads(pickle.dumps(sampler)).plan(ds.collections[0]).toplefts.tolist() == (
        ds.plans[0].toplefts.tolist()
    )


def test_an_empty_dataset_is_a_value_error_as_in_zarrdataset():
    """zarrdataset raises ValueError when nothing can be sampled; so does PatchDataset."""
    image = open_image(np.zeros((64, 64), np.uint8), axes="YX")
    empty = ImageCollection({"images": image, "masks": open_image(np.zeros((4, 4), bool), axes="YX")},
                            spatial_axes="YX")
    with pytest.raises(ValueError, match=r"the dataset is empty: no patch was planned in any of its 2 image\(s\)"):
        PatchDataset([empty, empty], PatchSampler(16, spatial_axes="YX"))
    full = ImageCollection({"images": image}, spatial_axes="YX")
    assert len(PatchDataset([empty, full], PatchSampler(16, spatial_axes="YX"))) == 16
