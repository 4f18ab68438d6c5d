"""Grain over a core :class:`~zarrsample_core.PatchDataset`, batches as ``jax.Array``.

Thin by design: a random-access source (``dataset[i]``), a ``MapDataset``
that maps a global index to (epoch, position) in the core's sharded epoch
order, Grain's own iterator state with the core's configuration check, and
numpy-to-jax conversion. Order and sharding are the core's.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from zarrsample_core import PatchDataset, ZarrsampleError
from zarrsample_core._checks import check_int
from zarrsample_core.epochs._dataset import check_dataset
from zarrsample_core.epochs._epoch import EpochIterator, ReadAhead
from zarrsample_core.epochs._order import shard, shard_length
from zarrsample_core.epochs._spec import sample_spec
from zarrsample_core.epochs._state import check_state, make_state

__all__ = ["READ_OPTIONS", "EpochMapDataset", "GrainSource", "as_grain_dataset", "to_jax"]

#: Default of :meth:`EpochMapDataset.to_iter_dataset`: the core reads chunks ahead itself.
READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=64)


def _absl_flags_parsed() -> None:
    """Let Grain read its absl flags in a program that never parsed them.

    grain 0.2.18 reads ``--grain_enable_multiprocess_worker_profiling`` when
    ``mp_prefetch`` starts its worker processes if a profiler (jax's) is
    loaded, and absl raises ``UnparsedFlagAccessError`` unless the flags were
    parsed (``absl.app.run``). Marking them parsed keeps every default; a
    later ``FLAGS(argv)`` still parses the command line.
    """
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class GrainSource:
    """A Grain ``RandomAccessDataSource``: ``source[i]`` is ``dataset[i]``.

    Parameters
    ----------
    dataset : zarrsample_core.PatchDataset
        The patches; index ``i`` is the i-th patch of the unshuffled plan.

    Raises
    ------
    TypeError
        ``dataset`` is not a ``PatchDataset``.

    Notes
    -----
    Samples are the core's dicts of numpy arrays (``"image_index"`` a
    Python int). Thread-safe (the core's reader is); picklable for Grain's
    worker processes (the chunk cache is not pickled). ``repr`` names the
    dataset and its configuration fingerprint, so that Grain's
    ``DataLoader`` refuses a checkpoint of another dataset.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> image = open_image(np.arange(64, dtype=np.uint16).reshape(8, 8), axes="YX")
    >>> core = PatchDataset(ImageCollection({"images": image}, spatial_axes="YX"),
    ...                     PatchSampler(4, spatial_axes="YX"))
    >>> source = GrainSource(core)
    >>> len(source), source[1]["images"][0].tolist()
    (4, [4, 5, 6, 7])
    """

    def __init__(self, dataset: PatchDataset) -> None:
        self.dataset = check_dataset(dataset)
        _absl_flags_parsed()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]

    def __repr__(self) -> str:
        return f"GrainSource({self.dataset!r}, fingerprint={self.dataset.fingerprint})"


class EpochMapDataset(grain.MapDataset):
    """All epochs of one shard: index ``k`` is position ``k % m`` of epoch ``k // m``.

    Create with :func:`as_grain_dataset`. ``m`` (:attr:`epoch_length`) is
    the shard's length; element ``k`` is ``dataset[shard(order(epoch))[k % m]]``.
    ``to_iter_dataset()`` gives iterators whose ``get_state()`` also holds
    the configuration, checked by ``set_state()``.
    """

    _MUTATES_ELEMENT_SPEC = False

    def __init__(self, parent: grain.MapDataset, dataset: PatchDataset, *, config: Mapping[str, int]) -> None:
        super().__init__(parent)
        self._dataset = dataset
        self._config = dict(config)
        self._order_args = dict(seed=config["seed"], shuffle=bool(config["shuffle"]))
        self._shard_args = dict(rank=config["rank"], world_size=config["world_size"],
                                drop_remainder=bool(config["drop_remainder"]))
        self._samples = shard_length(dataset.patches_in_epoch(config["epoch"]), **self._shard_args)
        self._batch = config.get("batch_size", 0)  # 0: elements are samples
        #: Elements per epoch: the shard's samples, or its batches with ``batch_size``.
        self.epoch_length = -(-self._samples // self._batch) if self._batch else self._samples
        self._num_epochs = None if config["num_epochs"] < 0 else config["num_epochs"]
        self._cache: dict[int, tuple[EpochIterator, ReadAhead]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        if self._num_epochs is None and self.epoch_length:
            return sys.maxsize
        return self.epoch_length * (self._num_epochs or 0)

    def __str__(self) -> str:
        return (
            f"EpochMapDataset(first_epoch={self._config['epoch']}, num_epochs={self._num_epochs}, "
            f"shard {self._config['rank']} of {self._config['world_size']}, "
            f"epoch_length={self.epoch_length})"
        )

    def _shard(self, epoch: int) -> tuple[EpochIterator, ReadAhead]:
        """The shard of ``epoch`` and its read-ahead (this and the previous epoch are kept)."""
        with self._lock:
            entry = self._cache.get(epoch)
            if entry is None:
                view = self._dataset._epoch_view(epoch)
                indices = shard(self._dataset.order(epoch, **self._order_args), **self._shard_args)
                if len(indices) != self._samples:
                    raise ZarrsampleError(
                        f"epoch {epoch} has {len(indices)} samples in this shard, epoch {self._config['epoch']} "
                        f"had {self._samples}: the sampler's patch count changes per epoch, so build one grain "
                        "dataset per epoch (as_grain_dataset(..., epoch=e, num_epochs=1))"
                    )
                it = EpochIterator(self._dataset, indices, epoch=epoch, position=0, config={}, view=view)
                entry = (it, it.read_ahead())
                self._cache = {e: v for e, v in self._cache.items() if e == epoch - 1}
                self._cache[epoch] = entry
            return entry

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        if len(self) == 0:
            raise IndexError(f"index {index} is out of range for an empty shard")
        with self._stats.record_self_time():
            epoch, position = divmod(int(index) % len(self), self.epoch_length)
            it, read_ahead = self._shard(self._config["epoch"] + epoch)
            if self._batch:
                first = position * self._batch
                read_ahead.advance(first)
            else:
                read_ahead.advance(position)
        if self._batch:
            return it.read_batch(first, first + self._batch)
        return it.read(position)  # in the epoch's own plans (they change per epoch for some samplers)

    def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
        """Refuse Grain's in-place slicing (``mp_prefetch(sequential_slice=True)``).

        It would slice the patches under the epoch order; Grain's default
        slicing (worker ``i`` of ``k`` reads elements ``i::k``) is supported.
        """
        raise ZarrsampleError(
            f"as_grain_dataset supports mp_prefetch with sequential_slice=False (the default), "
            f"got sequential_slice={sequential_slice!r} for slice {sl}"
        )

    @property
    def _element_spec(self) -> Any:
        lead = () if not self._batch else (self._batch if self._samples % self._batch == 0 else None,)
        return {
            key: grain.experimental.ShapeDtypeStruct(shape=(*lead, *shape), dtype=dtype)
            for key, (shape, dtype) in sample_spec(self._dataset).items()
        }

    def to_iter_dataset(self, read_options: grain.ReadOptions | None = None, *,
                        allow_nones: bool = False) -> grain.IterDataset:
        """Grain's ``to_iter_dataset``, with the configuration in the iterator state.

        Batch after it (``.to_iter_dataset().batch(n)``) to keep the check:
        a ``.batch(n).to_iter_dataset()`` pipeline resumes exactly too, but
        Grain's own state holds only ``next_index``.

        ``read_options`` defaults to :data:`READ_OPTIONS` (one thread reading
        64 samples ahead) rather than Grain's 16 threads: the core's
        read-ahead threads already decode chunks in parallel, and more Python
        threads only contend for the GIL (about 1.3x slower on 2 cores).
        """
        if read_options is None:
            read_options = READ_OPTIONS
        parent = super().to_iter_dataset(read_options, allow_nones=allow_nones)
        return _CheckedIterDataset(parent, self._config)


class _CheckedIterDataset(grain.IterDataset):
    """Adds the configuration to the parent iterator's state."""

    _MUTATES_ELEMENT_SPEC = False

    def __init__(self, parent: grain.IterDataset, config: Mapping[str, int]) -> None:
        super().__init__(parent)
        self._config = dict(config)

    def __iter__(self) -> _CheckedIterator:
        return _CheckedIterator(self._parent.__iter__(), self._config)

    def __str__(self) -> str:
        return "zarrsample.CheckedIterDataset"

    @property
    def _element_spec(self) -> Any:
        return grain.experimental.get_element_spec(self._parent)


class _CheckedIterator(grain.DatasetIterator):
    """State ``{"parent": Grain's state, "zarrsample": the core's config ints}``."""

    _MUTATES_ELEMENT_SPEC = False

    def __init__(self, parent: grain.DatasetIterator, config: dict[str, int]) -> None:
        super().__init__(parent)
        self._config = config
        self._expected = {k: v for k, v in config.items() if k not in ("version", "position")}

    def __next__(self) -> Any:
        return next(self._parent)

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "zarrsample": dict(self._config)}

    def set_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, Mapping) or not {"parent", "zarrsample"} <= set(state):
            keys = list(state) if isinstance(state, Mapping) else type(state).__name__
            raise ZarrsampleError(
                f"state must be the get_state() of an as_grain_dataset iterator, with keys "
                f"['parent', 'zarrsample'], got {keys}"
            )
        check_state(state["zarrsample"], expected=self._expected)
        self._parent.set_state(state["parent"])

    def _get_next_index(self) -> int:
        return grain.experimental.get_next_index(self._parent)

    def _set_next_index(self, index: int) -> None:
        grain.experimental.set_next_index(self._parent, index)

    def __str__(self) -> str:
        return "zarrsample.CheckedIterator"


