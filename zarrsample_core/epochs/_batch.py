"""Batches: many samples read into one preallocated array per modality.

A batch is what stacking the single samples of the same indices gives (a
dict of ``(B, ...)`` arrays, positions, context windows' included, as
``(B, D, 2)``), built without the per-sample arrays: each patch is copied
from the cached chunks straight into its slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from numbers import Number
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._errors import ZarrsampleError
from ..reading._context import window_positions
from ..reading._faults import SkipLog
from ..sources._buffers import aligned_empty

if TYPE_CHECKING:
    from ..reading._reader import PatchReader
    from ..sources._collection import ImageCollection
    from ._views import EpochPlans

__all__ = ["BatchSource", "batch_indices", "read_batch", "stack_samples"]


class BatchSource(Protocol):
    """What :func:`read_batch` reads from: a :class:`~zarrsample_core.PatchDataset`."""

    reader: PatchReader
    collections: list[ImageCollection]
    transform: Any
    return_positions: bool
    on_error: str
    _skip: SkipLog

    def __len__(self) -> int: ...

    def _window(self, i: int, view: EpochPlans | None = None) -> tuple[int, Any, np.ndarray, np.ndarray]: ...

    def _sample(self, i: int, view: EpochPlans | None = None) -> Any: ...

    def _image_of(self, i: int, view: EpochPlans | None = None) -> int: ...


def batch_indices(indices: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """``indices`` as a 1-D int64 array within ``[-n, n)``, negatives wrapped.

    Raises
    ------
    TypeError
        Not a sequence of ints.
    ZarrsampleError
        Empty, not 1-D.
    IndexError
        An index out of range.
    """
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise TypeError(f"indices must be a sequence of ints, got {type(indices).__name__}")
    array = np.asarray(indices)
    if array.size and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"indices must be ints, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ZarrsampleError(f"indices must be a non-empty 1-D sequence, got shape {array.shape}")
    array = array.astype(np.int64)
    bad = (array < -n) | (array >= n)
    if bad.any():
        raise IndexError(f"index {int(array[bad][0])} is out of range for a dataset of {n} patches")
    return np.where(array < 0, array + n, array)


def stack_samples(samples: Sequence[Any]) -> dict[str, np.ndarray]:
    """Stack sample dicts key by key (what a batch of ``transform``ed samples is).

    Raises
    ------
    TypeError
        A sample is not a dict of arrays and numbers.
    ZarrsampleError
        Samples with other keys or shapes than the first.
    """
    first = samples[0]
    if not isinstance(first, Mapping):
        raise TypeError(
            f"batches need samples that are dicts of arrays, but transform returned {type(first).__name__}; "
            "batch its results yourself or read single samples"
        )
    out: dict[str, np.ndarray] = {}
    for key in first:
        values: list[np.ndarray] = []
        for sample in samples:
            if not isinstance(sample, Mapping) or key not in sample:
                raise ZarrsampleError(f"samples of one batch must have the same keys; one lacks {key!r}")
            value = sample[key]
            if not isinstance(value, (np.ndarray, np.generic, Number)):
                raise TypeError(f"sample[{key!r}] is a {type(value).__name__}; batches stack arrays and numbers")
            values.append(np.asarray(value))
        try:
            out[key] = np.stack(values)
        except ValueError as exc:
            shapes = sorted({np.shape(v) for v in values})
            raise ZarrsampleError(
                f"samples of one batch must have one shape per key; {key!r} has shapes {shapes}"
            ) from exc
    return out


def read_batch(dataset: BatchSource, indices: np.ndarray, view: EpochPlans | None = None) -> dict[str, np.ndarray]:
    """The samples ``indices`` (valid, non-empty) of ``dataset`` as one batch (of the plans of ``view``)."""
    if dataset.transform is not None:
        return stack_samples([dataset._sample(int(i), view) for i in indices])
    size = len(indices)
    k, plan, start, stop = dataset._window(int(indices[0]), view)
    shapes = dataset.reader.output_shapes(dataset.collections[k], start, stop, spatial_axes=plan.spatial_axes)
    out = {name: aligned_empty((size, *shape), dtype) for name, (shape, dtype) in shapes.items()}
    window = dataset.reader.window if dataset.return_positions else {}
    if dataset.return_positions:
        out["position"] = np.empty((size, len(start), 2), np.int64)
        out["image_index"] = np.empty(size, np.int64)
        out.update({f"{name}_position": np.empty((size, len(start), 2), np.int64) for name in window})
    names = list(shapes)

    def read_slot(i: int, j: int) -> None:
        k, plan, start, stop = dataset._window(i, view)
        slot = {name: out[name][j] for name in names}
        dataset.reader.read_into(
            dataset.collections[k], start, stop, slot, spatial_axes=plan.spatial_axes, key=k
        )
        if dataset.return_positions:
            out["position"][j, :, 0], out["position"][j, :, 1] = start, stop
            out["image_index"][j] = k
            found = window_positions(dataset.collections[k], start, stop, plan.spatial_axes, window)
            for key, value in found.items():
                out[key][j] = value

    n = len(dataset) if view is None else len(view)
    image_of = partial(dataset._image_of, view=view)
    for j, i in enumerate(indices.tolist()):
        if dataset.on_error == "skip":
            dataset._skip.sample(i, n, partial(read_slot, j=j), image_of)
        else:
            read_slot(i, j)
    return out
