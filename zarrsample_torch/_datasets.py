"""torch datasets over a core :class:`~zarrsample_core.PatchDataset`.

Thin by design: discover the DDP rank and the DataLoader worker, turn numpy
samples into tensors, and map the core's iterator state to the
``state_dict`` / ``load_state_dict`` protocol of torchdata's
``StatefulDataLoader``. Order, sharding and resuming are the core's.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data

from zarrsample_core import EpochIterator, PatchDataset, ZarrsampleError
from zarrsample_core._checks import check_int
from zarrsample_core.epochs._dataset import check_dataset

from ._tensors import to_tensors

__all__ = ["PatchIterableDataset", "PatchMapDataset"]


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, or ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class PatchMapDataset(torch.utils.data.Dataset):
    """Map-style torch dataset: ``ds[i]`` is the core's ``dataset[i]`` as tensors.

    For random access and torch samplers (``RandomSampler``,
    ``DistributedSampler``); the sampler then decides order and sharding.
    :class:`PatchIterableDataset` keeps the core's chunk-aware order instead.

    Parameters
    ----------
    dataset : zarrsample_core.PatchDataset
        The patches to serve.

    Raises
    ------
    TypeError
        ``dataset`` is not a ``PatchDataset``.

    Notes
    -----
    A sample is a dict of tensors with the source dtype (see
    :class:`PatchIterableDataset` for dtypes); ``torch.from_numpy`` shares
    the fresh array the core read, so no copy is made.

    **Batches**: ``ds[[i, j, ...]]`` (a list or 1-D array of indices) is one
    batch, read by the core's ``read_batch`` straight into one array per
    modality. Use it with a batch sampler and no automatic batching:
    ``DataLoader(ds, sampler=BatchSampler(RandomSampler(ds), 32, False),
    batch_size=None)``. With ``DataLoader(ds, batch_size=32)`` torch calls
    ``__getitems__``, which reads the batch the same way.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> image = open_image(np.arange(64, dtype=np.uint16).reshape(8, 8), axes="YX")
    >>> core = PatchDataset(ImageCollection({"images": image}, spatial_axes="YX"),
    ...                     PatchSampler(4, spatial_axes="YX"))
    >>> ds = PatchMapDataset(core)
    >>> len(ds), ds[1]["images"].dtype, tuple(ds[1]["images"].shape)
    (4, torch.uint16, (4, 4))
    """

    def __init__(self, dataset: PatchDataset) -> None:
        self.dataset = check_dataset(dataset)

    def __repr__(self) -> str:
        return f"PatchMapDataset({self.dataset!r})"

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Read the plans of ``epoch`` (for samplers that draw new positions every epoch).

        Call it before each epoch, as with ``DistributedSampler.set_epoch``;
        ``len()`` then counts that epoch's patches. DataLoader workers
        started after the call (the default, ``persistent_workers=False``)
        see it.
        """
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int | Sequence[int]) -> Any:
        if isinstance(index, torch.Tensor):
            index = int(index) if index.ndim == 0 else index.tolist()
        if isinstance(index, (Sequence, np.ndarray)):
            return to_tensors(self.dataset.read_batch(index), "batch")  # refuses str and bytes
        return to_tensors(self.dataset[index])

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """The samples ``indices``, read as one batch (what ``DataLoader(batch_size=...)`` asks for).

        Returns one dict per sample, views of the batch's tensors, which
        ``default_collate`` stacks.
        """
        batch = to_tensors(self.dataset.read_batch(list(indices)), "batch")
        return [{key: value[j] for key, value in batch.items()} for j in range(len(indices))]