def as_grain_dataset(
    dataset: PatchDataset,
    *,
    epoch: int = 0,
    seed: int | None = None,
    shuffle: bool | None = None,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    drop_remainder: bool = False,
    batch_size: int | None = None,
) -> EpochMapDataset:
    """The core's sharded epochs, one after the other, as a Grain ``MapDataset``.

    Parameters
    ----------
    dataset : zarrsample_core.PatchDataset
        The patches.
    epoch : int
        The first epoch (index 0 is its first element).
    seed : int, optional
        Seed of the epoch orders; default ``dataset.seed``.
    shuffle : bool, optional
        Shuffle each epoch; default ``dataset.shuffle``. With the defaults
        the orders are ``dataset.order(epoch)``, as for every adapter.
    num_epochs : int, optional
        Epochs to serve; None serves them forever (length ``sys.maxsize``).
    shard_index, shard_count : int, optional
        This process's shard; default ``jax.process_index()`` of
        ``jax.process_count()``.
    drop_remainder : bool
        Equal counts per shard by dropping the epoch's tail (True) or by
        repeating patches from its start (False), as in the core.
    batch_size : int, optional
        Elements are batches of this many consecutive samples of each
        epoch (the last one of an epoch smaller when the shard does not
        divide), read by the core's ``read_batch`` straight into one array
        per modality: less per-sample work than Grain's ``.batch()``.

    Returns
    -------
    EpochMapDataset
        A ``grain.MapDataset`` of the core's sample dicts (numpy arrays),
        or of batches of them. Its ``epoch_length`` is the shard's length
        (in batches, with ``batch_size``) per epoch. Element spec:
        ``grain.experimental.get_element_spec`` (from the core's
        ``sample_spec``, no reads).

    Raises
    ------
    ImportError
        jax or Grain is missing (raised by ``zarrsample_jax``).
    TypeError, ZarrsampleError
        A parameter of the wrong type or value (the message names it).

    Notes
    -----
    Resume with Grain's checkpointing: ``it = ds.to_iter_dataset().batch(n)``
    then ``it.get_state()`` / ``it.set_state(state)`` (or Grain's Orbax
    handlers). The state is Grain's (``next_index``, per worker under
    ``mp_prefetch``) plus the core's configuration ints; restoring a state
    of another configuration raises ``ZarrsampleError`` naming what
    differs. ``mp_prefetch`` workers each read every k-th element and Grain
    interleaves them back, so the sequence is the same for any worker count.

    Memory: the shard's indices of at most two epochs (8 bytes per patch).
    Index arithmetic per element is O(1) after the epoch's order is built
    (O(n log n), once per epoch and process).

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> image = open_image(np.arange(64, dtype=np.uint16).reshape(8, 8), axes="YX")
    >>> core = PatchDataset(ImageCollection({"images": image}, spatial_axes="YX"),
    ...                     PatchSampler(4, spatial_axes="YX"), shuffle=True, return_positions=True)
    >>> ds = as_grain_dataset(core, num_epochs=2, shard_index=1, shard_count=2)
    >>> len(ds), ds.epoch_length
    (4, 2)
    >>> [s["position"][:, 0].tolist() for s in ds[2:]] == [
    ...     s["position"][:, 0].tolist() for s in core.epoch(1, rank=1, world_size=2)]
    True
    >>> batch = next(iter(ds.to_iter_dataset().batch(2).map(to_jax)))
    >>> batch["images"].shape, batch["images"].dtype
    ((2, 4, 4), dtype('uint16'))
    """
    dataset = check_dataset(dataset)
    seed = dataset.seed if seed is None else check_int(seed, "seed", 0)
    if shuffle is None:
        shuffle = dataset.shuffle
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be a bool or None, got {shuffle!r}")
    if num_epochs is not None:
        num_epochs = check_int(num_epochs, "num_epochs", 1)
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    if not isinstance(drop_remainder, bool):
        raise TypeError(f"drop_remainder must be a bool, got {drop_remainder!r}")
    batch = 0 if batch_size is None else check_int(batch_size, "batch_size", 1)
    core = dataset.epoch(epoch, rank=shard_index, world_size=shard_count, drop_remainder=drop_remainder)
    config = make_state(
        epoch=core.epoch, position=0, fingerprint=dataset.fingerprint, world_size=shard_count,
        rank=shard_index, drop_remainder=drop_remainder, seed=seed, shuffle=shuffle,
        n_patches=dataset.patches_in_epoch(core.epoch), num_epochs=-1 if num_epochs is None else num_epochs,
        **({"batch_size": batch} if batch else {}),
    )
    _absl_flags_parsed()
    return EpochMapDataset(grain.MapDataset.source(GrainSource(dataset)), dataset, config=config)


def to_jax(batch: Any, *, sharding: jax.sharding.Sharding | None = None) -> Any:
    """Numpy arrays in ``batch`` as ``jax.Array`` (containers kept).

    Parameters
    ----------
    batch : pytree of numpy arrays and numbers
        E.g. a batch from ``as_grain_dataset(...).to_iter_dataset().batch(n)``.
    sharding : jax.sharding.Sharding, optional
        Build global arrays from this process's batch
        (``jax.make_array_from_process_local_data``); default: put each
        array on the default device (``jax.device_put``).

    Returns
    -------
    pytree of jax.Array
        Same dtypes (``uint8``, ``uint16``, ``float32``, ... kept), except
        64-bit types, which jax turns into 32-bit ones unless
        ``jax_enable_x64`` is set.

    Notes
    -----
    Apply it in the main process, after ``mp_prefetch`` (jax arrays do not
    cross process boundaries): ``....mp_prefetch(options).map(to_jax)``.
    """
    if sharding is None:
        return jax.device_put(batch)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
