"""PatchDataset: plans, epoch order and the chunk-cached reader, framework-free."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any, Literal

import numpy as np

from .._checks import check_int
from .._errors import ZarrsampleError
from ..planning._plan import PatchPlan
from ..reading._context import WindowSize, check_collection_window
from ..reading._faults import OnError, SkipLog, check_on_error
from ..reading._reader import PatchReader
from ..reading._source_checks import check_sources
from ..sources._collection import ImageCollection
from ..sources._validate import recorded_metadata
from ._access import SampleAccess
from ._epoch import EpochIterator
from ._order import epoch_order, shard, shard_length
from ._state import config_fingerprint, resume_point
from ._views import EpochPlans, EpochViews, plan_digest

__all__ = ["PatchDataset", "check_dataset"]

Sample = dict[str, Any]


class PatchDataset(SampleAccess):
    """Patches of one or many images: random access and sharded epochs.

    Parameters
    ----------
    collections : ImageCollection or sequence of ImageCollection
        The images (with masks, labels, ...) to sample.
    sampler : PatchSampler, optional
        Plans the patches of each collection; None gives one sample per
        whole image. A sampler whose positions change every epoch
        (``per_epoch``, e.g. :class:`RandomPatchSampler`) is asked for each
        epoch's plans (:meth:`set_epoch` for ``ds[i]``; :meth:`epoch`
        iterators use their own epoch's).
    shuffle : bool
        Shuffle each epoch (seeded by ``seed`` and the epoch number).
    seed : int
        Seed of the epoch orders.
    draw_same_chunk : bool
        With ``shuffle``: chunks in random order, each finished before the
        next (each storage chunk read once per epoch per worker).
    shuffle_window : int or None
        With ``shuffle`` and not ``draw_same_chunk``: patches of this many
        consecutive chunks (in shuffled chunk order) are interleaved, so the
        cache needs only that many chunks; None shuffles all patches at once.
    return_positions : bool
        Add ``"position"`` ((D, 2) int64 ``[start, stop)`` per spatial axis,
        pad included, reference pixels) and ``"image_index"`` to samples;
        and ``"<name>_position"`` for each modality in ``window``: its
        window's ``[start, stop)`` in its own pixels ((D, 2) int64,
        ``[0, 1)`` on an axis it lacks).
    padding_mode, pad_value, output_axes, cache_bytes
        As for :class:`PatchReader`.
    window : dict, optional
        Context windows, as for :class:`PatchReader`: ``{"context": 256}``
        reads modality ``"context"`` (e.g. a coarser level of the slide) as
        256 of its own pixels per spatial axis, centred on each patch.
    transform : callable, optional
        Applied to every sample dict (augmentation hook).
    prefetch : int
        Most patches whose storage chunks an epoch iterator loads ahead
        (0: off). The read-ahead never holds more chunk bytes than
        ``cache_bytes``: chunks it loaded are kept until their patches are
        read, so a sequential or ``draw_same_chunk`` epoch loads each chunk
        once whenever the cache holds one patch's chunks and the next run.
    read_threads : int
        Threads that load chunks ahead (decoding releases the GIL, so it
        overlaps with assembling patches and with the consumer's work).
    plans : sequence of PatchPlan, optional
        Precomputed plans (one per collection) instead of planning.
    on_error : {"raise", "skip", "retry"}
        What a storage chunk that cannot be read or decoded does.
        ``"raise"``: :class:`..reading._faults.ChunkReadError` (naming image, array
        path, chunk and patch window) at once. ``"retry"``: transient I/O
        errors (connection reset/refused, timeouts, HTTP 5xx) are retried
        ``retries`` times with exponential ``backoff``, then raised; decode
        errors are raised at once. ``"skip"``: retried likewise, then the
        patch is replaced by the next readable patch in plan order (see
        Notes).
    retries, backoff : int, float
        Retries of a transient error and the first wait in seconds (doubled
        each retry, deterministic jitter); unused with ``on_error="raise"``.
    check_sources : bool
        Re-read each image's metadata at every :meth:`epoch` call (one small
        read per image) and refuse to go on if its shape, dtype or chunks
        changed since it was opened.

    Raises
    ------
    TypeError, ZarrsampleError
        Bad parameter types or values; the message names the parameter
        (``window`` also when it names a modality a collection does not
        return, or sizes that do not fit the plans' spatial axes).
    ZarrsampleError
        ``collections`` is empty, or no patch was planned in any of them
        (a ``ValueError``, as zarrdataset raises for an empty dataset).

    Notes
    -----
    A sample is a dict with one array per modality except ``"masks"``.
    ``ds[i]`` is the i-th patch of the unshuffled plan (image by image,
    chunk by chunk). Memory: the plans (``8 * (D + 1)`` bytes per patch) plus
    the reader's chunk cache.

    With ``on_error="skip"`` every read path (epoch iterators, ``ds[i]`` as
    used by the torch map-style, TensorFlow and Grain adapters) returns, for
    an unreadable patch ``i``, the first readable patch of ``i+1, i+2, ...``
    (plan order, wrapping): deterministic given which patches are
    unreadable, and epochs and shards keep their lengths. ``stats()``
    counts ``skipped_patches`` (reads served by a replacement) and
    ``unreadable_patches``; the first failure of each image logs one
    warning on the ``"zarrsample"`` logger. Unreadable patches are
    remembered (not read again) until the next :meth:`epoch` call. Each
    process (DataLoader worker) keeps its own counters.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> coll = ImageCollection({"images": open_image(np.arange(64).reshape(8, 8), axes="YX")},
    ...                        spatial_axes="YX")
    >>> ds = PatchDataset(coll, PatchSampler(4, spatial_axes="YX"), shuffle=True, seed=1)
    >>> len(ds), ds[0]["images"].shape
    (4, (4, 4))
    >>> it = ds.epoch(0, world_size=2, rank=1)
    >>> first = next(it)["images"]; state = it.state()
    >>> rest = [s["images"] for s in ds.epoch(world_size=2, rank=1, state=state)]
    >>> len(rest)
    1
    """

    def __init__(
        self,
        collections: ImageCollection | Sequence[ImageCollection],
        sampler: Any = None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        draw_same_chunk: bool = False,
        shuffle_window: int | None = 8,
        return_positions: bool = False,
        padding_mode: Literal["constant", "reflect", "edge", "symmetric", "wrap"] = "constant",
        pad_value: int | float = 0,
        transform: Callable[[Sample], Any] | None = None,
        output_axes: Mapping[str, str] | None = None,
        cache_bytes: int = 256 * 2**20,
        prefetch: int = 256,
        read_threads: int = 3,
        plans: Sequence[PatchPlan] | None = None,
        on_error: OnError = "raise",
        retries: int = 3,
        backoff: float = 0.05,
        check_sources: bool = True,
        window: Mapping[str, WindowSize] | None = None,
    ) -> None:
        if isinstance(collections, ImageCollection):
            collections = [collections]
        if not isinstance(collections, Sequence) or not all(isinstance(c, ImageCollection) for c in collections):
            raise TypeError("collections must be an ImageCollection or a non-empty sequence of them")
        if not collections:
            raise ZarrsampleError("collections is empty: a PatchDataset needs at least one ImageCollection")
        for name, flag in (("shuffle", shuffle), ("draw_same_chunk", draw_same_chunk),
                           ("return_positions", return_positions)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {transform!r}")
        if shuffle_window is not None:
            check_int(shuffle_window, "shuffle_window", 1)
        self.collections = list(collections)
        self.sampler = sampler
        self.shuffle, self.seed = shuffle, check_int(seed, "seed")
        self.draw_same_chunk, self.shuffle_window = draw_same_chunk, shuffle_window
        self.return_positions, self.transform = return_positions, transform
        self.prefetch = check_int(prefetch, "prefetch")
        self.on_error = check_on_error(on_error)
        if not isinstance(check_sources, bool):
            raise TypeError(f"check_sources must be a bool, got {check_sources!r}")
        self.check_sources = check_sources
        self.reader = PatchReader(
            padding_mode=padding_mode, pad_value=pad_value, output_axes=output_axes,
            cache_bytes=cache_bytes, prefetch_workers=check_int(read_threads, "read_threads"),
            retries=0 if on_error == "raise" else check_int(retries, "retries"), backoff=backoff,
            remember_failures=on_error == "skip", window=window,
        )
        self._skip = SkipLog()
        self._recorded = [
            (f"collection {i} modality {k!r}", c[k], recorded_metadata(c[k]))
            for i, c in enumerate(self.collections) for k in c
        ]
        self._views = EpochViews(self.collections, sampler, plans)
        #: Whether the positions change every epoch (the sampler's ``per_epoch``).
        self.per_epoch = self._views.per_epoch
        self._view = self._views[0]
        for k, (coll, plan) in enumerate(zip(self.collections, self._view.plans)):
            check_collection_window(
                coll, self.reader.window, plan.spatial_axes, f"collection {k}", positions=return_positions
            )
        if not len(self._view):
            raise ZarrsampleError(
                f"the dataset is empty: no patch was planned in any of its {len(self.collections)} image(s) (the "
                f"first is {self.collections[0].reference.name}, with {self.sampler!r}); check the mask, min_area, "
                "and patch_size against the image shape"
            )
        self._fingerprint = config_fingerprint(
            # Per-epoch samplers: their settings, and epoch 0's plans (which see the masks).
            plans=((repr(sampler),) if self.per_epoch else ()) + tuple(plan_digest(p) for p in self._view.plans),
            images=tuple(
                (k, tuple(c[k].shape), str(c[k].dtype), c[k].axes) for c in self.collections for k in c
            ),
            shuffle=shuffle, draw_same_chunk=draw_same_chunk, window=shuffle_window,
            **({"context_window": self.reader.window} if self.reader.window else {}),
        )

    def _epoch_view(self, epoch: int) -> EpochPlans:
        """The plans of ``epoch`` (the same for every epoch unless ``per_epoch``)."""
        return self._views[epoch]

    @property
    def plans(self) -> list[PatchPlan]:
        """The plan of each collection (of the current epoch, see :meth:`set_epoch`)."""
        return list(self._view.plans)

    @property
    def current_epoch(self) -> int:
        """The epoch whose plans ``ds[i]`` and ``len(ds)`` use (0 until :meth:`set_epoch`)."""
        return max(0, self._view.epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make ``ds[i]``, :meth:`read_batch` and ``len(ds)`` use the plans of ``epoch``.

        Only matters for samplers whose positions change every epoch
        (``per_epoch``); :meth:`epoch` iterators always use their own
        epoch's plans.

        Raises
        ------
        TypeError, ZarrsampleError
            ``epoch`` is not an int >= 0.
        """
        self._view = self._epoch_view(check_int(epoch, "epoch", 0))

    def patches_in_epoch(self, epoch: int | None = None) -> int:
        """Patches of ``epoch`` over all images (default: the current epoch; ``len(ds)``)."""
        return len(self._view if epoch is None else self._epoch_view(check_int(epoch, "epoch", 0)))

    def __repr__(self) -> str:
        return (
            f"PatchDataset({len(self.collections)} images, {len(self)} patches, shuffle={self.shuffle}, "
            f"seed={self.seed}, draw_same_chunk={self.draw_same_chunk}, "
            f"shuffle_window={self.shuffle_window})"
        )

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, bool) or not isinstance(index, Integral):
            raise TypeError(f"index must be an int, got {index!r}")
        n = len(self)
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} is out of range for a dataset of {n} patches")
        return self._sample(i)

    @property
    def fingerprint(self) -> int:
        """63-bit fingerprint of plans, images, order options and ``window`` (checked when restoring a state)."""
        return self._fingerprint

    def epoch_length(
        self, *, rank: int = 0, world_size: int = 1, worker: int = 0, num_workers: int = 1,
        drop_remainder: bool = False, epoch: int | None = None,
    ) -> int:
        """Samples one shard delivers per epoch (what ``len(ds.epoch(epoch, ...))`` gives).

        ``epoch`` matters only for samplers whose patch count changes per
        epoch (default: the current epoch, see :meth:`set_epoch`).
        """
        return shard_length(
            self.patches_in_epoch(epoch), rank=rank, world_size=world_size, worker=worker, num_workers=num_workers,
            drop_remainder=drop_remainder,
        )

    def order(self, epoch: int = 0, *, seed: int | None = None, shuffle: bool | None = None) -> np.ndarray:
        """The whole epoch's patch order (before sharding), ``(len(self),)`` int64.

        ``seed`` and ``shuffle`` override the dataset's own (for adapters
        whose API takes them).
        """
        return epoch_order(
            self._epoch_view(check_int(epoch, "epoch")).chunk_sizes,
            seed=self.seed if seed is None else check_int(seed, "seed"),
            epoch=check_int(epoch, "epoch"),
            shuffle=self.shuffle if shuffle is None else shuffle,
            draw_same_chunk=self.draw_same_chunk,
            shuffle_window=self.shuffle_window,
        )

    def epoch(
        self,
        epoch: int | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
        drop_remainder: bool = False,
        state: Mapping[str, int] | None = None,
    ) -> EpochIterator:
        """An iterator over this shard's samples of one epoch.

        Parameters
        ----------
        epoch : int, optional
            Epoch number (default 0, or the epoch saved in ``state``).
        rank, world_size : int
            This process's place among the data-parallel ranks.
        worker, num_workers : int
            This reader's place among the rank's loader workers.
        drop_remainder : bool
            Equal counts per rank by dropping the tail of the epoch order
            (True) or by repeating patches from its start (False).
        state : dict, optional
            An ``iterator.state()`` to resume from. A state saved at the end
            of an epoch lets another ``epoch`` start from its beginning.

        Raises
        ------
        ZarrsampleError
            ``state`` comes from another configuration (the message names
            what differs), or ``epoch`` disagrees with it; an image changed
            on storage since it was opened (``check_sources``).
        """
        if self.check_sources:
            check_sources(self._recorded, self.reader.retry.call)
        self._skip.reset()
        self.reader.forget_failures()
        config = dict(
            world_size=check_int(world_size, "world_size", 1), rank=check_int(rank, "rank"),
            num_workers=check_int(num_workers, "num_workers", 1), worker=check_int(worker, "worker"),
            drop_remainder=int(drop_remainder), seed=self.seed, n_patches=len(self),
            shuffle=int(self.shuffle), fingerprint=self._fingerprint,
        )
        # The patch count of the epoch the state was saved in, then of the one to read.
        config["n_patches"] = self.patches_in_epoch(self._views.saved_epoch(state, epoch))
        epoch, position = resume_point(state, epoch, config, drop_remainder=drop_remainder)
        view = self._epoch_view(epoch)
        config["n_patches"] = len(view)
        indices = shard(
            self.order(epoch), rank=config["rank"], world_size=config["world_size"],
            worker=config["worker"], num_workers=config["num_workers"], drop_remainder=drop_remainder,
        )
        if position > len(indices):
            raise ZarrsampleError(f"state position {position} is past this shard's {len(indices)} patches")
        return EpochIterator(self, indices, epoch=epoch, position=position, config=config, view=view)


def check_dataset(dataset: object) -> PatchDataset:
    """``dataset`` if it is a :class:`PatchDataset` (what adapters wrap), else a TypeError."""
    if not isinstance(dataset, PatchDataset):
        raise TypeError(f"dataset must be a zarrsample_core.PatchDataset, got {type(dataset).__name__}")
    return dataset
