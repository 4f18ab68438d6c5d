"""The shape and dtype of every entry of a sample, known before reading.

Framework adapters need them up front (a ``tf.data`` output signature, a
Grain element spec, a jitted step's input shapes). They follow from the
plans alone: a patch window is ``patch_size + 2 * pad`` reference pixels on
every spatial axis, each modality sees it through its window map
(:meth:`ImageCollection.window_maps`, the reader's) or, when the reader's
``window`` names it, as a window of its own size; other axes are read
whole, and ``output_axes`` orders the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ZarrsampleError
from ..reading._context import WindowSize, check_window_names, modality_window
from ..reading._windows import ordered_shape, returned_modalities

__all__ = ["sample_spec"]

#: ``{entry: (shape, dtype)}``; ``None`` marks a size that varies between patches.
SampleSpec = dict[str, tuple[tuple[int | None, ...], np.dtype]]


def _modality_shape(
    collection: Any, name: str, plan: Any, output_axes: Mapping[str, str], size: WindowSize | None
) -> tuple[int, ...]:
    """Shape of modality ``name`` in every sample of ``plan`` (what the reader allocates)."""
    image = collection[name]
    axes = plan.spatial_axes
    window = [p + 2 * q for p, q in zip(plan.patch_size, plan.pad)]
    scaled = modality_window(collection, name, [0] * len(axes), window, axes, size)
    sizes = {a: scaled[a][1] if a in scaled else int(m) for a, m in zip(image.axes, image.shape)}
    return ordered_shape(name, image.axes, sizes, output_axes)


def _collection_spec(dataset: Any, k: int) -> SampleSpec:
    collection, plan = dataset.collections[k], dataset.plans[k]
    output_axes, window = dataset.reader.output_axes, dataset.reader.window
    names = returned_modalities(collection, output_axes, f"collection {k}")
    check_window_names(window, names, f"collection {k}", collection.mask_name)
    spec: SampleSpec = {
        name: (
            _modality_shape(collection, name, plan, output_axes, window.get(name)),
            np.dtype(collection[name].dtype),
        )
        for name in names
    }
    if dataset.return_positions:
        d = len(plan.spatial_axes)
        spec["position"] = ((d, 2), np.dtype(np.int64))
        spec["image_index"] = ((), np.dtype(np.int64))
        spec.update({f"{name}_position": ((d, 2), np.dtype(np.int64)) for name in window})
    return spec


def _merge(spec: SampleSpec, other: SampleSpec, k: int) -> SampleSpec:
    """``spec`` with the sizes that differ in ``other`` (collection ``k``) set to None."""
    if list(other) != list(spec):
        raise ZarrsampleError(
            f"every collection must give samples with the same entries; collection {k} gives "
            f"{list(other)}, an earlier one {list(spec)}"
        )
    merged: SampleSpec = {}
    for key, (shape, dtype) in spec.items():
        other_shape, other_dtype = other[key]
        if other_dtype != dtype:
            raise ZarrsampleError(
                f"entry {key!r} must have one dtype in every collection, got {dtype} in an earlier "
                f"collection and {other_dtype} in collection {k}"
            )
        if len(other_shape) != len(shape):
            raise ZarrsampleError(
                f"entry {key!r} must have the same number of axes in every collection, got shape "
                f"{shape} in an earlier collection and {other_shape} in collection {k} "
                f"(set output_axes to give them one axis order)"
            )
        merged[key] = (tuple(a if a == b else None for a, b in zip(shape, other_shape)), dtype)
    return merged


def sample_spec(dataset: Any) -> SampleSpec:
    """Shape and dtype of every entry of a dataset's samples, without reading pixels.

    Parameters
    ----------
    dataset : PatchDataset
        The dataset whose ``dataset[i]`` samples are described.

    Returns
    -------
    dict of str to (tuple of int or None, numpy.dtype)
        One entry per sample key, in the order of a sample's keys: every
        modality except the mask (its dtype; its shape in the modality's own
        axis order or ``output_axes``), then ``"position"`` (``(D, 2)``
        int64), ``"image_index"`` (``()`` int64) and, for each modality
        named in ``window``, ``"<name>_position"`` (``(D, 2)`` int64) when
        the dataset has ``return_positions``. A size is None only where
        patches of the dataset really differ (e.g. ``sampler=None`` over
        images of different sizes); collections without patches are
        ignored, unless no collection has any.

    Raises
    ------
    TypeError
        ``dataset`` is not a ``PatchDataset``.
    ZarrsampleError
        ``dataset.transform`` is set (what it returns is unknown); or the
        collections disagree on the entries, a dtype or an entry's number of
        axes (the message names the entry and the collection); or
        ``output_axes`` drops an axis longer than 1 or ``output_axes`` or
        ``window`` names a modality that a collection does not return (as
        :meth:`PatchReader.read` would).

    Notes
    -----
    O(collections x modalities) integer arithmetic; no I/O. The shapes are
    those :meth:`PatchReader.read` allocates: on a spatial axis where the
    reference has extent ``n`` and the modality ``m``, a window of ``w``
    reference pixels is ``max(1, round_half_up(w * m / n))`` modality
    pixels, the same for every patch of a collection.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    >>> coll = ImageCollection({
    ...     "images": open_image(np.zeros((3, 64, 64), np.uint16), axes="CYX"),
    ...     "labels": open_image(np.zeros((32, 32), np.uint8), axes="YX"),
    ... }, spatial_axes="YX")
    >>> ds = PatchDataset(coll, PatchSampler(16, pad=2, spatial_axes="YX"), return_positions=True)
    >>> for key, (shape, dtype) in sample_spec(ds).items():
    ...     print(key, shape, dtype)
    images (3, 20, 20) uint16
    labels (10, 10) uint8
    position (2, 2) int64
    image_index () int64
    >>> ds[0]["labels"].shape
    (10, 10)
    """
    if not all(hasattr(dataset, a) for a in ("plans", "collections", "reader", "transform")):
        raise TypeError(f"dataset must be a zarrsample_core.PatchDataset, got {type(dataset).__name__}")
    if dataset.transform is not None:
        raise ZarrsampleError(
            f"sample_spec cannot know what transform={dataset.transform!r} returns; describe the "
            "transformed samples yourself (e.g. an adapter's output_signature)"
        )
    used = [k for k, plan in enumerate(dataset.plans) if len(plan)] or list(range(len(dataset.plans)))
    spec = _collection_spec(dataset, used[0])
    for k in used[1:]:
        spec = _merge(spec, _collection_spec(dataset, k), k)
    return spec