class PatchIterableDataset(torch.utils.data.IterableDataset):
    """Iterable torch dataset: one epoch of the core's order, sharded and resumable.

    Each ``iter()`` yields this process's share of one epoch: the DDP rank
    comes from ``torch.distributed`` (when initialised) and the worker from
    ``torch.utils.data.get_worker_info()``, so a plain ``DataLoader`` needs
    no ``worker_init_fn`` and no ``DistributedSampler``.

    Parameters
    ----------
    dataset : zarrsample_core.PatchDataset
        The patches, their shuffling and seed.
    epoch : int, default 0
        Epoch to iterate first; change with :meth:`set_epoch`.
    drop_remainder : bool, default False
        Equal counts per rank by dropping the epoch's last ``len(dataset) %
        world_size`` patches (True) or by repeating its first ones (False).
    rank, world_size : int, optional
        Override the ``torch.distributed`` discovery (both or neither), e.g.
        to shard by hand or in tests.
    batch_size : int, optional
        Yield batches of this many consecutive samples of each worker's
        share (dicts of ``(B, ...)`` tensors read by the core's
        ``EpochIterator.batches`` straight into one array per modality)
        instead of single samples: use with ``DataLoader(ds,
        batch_size=None)``. The order is the same.
    drop_last : bool, default False
        With ``batch_size``: leave out each worker's last, short batch.

    Raises
    ------
    TypeError, ZarrsampleError
        A parameter of the wrong type or out of range (the message names it).

    Notes
    -----
    **Samples** are dicts of tensors (``torch.from_numpy``, no copy) with
    the source dtype: bool, uint8, int8, int16, int32, int64, float16,
    float32, float64, complex64/128, and uint16, uint32, uint64 as torch's
    unsigned types, which ``default_collate`` stacks but on which torch has
    few arithmetic kernels (call ``.float()`` or ``.to(torch.int32)`` first).
    Numbers (``"image_index"``) become 0-d tensors, so ``default_collate``
    batches every key.

    **Workers** split the rank's share in ``num_workers`` contiguous parts,
    so with ``num_workers > 0`` the loader interleaves them; every rank
    yields the same count. ``len()`` is this rank's count per epoch (with
    ``batch_size`` and workers, each worker's last batch may be short, so
    a loader can yield a few batches more than ``len(loader)``).

    **Epochs**: call :meth:`set_epoch` before each epoch (as with
    ``DistributedSampler``). The epoch lives in shared memory, so it also
    reaches ``persistent_workers``.

    **Resuming**: :meth:`state_dict` / :meth:`load_state_dict` follow the
    protocol of ``torchdata.stateful_dataloader.StatefulDataLoader``, which
    keeps one state per worker and hands each back to its worker: checkpoint
    ``loader.state_dict()`` and the epoch; to resume, call
    :meth:`set_epoch` with that epoch and ``loader.load_state_dict(...)``
    (a state saved at the end of an epoch also resumes with the next one).
    Without torchdata, resuming works with ``num_workers=0``: save
    ``dataset.state_dict()``, restore with ``dataset.load_state_dict``. A
    state is checked when iteration starts; one from another dataset,
    epoch, rank or worker layout raises ``ZarrsampleError`` naming what
    differs.

    **Start methods**: the default ``fork`` suits the zarr backend. With
    ``backend="tensorstore"`` use ``DataLoader(...,
    multiprocessing_context="forkserver")`` (or ``"spawn"``): tensorstore
    cannot run in a child forked after the parent read through it, which
    the core reports as an error. Such workers import torch each (about
    1 s); ``multiprocessing.get_context("forkserver").set_forkserver_preload(
    ["torch", "zarrsample_core"])`` before the first loader makes that a
    one-time cost, and ``persistent_workers=True`` starts them once. The
    rank is then found in the parent, as spawned workers do not see its
    process group.

    Examples
    --------
    >>> import numpy as np
    >>> from torch.utils.data import DataLoader
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> image = open_image(np.arange(64, dtype=np.uint8).reshape(8, 8), axes="YX")
    >>> core = PatchDataset(ImageCollection({"images": image}, spatial_axes="YX"),
    ...                     PatchSampler(4, spatial_axes="YX"), shuffle=True, seed=0)
    >>> ds = PatchIterableDataset(core, world_size=2, rank=1)
    >>> [tuple(batch["images"].shape) for batch in DataLoader(ds, batch_size=2)]
    [(2, 4, 4)]
    >>> ds.set_epoch(1); len(ds)
    2
    """

    def __init__(
        self,
        dataset: PatchDataset,
        *,
        epoch: int = 0,
        drop_remainder: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        self.dataset = check_dataset(dataset)
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size", 1)
        if not isinstance(drop_last, bool):
            raise TypeError(f"drop_last must be a bool, got {drop_last!r}")
        self.drop_last = drop_last
        if not isinstance(drop_remainder, bool):
            raise TypeError(f"drop_remainder must be a bool, got {drop_remainder!r}")
        self.drop_remainder = drop_remainder
        if (rank is None) != (world_size is None):
            raise ZarrsampleError(
                f"rank and world_size must be given together or not at all, got rank={rank!r}, "
                f"world_size={world_size!r}"
            )
        if world_size is not None:
            world_size = check_int(world_size, "world_size", 1)
            rank = check_int(rank, "rank", 0)
            if rank >= world_size:
                raise ZarrsampleError(f"rank must be < world_size={world_size}, got {rank}")
        self._rank, self._world_size = rank, world_size
        self._parent_group: tuple[int, int] | None = None  # set when pickled for a worker
        self._epoch = torch.tensor(check_int(epoch, "epoch", 0), dtype=torch.int64).share_memory_()
        self._pending: dict[str, int] | None = None
        self._iterator: EpochIterator | None = None
        self._live: weakref.ref | None = None

    def __repr__(self) -> str:
        return f"PatchIterableDataset({self.dataset!r}, epoch={self.epoch}, drop_remainder={self.drop_remainder})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_iterator"] = state["_live"] = None
        if self._rank is None:  # spawned workers do not see the parent's process group
            state["_parent_group"] = self._group()
        return state

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` yields."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` (in this process and in workers) yield ``epoch``.

        Raises
        ------
        TypeError, ZarrsampleError
            ``epoch`` is not an int >= 0.
        RuntimeError
            An iterator over this dataset is alive in this process and not
            exhausted: an epoch cannot change while it is being iterated.
        """
        epoch = check_int(epoch, "epoch", 0)
        live = self._live() if self._live is not None else None
        if live is not None and self._iterator is not None and self._iterator.position < len(self._iterator):
            raise RuntimeError(
                f"set_epoch({epoch}) called while epoch {self._iterator.epoch} is being iterated "
                f"({self._iterator.position} of {len(self._iterator)} samples delivered); call set_epoch "
                "between epochs, or delete the unfinished iterator first"
            )
        self._epoch.fill_(epoch)
        self._iterator = self._live = None

    def _group(self) -> tuple[int, int]:
        if self._rank is not None and self._world_size is not None:
            return self._rank, self._world_size
        return self._parent_group if self._parent_group is not None else _distributed()

    def _shard(self, epoch: int | None, state: Mapping[str, int] | None = None) -> EpochIterator:
        """The core's iterator over this rank's and this worker's part of ``epoch``."""
        rank, world_size = self._group()
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.dataset.epoch(
            epoch, rank=rank, world_size=world_size, worker=worker, num_workers=num_workers,
            drop_remainder=self.drop_remainder, state=state,
        )

    def __len__(self) -> int:
        """Samples (batches, with ``batch_size``) this rank yields per epoch.

        With ``batch_size`` and ``num_workers > 1`` each worker batches its
        own share, so the loader may yield a few short batches more (or,
        with ``drop_last``, fewer) than this count, made for one worker.
        """
        rank, world_size = self._group()
        n = self.dataset.epoch_length(
            rank=rank, world_size=world_size, drop_remainder=self.drop_remainder, epoch=self.epoch
        )
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        state, self._pending = self._pending, None
        epoch = self.epoch
        iterator = self._shard(epoch, state)
        if self.batch_size is None:
            samples = (to_tensors(sample) for sample in iterator)
        else:
            batches = iterator.batches(self.batch_size, drop_last=self.drop_last)
            samples = (to_tensors(batch, "batch") for batch in batches)
        self._iterator, self._live = iterator, weakref.ref(samples)
        return samples

    def state_dict(self) -> dict[str, int]:
        """Where this process's share of the epoch stands: a small dict of ints.

        The state of the latest iterator, or the state loaded and not yet
        used, or the start of the current epoch. In a DataLoader worker it
        describes that worker's part (torchdata saves one per worker).
        """
        if self._iterator is not None:
            return self._iterator.state()
        if self._pending is not None:
            return dict(self._pending)
        return self._shard(self.epoch).state()

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        """Resume from ``state_dict`` at the next ``iter()`` (checked there).

        ``iter()`` then raises ``ZarrsampleError`` if the state comes from
        another configuration (the message names what differs), or if it
        stopped inside an epoch other than :attr:`epoch`. A state saved at
        the end of an epoch lets any epoch start from its beginning.

        Raises
        ------
        TypeError
            ``state_dict`` is not a mapping.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of str to int, got {type(state_dict).__name__}")
        self._pending = dict(state_dict)
        self._iterator = self._live = None
