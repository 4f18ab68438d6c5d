"""Metadata checks made before anything large is allocated.

Array metadata (shape, chunks, dtype), OME-Zarr multiscales (axes count,
levels in decreasing size, scales consistent with shapes), and what a
source's metadata is on storage now (to tell whether it changed since it
was opened). Each check raises a one-line :class:`ZarrsampleError` naming the
source, the rule and the value found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import ZarrsampleError

__all__ = [
    "check_array_metadata",
    "check_multiscale",
    "metadata_error",
    "recorded_metadata",
    "source_changes",
    "stored_metadata",
]

#: Element counts must be indexable with int64.
MAX_ELEMENTS = 2**63 - 1
#: numpy kinds an image may have: bool, signed, unsigned, float, complex.
NUMERIC_KINDS = "biufc"


def metadata_error(where: str, exc: BaseException) -> ZarrsampleError:
    """A one-line error for zarr metadata that zarr itself refused to parse."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return ZarrsampleError(f"invalid zarr metadata in {where}: {text}")


def check_array_metadata(
    shape: Sequence[int], chunks: Sequence[int], dtype: Any, where: str
) -> None:
    """Refuse shapes, chunks and dtypes that cannot describe a readable image.

    Raises
    ------
    ZarrsampleError
        A negative extent, more than ``2**63 - 1`` elements, a chunk size
        < 1, chunks of another dimensionality than the shape, or a dtype that
        is not bool, integer, float or complex.

    Examples
    --------
    >>> check_array_metadata((10**15, 10**15), (16, 16), "uint8", "a.zarr")
    Traceback (most recent call last):
    ...
    zarrsample_core._errors.ZarrsampleError: a.zarr declares shape (1000000000000000, 1000000000000000): 1e+30 elements, more than int64 indexing allows (2**63 - 1); its metadata is corrupt or not an image
    """
    shape, chunks = tuple(int(n) for n in shape), tuple(int(c) for c in chunks)
    if any(n < 0 for n in shape):
        raise ZarrsampleError(f"{where} declares shape {shape}: extents must be >= 0")
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        raise ZarrsampleError(
            f"{where} declares chunks {chunks} for shape {shape}: one chunk size >= 1 per axis is needed"
        )
    elements = math.prod(shape)
    if elements > MAX_ELEMENTS:
        raise ZarrsampleError(
            f"{where} declares shape {shape}: {float(elements):.3g} elements, more than int64 "
            "indexing allows (2**63 - 1); its metadata is corrupt or not an image"
        )
    kind = np.dtype(dtype).kind
    if kind not in NUMERIC_KINDS:
        raise ZarrsampleError(
            f"{where} has dtype {np.dtype(dtype)}: images must be bool, integer, float or complex"
        )


