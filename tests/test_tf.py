"""zarrsample_tf: tf.data over the core, checkpointed with tf.train.Checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from contract import IterationContract, make_dataset, sample_key  # noqa: E402

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, ZarrsampleError, open_image  # noqa: E402
from zarrsample_core.epochs._order import shard_length  # noqa: E402
from zarrsample_tf import as_tf_dataset, output_signature  # noqa: E402


def save_and_restore(it, fresh, tmp_path):
    """Checkpoint ``it`` with TensorFlow's API and restore the checkpoint into ``fresh``."""
    path = tf.train.Checkpoint(iterator=it).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(iterator=fresh).restore(path).assert_consumed()
    return fresh


class TestTFContract(IterationContract):
    """``num_workers`` is ``num_parallel_reads`` (concurrent reads of one ordered stream)."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp_path = tmp_path

    def rank_keys(self, ds, *, epoch, rank, world_size, num_workers):
        tfds = as_tf_dataset(ds, epoch=epoch, rank=rank, world_size=world_size, num_parallel_reads=num_workers)
        return [sample_key(s) for s in tfds]

    def resumed_keys(self, ds, *, epoch, stop):
        it = iter(as_tf_dataset(ds, epoch=epoch))
        head = [sample_key(next(it)) for _ in range(stop)]
        fresh = save_and_restore(it, iter(as_tf_dataset(ds, epoch=epoch)), self.tmp_path)
        return head, [sample_key(s) for s in fresh]

    def restore_foreign_state(self, ds, other):
        it = iter(as_tf_dataset(ds))
        next(it)
        fresh = save_and_restore(it, iter(as_tf_dataset(other)), self.tmp_path)
        for _ in fresh:  # the refusal comes with the first element read after the restore
            pass

    def test_a_state_from_another_configuration_is_refused(self):
        # Overrides the inherited test: tf.data raises its own error type. A checkpoint
        # holds the elements tf.data had buffered (they are the old run's); the core's
        # check refuses the first element read after them, or tf.data already refuses
        # the buffered ones when their shapes differ (patch 8 restored into patch 4).
        with pytest.raises(tf.errors.InvalidArgumentError, match="configuration|Incompatible shapes"):
            self.restore_foreign_state(make_dataset(), make_dataset(patch=4))
        with pytest.raises(tf.errors.InvalidArgumentError, match="does not match this configuration: seed saved 7, now 8"):
            self.restore_foreign_state(make_dataset(), make_dataset(seed=8))


@pytest.mark.parametrize("reads", [1, 3, tf.data.AUTOTUNE])
def test_an_epoch_is_the_cores_epoch_in_order(reads):
    ds = make_dataset()
    for rank in range(3):
        tfds = as_tf_dataset(ds, epoch=4, rank=rank, world_size=3, num_parallel_reads=reads)
        expected = [sample_key(s) for s in ds.epoch(4, rank=rank, world_size=3)]
        assert [sample_key(s) for s in tfds] == expected
        assert int(tfds.cardinality()) == len(expected) == shard_length(len(ds), rank=rank, world_size=3)


def test_input_context_gives_the_shard():
    ds = make_dataset()
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    by_context = [sample_key(s) for s in as_tf_dataset(ds, epoch=1, input_context=context, drop_remainder=True)]
    assert by_context == [sample_key(s) for s in ds.epoch(1, rank=1, world_size=2, drop_remainder=True)]
    options = as_tf_dataset(ds, input_context=context).options()
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
    with pytest.raises(ZarrsampleError, match="either input_context or rank/world_size.*rank=0"):
        as_tf_dataset(ds, input_context=context, rank=0)
    with pytest.raises(TypeError, match="input_context must be a tf.distribute.InputContext, got dict"):
        as_tf_dataset(ds, input_context={})


def test_static_shapes_dtypes_and_batches():
    ds = make_dataset()
    tfds = as_tf_dataset(ds)
    assert {k: (tuple(s.shape), s.dtype) for k, s in tfds.element_spec.items()} == {
        "images": ((3, 8, 8), tf.uint8), "labels": ((4, 4), tf.uint8),
        "position": ((2, 2), tf.int64), "image_index": ((), tf.int64),
    }
    batched = tfds.batch(4, drop_remainder=True)
    assert tuple(batched.element_spec["images"].shape) == (4, 3, 8, 8)
    batches = list(batched)
    assert len(batches) == len(ds) // 4
    first = batches[0]
    expected = [s for _, s in zip(range(4), ds.epoch(0))]
    np.testing.assert_array_equal(first["images"].numpy(), np.stack([s["images"] for s in expected]))
    np.testing.assert_array_equal(first["labels"].numpy(), np.stack([s["labels"] for s in expected]))



@pytest.mark.parametrize("size, reads", [(4, 1), (7, 3), (45, 1), (64, 1)])
def test_batch_size_reads_batches_equal_to_the_epoch_in_order(size, reads):
    ds = make_dataset()
    expected = list(ds.epoch(2, rank=1, world_size=2))
    tfds = as_tf_dataset(ds, epoch=2, rank=1, world_size=2, batch_size=size, num_parallel_reads=reads)
    full = len(expected) % size == 0
    assert tfds.element_spec["images"].shape.as_list() == [size if full else None, 3, 8, 8]
    batches = list(tfds)
    assert int(tfds.cardinality()) == len(batches) == -(-len(expected) // size)
    assert [len(b["images"]) for b in batches[:-1]] == [size] * (len(batches) - 1)
    for key in ("images", "labels", "position", "image_index"):
        got = np.concatenate([b[key].numpy() for b in batches])
        np.testing.assert_array_equal(got, np.stack([s[key] for s in expected]))


def test_batch_size_resumes_and_refuses_another_configuration(tmp_path):
    ds = make_dataset()
    whole = [b["position"].numpy() for b in as_tf_dataset(ds, epoch=1, batch_size=4)]
    it = iter(as_tf_dataset(ds, epoch=1, batch_size=4))
    head = [next(it)["position"].numpy() for _ in range(3)]
    fresh = save_and_restore(it, iter(as_tf_dataset(ds, epoch=1, batch_size=4)), tmp_path / "a")
    resumed = head + [b["position"].numpy() for b in fresh]
    assert len(resumed) == len(whole)
    for a, b in zip(resumed, whole):
        np.testing.assert_array_equal(a, b)
    it = iter(as_tf_dataset(ds, batch_size=4))
    next(it)
    foreign = save_and_restore(it, iter(as_tf_dataset(make_dataset(seed=8), batch_size=4)), tmp_path / "b")
    with pytest.raises(tf.errors.InvalidArgumentError, match="seed saved 7, now 8"):
        for _ in foreign:
            pass
    with pytest.raises(ZarrsampleError, match="batch_size"):
        as_tf_dataset(ds, batch_size=0)

@pytest.mark.parametrize("dtype", ["uint16", "int8", "float32", "bool"])
def test_dtypes_are_preserved(dtype):
    data = (np.arange(2 * 12 * 10).reshape(2, 12, 10) % 7).astype(dtype)
    coll = ImageCollection({"images": open_image(data, axes="CYX")}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(5, pad=1, spatial_axes="YX"), padding_mode="reflect")
    tfds = as_tf_dataset(ds)
    assert tfds.element_spec["images"].dtype == tf.as_dtype(np.dtype(dtype))
    for got, want in zip(tfds, ds.epoch(0)):
        assert got["images"].dtype == tf.as_dtype(np.dtype(dtype))
        np.testing.assert_array_equal(got["images"].numpy(), want["images"])


def test_whole_images_of_different_sizes_have_unknown_sizes_only_where_they_differ():
    colls = [
        ImageCollection({"images": open_image(np.zeros((h, 6), np.uint16), axes="YX")}, spatial_axes="YX")
        for h in (4, 5)
    ]
    tfds = as_tf_dataset(PatchDataset(colls, None))
    assert tfds.element_spec["images"].shape.as_list() == [None, 6]
    assert [tuple(s["images"].shape) for s in tfds] == [(4, 6), (5, 6)]


def test_resume_mid_epoch_after_batching_with_parallel_reads(tmp_path):
    ds = make_dataset()

    def batches():
        return as_tf_dataset(ds, epoch=3, num_parallel_reads=4).batch(4).prefetch(2)

    whole = [b["position"].numpy() for b in batches()]
    for stop in (1, 5):
        it = iter(batches())
        head = [next(it)["position"].numpy() for _ in range(stop)]
        fresh = save_and_restore(it, iter(batches()), tmp_path / str(stop))
        resumed = head + [b["position"].numpy() for b in fresh]
        assert len(resumed) == len(whole)
        for a, b in zip(resumed, whole):
            np.testing.assert_array_equal(a, b)


def test_a_transform_needs_an_output_signature():
    ds = make_dataset(transform=lambda s: {"x": s["images"].astype(np.float32) / 255})
    with pytest.raises(ZarrsampleError, match="transform"):
        as_tf_dataset(ds)
    tfds = as_tf_dataset(ds, output_signature={"x": ((3, 8, 8), np.float32)})
    assert tfds.element_spec["x"] == tf.TensorSpec((3, 8, 8), tf.float32)
    assert next(iter(tfds))["x"].dtype == tf.float32
    wrong = as_tf_dataset(ds, output_signature={"x": tf.TensorSpec((3, 8, 8), tf.float64)})
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sample\['x'\] must match output_signature"):
        next(iter(wrong))


def test_bad_arguments_are_named():
    ds = make_dataset()
    with pytest.raises(ZarrsampleError, match="num_parallel_reads must be >= 1, got 0"):
        as_tf_dataset(ds, num_parallel_reads=0)
    with pytest.raises(TypeError, match="num_parallel_reads must be an int"):
        as_tf_dataset(ds, num_parallel_reads=2.0)
    with pytest.raises(ZarrsampleError, match="rank must be < world_size=2, got 2"):
        as_tf_dataset(ds, rank=2, world_size=2)
    with pytest.raises(TypeError, match="dataset must be a zarrsample_core.PatchDataset"):
        as_tf_dataset([1, 2])
    with pytest.raises(TypeError, match="drop_remainder must be a bool"):
        as_tf_dataset(ds, drop_remainder=1)


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)), timeout=120)


def test_import_is_lazy_and_a_missing_tensorflow_says_how_to_install_it():
    done = _python(
        "import sys, zarrsample_tf\n"
        "assert 'tensorflow' not in sys.modules\n"
        "sys.modules['tensorflow'] = None\n"
        "try:\n"
        "    zarrsample_tf.as_tf_dataset\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "zarrsample[tf]"' in done.stdout


def test_distribute_datasets_from_function_gives_each_pipeline_its_shard():
    ds = make_dataset()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = strategy.distribute_datasets_from_function(
        lambda context: as_tf_dataset(ds, epoch=1, input_context=context).batch(5)
    )
    positions = np.concatenate([batch["position"].numpy() for batch in dist])
    assert [tuple(p[:, 0]) for p in positions] == [sample_key(s)[1:] for s in ds.epoch(1)]


def test_a_finished_pipeline_releases_the_dataset_and_its_chunk_cache():
    import gc
    import weakref

    refs = []
    for _ in range(3):
        ds = make_dataset()
        refs.append(weakref.ref(ds))
        tfds = as_tf_dataset(ds, batch_size=4).map(lambda s: s["images"])
        assert sum(int(b.shape[0]) for b in tfds) == len(ds)
        del ds, tfds
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_the_pipeline_keeps_its_dataset_alive():
    import gc

    tfds = as_tf_dataset(make_dataset())  # no other reference to the PatchDataset
    gc.collect()
    assert len(list(tfds)) == len(make_dataset())


def test_output_signature_is_what_as_tf_dataset_gives_and_builds_a_pipeline_by_hand():
    image = open_image(np.arange(3 * 40 * 24, dtype=np.uint16).reshape(3, 40, 24), axes="CYX")
    labels = open_image(np.zeros((20, 12), np.uint8), axes="YX")
    core = PatchDataset(ImageCollection({"images": image, "labels": labels}, spatial_axes="YX"),
                        PatchSampler(8, spatial_axes="YX"), return_positions=True)
    signature = output_signature(core)
    assert signature == as_tf_dataset(core).element_spec
    assert signature["images"] == tf.TensorSpec((3, 8, 8), tf.uint16)
    assert signature["labels"] == tf.TensorSpec((4, 4), tf.uint8)
    by_hand = tf.data.Dataset.from_generator(lambda: core.epoch(0), output_signature=signature)
    assert [s["images"].numpy().tobytes() for s in by_hand] == [s["images"].tobytes() for s in core.epoch(0)]
    with pytest.raises(TypeError, match="PatchDataset"):
        output_signature("not a dataset")


def test_context_windows_and_their_positions_are_in_the_signature():
    image = open_image(np.arange(40 * 24, dtype=np.uint16).reshape(40, 24), axes="YX")
    context = open_image(np.arange(10 * 6, dtype=np.uint8).reshape(10, 6), axes="YX")  # level 2
    core = PatchDataset(ImageCollection({"images": image, "context": context}, spatial_axes="YX"),
                        PatchSampler(8, spatial_axes="YX"), return_positions=True, window={"context": 5})
    signature = output_signature(core)
    assert signature["context"] == tf.TensorSpec((5, 5), tf.uint8)
    assert signature["context_position"] == tf.TensorSpec((2, 2), tf.int64)
    batches = list(as_tf_dataset(core, batch_size=4))
    expected = [core.read_batch(core.order(0)[k:k + 4]) for k in range(0, len(core), 4)]
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected):
        assert set(got) == set(want)
        for key, value in want.items():
            np.testing.assert_array_equal(got[key].numpy(), value, err_msg=key)
