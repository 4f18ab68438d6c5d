"""zarrsample_jax: Grain MapDataset over the core, Grain checkpoints, jax.Array batches."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

grain = pytest.importorskip("grain")
jax = pytest.importorskip("jax")

from contract import IterationContract, make_dataset, sample_key  # noqa: E402

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, ZarrsampleError, open_image  # noqa: E402
from zarrsample_jax import EpochMapDataset, GrainSource, as_grain_dataset, to_jax  # noqa: E402


def iterate(ds, *, workers=0, **kwargs):
    """An iterator over one epoch (``epoch``) of ``as_grain_dataset(ds, **kwargs)``."""
    pipeline = as_grain_dataset(ds, num_epochs=1, **kwargs).to_iter_dataset()
    if workers:
        pipeline = pipeline.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(pipeline)


def drain(it) -> list:
    try:
        return [sample_key(s) for s in it]
    finally:
        it.close()


class TestGrainContract(IterationContract):
    """``num_workers`` is the ``mp_prefetch`` worker count (1 runs in-process, no workers)."""

    def rank_keys(self, ds, *, epoch, rank, world_size, num_workers):
        workers = 0 if num_workers == 1 else num_workers
        return drain(iterate(ds, epoch=epoch, shard_index=rank, shard_count=world_size, workers=workers))

    def resumed_keys(self, ds, *, epoch, stop):
        it = iterate(ds, epoch=epoch)
        head = [sample_key(next(it)) for _ in range(stop)]
        state = it.get_state()
        it.close()
        fresh = iterate(ds, epoch=epoch)
        fresh.set_state(state)
        return head, drain(fresh)

    def restore_foreign_state(self, ds, other):
        it = iterate(ds)
        next(it)
        state = it.get_state()
        it.close()
        iterate(other).set_state(state)


def test_mp_prefetch_resumes_exactly_at_several_steps():
    ds = make_dataset()
    stops, states, whole = (3, 20), {}, []
    it = iterate(ds, epoch=1, workers=2)  # each pipeline spawns two processes: few pipelines
    for sample in it:
        whole.append(sample_key(sample))
        if len(whole) in stops:
            states[len(whole)] = it.get_state()
    it.close()
    assert whole == [sample_key(s) for s in ds.epoch(1)]
    for stop, state in states.items():
        fresh = iterate(ds, epoch=1, workers=2)
        fresh.set_state(state)
        assert whole[:stop] + drain(fresh) == whole, stop


def test_batches_are_jax_arrays_and_resume_after_batching_in_the_main_process():
    ds = make_dataset()

    def batches():
        pipeline = as_grain_dataset(ds, num_epochs=2).to_iter_dataset()
        pipeline = pipeline.mp_prefetch(grain.MultiprocessingOptions(num_workers=2))
        return iter(pipeline.batch(4).map(to_jax))

    it = batches()
    first = next(it)
    assert isinstance(first["images"], jax.Array)
    assert (first["images"].shape, first["images"].dtype) == ((4, 3, 8, 8), np.uint8)
    assert (first["labels"].shape, first["labels"].dtype) == ((4, 4, 4), np.uint8)
    assert first["position"].shape == (4, 2, 2) and first["image_index"].shape == (4,)
    expected = [s for _, s in zip(range(4), ds.epoch(0))]
    np.testing.assert_array_equal(np.asarray(first["images"]), np.stack([s["images"] for s in expected]))
    rest = [next(it) for _ in range(5)]
    state = it.get_state()
    after = [np.asarray(next(it)["position"]) for _ in range(3)]
    it.close()
    fresh = batches()
    fresh.set_state(state)
    resumed = [np.asarray(next(fresh)["position"]) for _ in range(3)]
    fresh.close()
    assert len(rest) == 5
    for a, b in zip(after, resumed):
        np.testing.assert_array_equal(a, b)


def test_epochs_follow_each_other_and_run_forever_by_default():
    ds = make_dataset()
    mds = as_grain_dataset(ds, epoch=2, num_epochs=3, shard_index=1, shard_count=2, drop_remainder=True)
    m = mds.epoch_length
    assert m == len(ds) // 2 and len(mds) == 3 * m
    for e in range(3):
        expected = [sample_key(s) for s in ds.epoch(2 + e, rank=1, world_size=2, drop_remainder=True)]
        assert [sample_key(mds[e * m + j]) for j in range(m)] == expected
    forever = as_grain_dataset(ds, shard_index=0, shard_count=1)
    assert len(forever) == sys.maxsize
    n = len(ds)
    assert [sample_key(forever[7 * n + j]) for j in range(n)] == [sample_key(s) for s in ds.epoch(7)]
    assert isinstance(forever, grain.MapDataset) and isinstance(forever, EpochMapDataset)


def test_seed_and_shuffle_default_to_the_datasets_and_can_be_overridden():
    ds = make_dataset(seed=7)
    n = len(ds)
    keys = lambda mds: [sample_key(mds[j]) for j in range(n)]  # noqa: E731
    assert keys(as_grain_dataset(ds)) == [sample_key(s) for s in ds.epoch(0)]
    assert keys(as_grain_dataset(ds, seed=3)) == [sample_key(s) for s in make_dataset(seed=3).epoch(0)]
    assert keys(as_grain_dataset(ds, shuffle=False)) == [sample_key(ds[i]) for i in range(n)]


def test_shard_defaults_come_from_jax():
    ds = make_dataset()
    assert (jax.process_index(), jax.process_count()) == (0, 1)
    assert as_grain_dataset(ds).epoch_length == len(ds)


def test_element_spec_comes_from_the_core_without_reads():
    ds = make_dataset()
    spec = grain.experimental.get_element_spec(as_grain_dataset(ds).batch(4, drop_remainder=True))
    assert {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in spec.items()} == {
        "images": ((4, 3, 8, 8), np.uint8), "labels": ((4, 4, 4), np.uint8),
        "position": ((4, 2, 2), np.int64), "image_index": ((4,), np.int64),
    }
    assert ds.stats()["chunk_reads"] == 0


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_dtypes_survive_to_jax(dtype):
    data = (np.arange(2 * 12 * 10).reshape(2, 12, 10) % 9).astype(dtype)
    ds = PatchDataset(ImageCollection({"images": open_image(data, axes="CYX")}, spatial_axes="YX"),
                      PatchSampler(4, spatial_axes="YX"))
    batch = next(iter(as_grain_dataset(ds).to_iter_dataset().batch(3).map(to_jax)))
    assert batch["images"].dtype == np.dtype(dtype) and batch["images"].shape == (3, 2, 4, 4)
    sharded = to_jax({"x": np.ones((2, 3), dtype)}, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    assert sharded["x"].dtype == np.dtype(dtype) and sharded["x"].shape == (2, 3)


def test_grain_source_is_random_access_picklable_and_thread_safe():
    ds = make_dataset()
    source = GrainSource(ds)
    assert isinstance(source, grain.sources.RandomAccessDataSource)
    assert len(source) == len(ds)
    np.testing.assert_array_equal(source[5]["images"], ds[5]["images"])
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy[np.int64(5)]["images"], ds[5]["images"])
    assert repr(copy) == repr(source) and "fingerprint=" in repr(source)
    assert repr(GrainSource(make_dataset(patch=4))) != repr(source)
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda i: source[i]["images"], range(len(ds))))
    for i, images in enumerate(parallel):
        np.testing.assert_array_equal(images, ds[i]["images"])


def test_a_plain_grain_state_is_refused():
    it = iterate(make_dataset())
    with pytest.raises(ZarrsampleError, match=r"state must be the get_state\(\) .* got \['next_index'\]"):
        it.set_state({"next_index": 3})


def test_bad_arguments_are_named():
    ds = make_dataset()
    with pytest.raises(ZarrsampleError, match="rank must be < world_size=2, got 2"):
        as_grain_dataset(ds, shard_index=2, shard_count=2)
    with pytest.raises(ZarrsampleError, match="num_epochs must be >= 1, got 0"):
        as_grain_dataset(ds, num_epochs=0)
    with pytest.raises(ZarrsampleError, match="seed must be >= 0, got -1"):
        as_grain_dataset(ds, seed=-1)
    with pytest.raises(TypeError, match="shuffle must be a bool or None, got 'yes'"):
        as_grain_dataset(ds, shuffle="yes")
    with pytest.raises(TypeError, match="dataset must be a zarrsample_core.PatchDataset, got list"):
        GrainSource([])


def test_import_is_lazy_and_a_missing_jax_says_how_to_install_it():
    code = (
        "import sys, zarrsample_jax\n"
        "assert 'jax' not in sys.modules and 'grain' not in sys.modules\n"
        "sys.modules['grain'] = None\n"
        "try:\n"
        "    zarrsample_jax.as_grain_dataset\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr
    assert 'pip install "zarrsample[jax]"' in done.stdout


def test_mp_prefetch_works_in_a_program_that_never_parsed_absl_flags():
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from absl import flags\n"
        "import grain\n"
        "from contract import make_dataset, sample_key\n"
        "from zarrsample_jax import as_grain_dataset\n"
        "if __name__ == '__main__':\n"
        "    assert not flags.FLAGS.is_parsed()\n"
        "    ds = make_dataset()\n"
        "    it = iter(as_grain_dataset(ds, num_epochs=1).to_iter_dataset()\n"
        "              .mp_prefetch(grain.MultiprocessingOptions(num_workers=2)))\n"
        "    keys = [sample_key(s) for s in it]\n"
        "    it.close()\n"
        "    print(keys == [sample_key(s) for s in ds.epoch(0)])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("True")


def test_sequential_slicing_is_refused_with_a_clear_message():
    mds = as_grain_dataset(make_dataset())
    with pytest.raises(ZarrsampleError, match="sequential_slice=False"):
        mds.set_slice(slice(0, None, 2), sequential_slice=True)


@pytest.mark.parametrize("options", [None, grain.ReadOptions(num_threads=4, prefetch_buffer_size=8),
                                     grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)])
def test_read_options_do_not_change_the_sequence(options):
    ds = make_dataset()
    it = iter(as_grain_dataset(ds, epoch=2, num_epochs=1).to_iter_dataset(options))
    assert drain(it) == [sample_key(s) for s in ds.epoch(2)]


def test_batch_size_elements_are_the_core_batches_of_each_epoch():
    ds = make_dataset()
    grain_ds = as_grain_dataset(ds, num_epochs=2, shard_index=1, shard_count=2, batch_size=4)
    per_epoch = -(-ds.epoch_length(rank=1, world_size=2) // 4)
    assert grain_ds.epoch_length == per_epoch and len(grain_ds) == 2 * per_epoch
    expected = [b for e in (0, 1) for b in ds.epoch(e, rank=1, world_size=2).batches(4)]
    got = list(grain_ds.to_iter_dataset())
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert set(a) == set(b)
        for key in b:
            np.testing.assert_array_equal(a[key], b[key])
    spec = grain.experimental.get_element_spec(grain_ds)
    lead = 4 if ds.epoch_length(rank=1, world_size=2) % 4 == 0 else None
    assert tuple(spec["images"].shape) == (lead, 3, 8, 8)
    it = iter(grain_ds.to_iter_dataset())
    next(it)
    state = it.get_state()
    fresh = iter(as_grain_dataset(ds, num_epochs=2, shard_index=1, shard_count=2, batch_size=4).to_iter_dataset())
    fresh.set_state(state)
    np.testing.assert_array_equal(next(fresh)["position"], expected[1]["position"])
    other = iter(as_grain_dataset(ds, num_epochs=2, shard_index=1, shard_count=2, batch_size=2).to_iter_dataset())
    with pytest.raises(ZarrsampleError, match="batch_size"):
        other.set_state(state)


def test_patterns_of_changing_size_are_read_one_grain_dataset_per_epoch():
    from zarrsample_core import BlueNoisePatchSampler

    image = np.arange(160 * 192, dtype=np.uint32).reshape(160, 192)
    coll = ImageCollection({"images": open_image(image, axes="YX")}, spatial_axes="YX")
    sampler = BlueNoisePatchSampler(16, seed=3, spatial_axes="YX", resample_per_epoch=True)
    ds = PatchDataset(coll, sampler, return_positions=True)
    sizes = [ds.patches_in_epoch(e) for e in range(3)]
    assert sizes[0] == sizes[1] != sizes[2]  # seed 3: epoch 2 has one patch more
    for epoch in range(3):
        one = as_grain_dataset(ds, epoch=epoch, num_epochs=1)
        assert [sample_key(s) for s in one] == [sample_key(s) for s in ds.epoch(epoch)]
    many = as_grain_dataset(ds, epoch=0)
    with pytest.raises(ZarrsampleError, match=r"epoch 2 has 45 samples in this shard, epoch 0 had 44.*num_epochs=1"):
        [many[i] for i in range(3 * sizes[0])]


def test_random_crops_through_mp_prefetch_workers_equal_the_core():
    ds = make_dataset(random_crops=True)
    got = drain(iterate(ds, epoch=3, workers=2))
    assert sorted(got) == sorted(sample_key(s) for s in ds.epoch(3))
    assert sorted(got) != sorted(sample_key(s) for s in ds.epoch(2))
