"""``tf.data`` over a core :class:`~zarrsample_core.PatchDataset`.

Thin by design: take the rank from a ``tf.distribute.InputContext`` (or the
arguments), read the core's samples as tensors with the static shapes of
:func:`~zarrsample_core.epochs._spec.sample_spec`, and keep the position in
``tf.data``'s own iterator checkpoint. Order, sharding and the configuration
check are the core's.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from zarrsample_core import PatchDataset, ZarrsampleError
from zarrsample_core._checks import check_int
from zarrsample_core.epochs._dataset import check_dataset
from zarrsample_core.epochs._epoch import EpochIterator
from zarrsample_core.epochs._spec import sample_spec
from zarrsample_core.epochs._state import check_state

__all__ = ["as_tf_dataset", "output_signature"]


def _placement(rank: object, world_size: object, input_context: Any) -> tuple[int, int]:
    """``(rank, world_size)`` from the input context, else the arguments (default 0 of 1)."""
    if input_context is None:
        return (0 if rank is None else rank), (1 if world_size is None else world_size)
    if rank is not None or world_size is not None:
        raise ZarrsampleError(
            f"give either input_context or rank/world_size, got input_context and rank={rank!r}, "
            f"world_size={world_size!r}"
        )
    if not all(hasattr(input_context, a) for a in ("input_pipeline_id", "num_input_pipelines")):
        raise TypeError(
            f"input_context must be a tf.distribute.InputContext, got {type(input_context).__name__}"
        )
    return input_context.input_pipeline_id, input_context.num_input_pipelines


def _signature(dataset: PatchDataset, output_signature: Mapping[str, Any] | None) -> dict[str, tf.TensorSpec]:
    """TensorSpecs per sample key: given, or from the core's sample spec."""
    spec = sample_spec(dataset) if output_signature is None else output_signature
    if not isinstance(spec, Mapping) or not spec:
        raise TypeError(
            f"output_signature must be a non-empty dict of tf.TensorSpec or (shape, dtype), got {spec!r}"
        )
    signature = {}
    for key, value in spec.items():
        if isinstance(value, tf.TensorSpec):
            signature[key] = value
        elif isinstance(value, tuple) and len(value) == 2:
            signature[key] = tf.TensorSpec(value[0], tf.as_dtype(np.dtype(value[1])))
        else:
            raise TypeError(
                f"output_signature[{key!r}] must be a tf.TensorSpec or a (shape, dtype) pair, got {value!r}"
            )
    return signature


def output_signature(dataset: PatchDataset) -> dict[str, tf.TensorSpec]:
    """The ``tf.TensorSpec`` of every sample key of ``dataset``, without reading pixels.

    What :func:`as_tf_dataset` gives its elements, for pipelines built by
    hand, e.g. ``tf.data.Dataset.from_generator(..., output_signature=...)``.

    Parameters
    ----------
    dataset : PatchDataset
        The core dataset whose samples are described.

    Returns
    -------
    dict of str to tf.TensorSpec
        One spec per sample key, in a sample's key order (see
        :func:`~zarrsample_core.sample_spec`): static sizes where every patch
        has them, None where patches differ.

    Raises
    ------
    TypeError
        ``dataset`` is not a ``PatchDataset``.
    ZarrsampleError
        ``dataset.transform`` is set (what it returns is unknown: write the
        signature by hand), or the collections disagree on an entry.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> image = open_image(np.arange(64, dtype=np.uint16).reshape(8, 8), axes="YX")
    >>> core = PatchDataset(ImageCollection({"images": image}, spatial_axes="YX"),
    ...                     PatchSampler(4, spatial_axes="YX"), return_positions=True)
    >>> signature = output_signature(core)
    >>> signature["images"], signature["position"]
    (TensorSpec(shape=(4, 4), dtype=tf.uint16, name=None), TensorSpec(shape=(2, 2), dtype=tf.int64, name=None))
    >>> ds = tf.data.Dataset.from_generator(lambda: core.epoch(0), output_signature=signature)
    >>> len(list(ds))
    4
    """
    return _signature(check_dataset(dataset), None)


def _as_array(sample: Mapping[str, Any], key: str, spec: tf.TensorSpec) -> np.ndarray:
    """``sample[key]`` as an array of the signature's dtype and shape, or a clear error."""
    value = sample[key]
    dtype = spec.dtype.as_numpy_dtype
    array = np.asarray(value, dtype=dtype) if isinstance(value, (int, float, bool)) else np.asarray(value)
    if array.dtype != dtype or not spec.shape.is_compatible_with(array.shape):
        raise ZarrsampleError(
            f"sample[{key!r}] must match output_signature ({spec.shape}, {spec.dtype.name}), "
            f"got shape {array.shape} dtype {array.dtype}"
        )
    return array