def check_multiscale(
    scales: Sequence[Any], axis_names: Sequence[str] | None, paths: Sequence[str],
    shapes: Sequence[Sequence[int]], where: str,
) -> None:
    """Check an OME-Zarr multiscale against the arrays it lists.

    ``scales`` holds each level's ``scale`` transformation as written (None
    where absent), ``shapes`` the shapes of the arrays at ``paths``.

    Rules: every level has as many dimensions as there are ``axes``; each
    level is no larger than the previous one on every axis and smaller on
    at least one; a ``scale`` transform has one positive finite number per
    axis, and level ``l`` covers the extent of level 0 to within one of its
    own pixels: ``|shape_l * scale_l - shape_0 * scale_0| <= scale_l``.

    Raises
    ------
    ZarrsampleError
        A rule broken; the message names the level path and the values.

    Examples
    --------
    >>> scales = [[1.0, 1.0], [2.0, 2.0]]
    >>> check_multiscale(scales, ["y", "x"], ["0", "1"], [(9, 10), (5, 5)], "img.zarr")
    >>> check_multiscale(scales, ["y", "x"], ["0", "1"], [(9, 10), (2, 5)], "img.zarr")
    Traceback (most recent call last):
    ...
    zarrsample_core._errors.ZarrsampleError: OME-Zarr metadata of img.zarr: level '1' with shape (2, 5) and scale [2.0, 2.0] covers [4.0, 10.0], not the extent [9.0, 10.0] of level '0' (to within one of its pixels)
    """
    bad = f"OME-Zarr metadata of {where}:"
    ndim = len(shapes[0])
    if axis_names is not None and len(axis_names) != ndim:
        raise ZarrsampleError(
            f"{bad} {len(axis_names)} axes {list(axis_names)} but level {paths[0]!r} has {ndim} "
            f"dimensions (shape {tuple(shapes[0])})"
        )
    for path, shape, prev_path, prev in zip(paths[1:], shapes[1:], paths, shapes):
        if len(shape) != ndim:
            raise ZarrsampleError(
                f"{bad} level {path!r} has {len(shape)} dimensions (shape {tuple(shape)}), level "
                f"{paths[0]!r} has {ndim}"
            )
        if any(a > b for a, b in zip(shape, prev)) or tuple(shape) == tuple(prev):
            raise ZarrsampleError(
                f"{bad} levels must decrease in size, but level {path!r} has shape {tuple(shape)} "
                f"after level {prev_path!r} with shape {tuple(prev)}"
            )
    scales = [s if isinstance(s, list) else None for s in scales]
    for path, scale in zip(paths, scales):
        if scale is not None and (
            len(scale) != ndim
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale)
            or not all(0 < s < math.inf for s in scale)
        ):
            raise ZarrsampleError(
                f"{bad} the scale of level {path!r} must be {ndim} positive finite numbers, got {scale!r}"
            )
    if scales and scales[0] is not None:
        extent = [n * s for n, s in zip(shapes[0], scales[0])]
        for path, shape, scale in zip(paths[1:], shapes[1:], scales[1:]):
            if scale is None:
                continue
            covers = [n * s for n, s in zip(shape, scale)]
            if any(abs(c - e) > s * (1 + 1e-9) for c, e, s in zip(covers, extent, scale)):
                raise ZarrsampleError(
                    f"{bad} level {path!r} with shape {tuple(shape)} and scale {scale} covers "
                    f"{covers}, not the extent {extent} of level {paths[0]!r} (to within one of its pixels)"
                )


# --------------------------------------------------------------------------- changed sources


def recorded_metadata(image: Any) -> tuple[Any, ...] | None:
    """``(stored shape, dtype, chunks)`` as the image was opened, or None for numpy."""
    if getattr(image, "backend", "numpy") == "numpy" or not hasattr(image, "levels"):
        return None
    return (tuple(image.levels[image.level]), str(image.dtype), tuple(image.chunks))


def stored_metadata(image: Any) -> tuple[Any, ...] | None:
    """``(shape, dtype, chunks)`` of the image's array as stored now (one metadata read).

    None for numpy images and objects that are not :class:`._image.Image`.
    """
    import zarr
    from zarr.storage import FsspecStore, LocalStore

    from ._image import Image, _native, spec_store

    if not isinstance(image, Image) or image.backend == "numpy":
        return None
    spec = image._spec
    store: Any
    if spec is not None and spec[0] == "tiff":
        from ._tiff import open_tiff_level

        fresh = open_tiff_level(*spec[1:], tiles=False)
        try:
            return (tuple(int(n) for n in fresh.shape), str(_native(fresh.dtype)), tuple(int(c) for c in fresh.chunks))
        finally:
            fresh.store.close()
    if spec is None:
        handle = image._cache["handle"]
        store, path, fmt = handle.store, handle.path, handle.metadata.zarr_format
    else:
        if spec[0] == "zarr" or len(spec) > 4:  # a tensorstore spec carries its zarr spec
            located = spec if spec[0] == "zarr" else spec[4]
            store, path, fmt = spec_store(located), located[3], located[4]
        else:  # a tensorstore spec pickled before it carried one
            kvstore = spec[1]["kvstore"]
            path, fmt = "", 3 if spec[1]["driver"] == "zarr3" else 2
            root = kvstore.get("path") or kvstore.get("base_url")
            store = LocalStore(root, read_only=True) if kvstore["driver"] == "file" else FsspecStore.from_url(root, read_only=True)
    fresh = zarr.open_array(store=store, path=path, mode="r", zarr_format=fmt)
    return (tuple(int(n) for n in fresh.shape), str(_native(fresh.dtype)), tuple(int(c) for c in fresh.chunks))


def source_changes(recorded: tuple[Any, ...], now: tuple[Any, ...] | None) -> str | None:
    """What differs between two :func:`recorded_metadata` tuples, or None."""
    if now is None or now == recorded:
        return None
    names = ("shape", "dtype", "chunks")
    return ", ".join(f"{n} {a} -> {b}" for n, a, b in zip(names, recorded, now) if a != b)
