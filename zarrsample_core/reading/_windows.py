"""The windows of a patch per modality: what to read, and where it lands in the output.

Pure functions over a collection and a reference window; the
:class:`._reader.PatchReader` reads what they describe, and
:func:`fill_window` copies a window out of the cached chunks into its output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ZarrsampleError
from ._cache import ChunkCache
from ._chunk_reads import Source, assemble
from ._context import WindowSize, check_window_names, modality_window
from ._faults import RetryPolicy
from ._padding import read_range
from ._reader_checks import check_spatial_axes, check_window_vector

if TYPE_CHECKING:
    from ..sources._collection import ImageCollection

__all__ = [
    "fill_window", "image_view", "ordered_shape", "output_shape", "returned_modalities", "window_sources",
]


def window_sources(
    collection: ImageCollection, start: Any, stop: Any, spatial_axes: str, key: Any, *,
    padding_mode: str, output_axes: Mapping[str, str], window: Mapping[str, WindowSize] | None = None,
) -> Iterator[Source]:
    """One :class:`Source` per modality (mask excluded) for the reference window ``[start, stop)``.

    A modality named in ``window`` reads its own window size, centred on the
    patch (:mod:`._context`); the others the patch window mapped through
    their placement.
    """
    spatial_axes = check_spatial_axes(spatial_axes)
    start_v = check_window_vector(start, "start", spatial_axes)
    stop_v = check_window_vector(stop, "stop", spatial_axes)
    bad = [a for a, s, e in zip(spatial_axes, start_v, stop_v) if e <= s]
    if bad:
        raise ZarrsampleError(
            f"stop must be > start on every axis, got start={start_v} stop={stop_v} "
            f"(empty on axes {bad})"
        )
    names = returned_modalities(collection, output_axes)
    window = window or {}
    if window:
        check_window_names(window, names, "the collection", collection.mask_name)
    patch = (tuple(start_v), tuple(stop_v))
    for name in names:
        image = collection[name]
        scaled = modality_window(collection, name, start_v, stop_v, spatial_axes, window.get(name))
        per_axis = [scaled.get(a, (0, m)) for a, m in zip(image.axes, image.shape)]
        ranges = [read_range(w0, size, m, padding_mode) for (w0, size), m in zip(per_axis, image.shape)]
        lo, hi, dst, gathers, padded = zip(*ranges)
        sizes = tuple(size for _, size in per_axis)
        identity = (image.name, getattr(image, "level", 0), tuple(image.origin), tuple(image.shape))
        yield Source(
            name, image, (key, name, identity), sizes, lo, hi, dst, gathers, any(padded), patch,
            spatial_axes,
        )


def returned_modalities(
    collection: ImageCollection, output_axes: Mapping[str, str], who: str = "the collection"
) -> list[str]:
    """The modalities a read returns (all but the mask), checking that ``output_axes`` names only them.

    Raises
    ------
    ZarrsampleError
        ``output_axes`` names a modality the read does not return (``who`` names the collection).
    """
    names = [n for n in collection if n != collection.mask_name]
    unknown = sorted(set(output_axes) - set(names))
    if unknown:
        raise ZarrsampleError(
            f"output_axes names modalities {unknown} that {who} does not return; modalities: {names}"
        )
    return names


def output_shape(source: Source, output_axes: Mapping[str, str]) -> tuple[int, ...]:
    """The shape a read of ``source`` returns, in output axis order."""
    return ordered_shape(source.name, source.image.axes, dict(zip(source.image.axes, source.sizes)), output_axes)


def ordered_shape(
    name: str, axes: str, sizes: Mapping[str, int], output_axes: Mapping[str, str]
) -> tuple[int, ...]:
    """Window ``sizes`` (per letter of the modality's ``axes``) in its output axis order.

    Raises
    ------
    ZarrsampleError
        ``output_axes[name]`` drops an axis whose window is longer than 1.
    """
    target = output_axes.get(name, axes)
    wide = {a: s for a, s in sizes.items() if a not in target and s != 1}
    if wide:
        raise ZarrsampleError(
            f"output_axes[{name!r}]={target!r} drops axes whose window is longer "
            f"than 1: {wide} (modality axes {axes!r})"
        )
    return tuple(sizes.get(a, 1) for a in target)


def image_view(source: Source, result: np.ndarray, output_axes: Mapping[str, str]) -> np.ndarray:
    """A view of ``result`` (output axis order) in the image's axis order."""
    axes = source.image.axes
    target = output_axes.get(source.name, axes)
    if target == axes:
        return result
    view = result[tuple(slice(None) if a in axes else 0 for a in target)]
    kept = [a for a in target if a in axes]
    view = view.transpose([kept.index(a) for a in axes if a in kept])
    dropped = [i for i, a in enumerate(axes) if a not in kept]
    return np.expand_dims(view, dropped) if dropped else view


def fill_window(cache: ChunkCache, source: Source, out: np.ndarray, retry: RetryPolicy, fill: Any) -> None:
    """Write the padded window of ``source`` into ``out`` (image-axes order).

    ``fill`` (not None) is first written everywhere: the constant of padded
    positions. Image pixels come from the cached chunks, gathered through
    ``source.maps`` where padding copies pixels.
    """
    if fill is not None:
        out[...] = fill
    if any(h <= lo for lo, h in zip(source.lo, source.hi)):
        return  # entirely outside the image (constant mode)
    if all(m is None for m in source.maps):
        assemble(cache, source, out[source.dst], retry)
        return
    block = np.empty([h - lo for lo, h in zip(source.lo, source.hi)], source.image.dtype)
    assemble(cache, source, block, retry)
    for axis, idx in enumerate(source.maps):
        if idx is not None:
            block = np.take(block, idx, axis=axis)
    out[...] = block