def as_tf_dataset(
    dataset: PatchDataset,
    *,
    epoch: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    input_context: Any = None,
    num_parallel_reads: int = 1,
    drop_remainder: bool = False,
    batch_size: int | None = None,
    output_signature: Mapping[str, Any] | None = None,
) -> tf.data.Dataset:
    """One epoch of one rank's patches as a ``tf.data.Dataset`` of dicts of tensors.

    Parameters
    ----------
    dataset : zarrsample_core.PatchDataset
        The patches; its seed, shuffle and chunk-aware order are used as is.
    epoch : int
        The epoch whose order to serve (each call serves one epoch: call
        again, or ``concatenate``, for the next one).
    rank, world_size : int, optional
        This input pipeline's shard (default 0 of 1). Not with ``input_context``.
    input_context : tf.distribute.InputContext, optional
        Its ``input_pipeline_id`` of ``num_input_pipelines`` give the shard,
        e.g. inside ``strategy.distribute_datasets_from_function``.
    num_parallel_reads : int or tf.data.AUTOTUNE
        Samples read concurrently (a deterministic parallel ``map``); the
        output order is the same for every value.
    drop_remainder : bool
        Equal counts per rank by dropping the epoch's tail (True) or by
        repeating patches from its start (False), as in the core.
    batch_size : int, optional
        Deliver batches of this many consecutive samples (the last one
        smaller when the shard does not divide), each read by one call
        into Python with the core's ``read_batch`` (straight into one array
        per modality): much less per-sample overhead than ``.batch()``
        after per-sample elements. Entries are stacked along a new first
        axis.
    output_signature : dict, optional
        ``{key: tf.TensorSpec or (shape, dtype)}``; needed only when
        ``dataset.transform`` is set (otherwise from the core's
        :func:`~zarrsample_core.epochs._spec.sample_spec`).

    Returns
    -------
    tf.data.Dataset
        Elements are dicts with one tensor per sample key, in the source
        dtype (``uint16`` stays ``uint16``) with static shapes wherever all
        patches agree; known cardinality, the length of the rank's shard.
        The order is exactly ``dataset.epoch(epoch, rank=rank,
        world_size=world_size, drop_remainder=drop_remainder)``. With
        ``batch_size``, elements are batches (first axis static when every
        batch is full) and the cardinality counts batches.

    Raises
    ------
    ImportError
        TensorFlow is missing (raised by ``zarrsample_tf``).
    TypeError, ZarrsampleError
        A parameter of the wrong type or value (the message names it), both
        ``input_context`` and ``rank``/``world_size``, or a ``transform``
        without ``output_signature``.

    Notes
    -----
    Resuming uses TensorFlow's own checkpointing: ``tf.train.Checkpoint(
    iterator=it)`` of ``it = iter(ds)`` (also after ``batch``, ``prefetch``,
    ...) saves the position (and ``tf.data``'s buffered elements) and
    restores it exactly. This works because each element is read by index
    (``dataset[i]`` of the shard's order, a pure function of the index)
    instead of through a Python generator, which TensorFlow cannot save.
    The configuration (the core's state ints: dataset fingerprint, seed,
    epoch, rank, ...) rides along in a ``scan`` state, so a checkpoint of
    another configuration fails at the first element read after the
    restore with the core's message, raised as
    ``tf.errors.InvalidArgumentError``. The few elements ``tf.data`` had
    buffered when saving (prefetch, parallel map) belong to the saved run
    and come first; TensorFlow itself refuses them if their shapes differ.

    A random ``transform`` draws new numbers after a restore; positions are
    exact, augmentations are not replayed. Auto-sharding by
    ``tf.distribute`` is turned off: the dataset is already sharded.
    Memory: the shard's indices (8 bytes per patch) plus the elements in
    flight. The core's read-ahead threads load the chunks of the next
    ``dataset.prefetch`` samples; a parallel ``map`` reads
    ``num_parallel_reads`` elements at once through the shared chunk cache.

    Each element costs one ``tf.numpy_function`` call (~150 µs of
    TensorFlow overhead on a desktop CPU, more than reading a small patch
    from the cache): prefer ``batch_size`` over ``.batch()`` for speed.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> image = open_image(np.arange(64, dtype=np.uint16).reshape(8, 8), axes="YX")
    >>> core = PatchDataset(ImageCollection({"images": image}, spatial_axes="YX"),
    ...                     PatchSampler(4, spatial_axes="YX"), shuffle=True)
    >>> ds = as_tf_dataset(core, epoch=0, rank=1, world_size=2)
    >>> ds.element_spec["images"]
    TensorSpec(shape=(4, 4), dtype=tf.uint16, name=None)
    >>> [int(s["images"][0, 0]) for s in ds] == [int(s["images"][0, 0]) for s in
    ...     core.epoch(0, rank=1, world_size=2)]
    True
    """
    dataset = check_dataset(dataset)
    rank, world_size = _placement(rank, world_size, input_context)
    if num_parallel_reads != tf.data.AUTOTUNE:
        num_parallel_reads = check_int(num_parallel_reads, "num_parallel_reads", 1)
    if not isinstance(drop_remainder, bool):
        raise TypeError(f"drop_remainder must be a bool, got {drop_remainder!r}")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    signature = _signature(dataset, output_signature)
    shard = dataset.epoch(epoch, rank=rank, world_size=world_size, drop_remainder=drop_remainder)
    indices = shard.indices
    config = shard.state()  # the core's configuration ints, position 0
    keys = list(config)
    expected = {k: v for k, v in config.items() if k not in ("version", "position")}
    current = np.array([config[k] for k in keys], np.int64)
    # The reading function reaches the dataset through a weak reference: TensorFlow may
    # keep map functions alive after their pipeline is gone, and with them the chunk
    # cache. The returned tf.data.Dataset (kept by its iterators and by datasets built
    # from it) owns the strong reference.
    source = _Source(shard)
    source_ref = weakref.ref(source)
    size = 1 if batch_size is None else batch_size
    count = -(-len(indices) // size)

    def columns(sample: Mapping[str, Any], specs: Mapping[str, tf.TensorSpec]) -> list[np.ndarray]:
        missing = [key for key in signature if key not in sample]
        if missing or len(sample) != len(signature):
            raise ZarrsampleError(
                f"samples must have the keys of output_signature {list(signature)}, got {list(sample)}"
            )
        return [_as_array(sample, key, spec) for key, spec in specs.items()]

    def read_one(src: _Source, j: int) -> list[np.ndarray]:
        src.read_ahead.advance(j)
        return columns(src.shard.read(j), signature)

    def read(saved: np.ndarray, b: np.int64) -> list[np.ndarray]:
        if not np.array_equal(saved, current):  # a checkpoint of another configuration
            check_state(dict(zip(keys, saved.tolist())), expected=expected)
        src = source_ref()
        if src is None:
            raise ZarrsampleError(
                "the PatchDataset behind this tf.data pipeline is gone: keep the tf.data.Dataset "
                "returned by as_tf_dataset (or one built from it) alive while reading"
            )
        if batch_size is None:
            return read_one(src, int(b))
        first = int(b) * size
        src.read_ahead.advance(first)
        batch = src.shard.read_batch(first, first + size)
        return columns(batch, batch_specs)

    batch_dim = [] if batch_size is None else [size if len(indices) % size == 0 else None]
    shapes = [tf.TensorShape(batch_dim).concatenate(spec.shape) for spec in signature.values()]
    batch_specs = {
        key: tf.TensorSpec(tf.TensorShape([None]).concatenate(spec.shape), spec.dtype)
        for key, spec in signature.items()
    }

    def load(saved: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        values = tf.numpy_function(
            read, [saved, b], [spec.dtype for spec in signature.values()], stateful=False,
            name="zarrsample_read",
        )
        for value, shape in zip(values, shapes):
            value.set_shape(shape)
        return dict(zip(signature, values))

    positions = tf.data.Dataset.range(count)
    # The scan state is saved with the iterator: the configuration this position belongs to.
    tagged = positions.scan(tf.constant(current), lambda state, b: (state, (state, b)))
    if num_parallel_reads == 1:
        out = tagged.map(load)
    else:
        out = tagged.map(load, num_parallel_calls=num_parallel_reads, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    result = out.with_options(options).apply(tf.data.experimental.assert_cardinality(count))
    result._zarrsample_source = source  # owned by the pipeline (see source_ref)
    return result


class _Source:
    """What the reading function needs, owned by the tf.data.Dataset that reads it."""

    __slots__ = ("__weakref__", "read_ahead", "shard")

    def __init__(self, shard: EpochIterator) -> None:
        self.shard = shard  # reads the shard's epoch, whatever epoch the dataset is set to
        self.read_ahead = shard.read_ahead()
