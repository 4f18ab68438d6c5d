"""Metadata checks made before anything large is allocated.

Array metadata (shape, chunks, dtype), OME-Zarr multiscales (axes count,
levels in decreasing size, scales consistent with shapes), the memory a
plan would need, and whether a source changed on storage since it was
opened. Each check raises a one-line :class:`ZarrsampleError` naming the
source, the rule and the value found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from typing import Any

import numpy as np

from ._errors import ZarrsampleError

__all__ = [
    "check_array_metadata",
    "check_max_bytes",
    "check_multiscale",
    "check_plan_budget",
    "check_sources",
    "metadata_error",
    "plan_bytes",
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


# --------------------------------------------------------------------------- plan memory


def check_max_bytes(value: object, name: str = "max_plan_bytes") -> int | None:
    """``value`` as an int >= 1, or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    if value < 1:
        raise ZarrsampleError(f"{name} must be >= 1 (bytes) or None, got {value}")
    return int(value)


def plan_bytes(counts: Sequence[int], *, masked: bool) -> int:
    """Upper estimate of the bytes planning a grid of ``counts`` positions allocates.

    Per grid position: 2 bytes of boolean grids, 8 of mask coverage (with a
    mask), and ``8 * (2 D + 2)`` for top-left, grid index, chunk id and
    coverage (every position counted as a patch). Exact integer arithmetic.

    Examples
    --------
    >>> plan_bytes([1024, 1024], masked=False)
    52428800
    """
    d = len(counts)
    return math.prod(int(c) for c in counts) * (2 + (8 if masked else 0) + 8 * (2 * d + 2))


def check_plan_budget(counts: Sequence[int], *, masked: bool, max_bytes: int | None, where: str) -> None:
    """Refuse to plan when :func:`plan_bytes` exceeds ``max_bytes``.

    Raises
    ------
    ZarrsampleError
        The estimate (and the grid) is over budget.
    """
    if max_bytes is None:
        return
    need = plan_bytes(counts, masked=masked)
    if need > max_bytes:
        raise ZarrsampleError(
            f"planning {where} would need about {need / 2**30:.3g} GiB ({need} bytes, a grid of "
            f"{' x '.join(str(int(c)) for c in counts)} positions), more than max_plan_bytes="
            f"{max_bytes}; use a larger stride or patch, a region of interest, or raise max_plan_bytes"
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

    from ._image import Image, _native

    if not isinstance(image, Image) or image.backend == "numpy":
        return None
    spec = image._spec
    store: Any
    if spec is None:
        handle = image._cache["handle"]
        store, path, fmt = handle.store, handle.path, handle.metadata.zarr_format
    else:
        if spec[0] == "zarr":
            _, kind, root, path, fmt = spec
        else:
            kvstore = spec[1]["kvstore"]
            kind, path, fmt = ("file", "", 3 if spec[1]["driver"] == "zarr3" else 2)
            root = kvstore.get("path") or kvstore.get("base_url")
            kind = "file" if kvstore["driver"] == "file" else "url"
        store = LocalStore(root, read_only=True) if kind == "file" else FsspecStore.from_url(root, read_only=True)
    fresh = zarr.open_array(store=store, path=path, mode="r", zarr_format=fmt)
    return (tuple(int(n) for n in fresh.shape), str(_native(fresh.dtype)), tuple(int(c) for c in fresh.chunks))


def source_changes(recorded: tuple[Any, ...], now: tuple[Any, ...] | None) -> str | None:
    """What differs between two :func:`recorded_metadata` tuples, or None."""
    if now is None or now == recorded:
        return None
    names = ("shape", "dtype", "chunks")
    return ", ".join(f"{n} {a} -> {b}" for n, a, b in zip(names, recorded, now) if a != b)


#: Up to this many images are checked one after the other; more use threads.
_SERIAL_CHECKS = 4
_CHECK_THREADS = 16


def check_sources(images: Sequence[tuple[str, Any, tuple[Any, ...] | None]], load: Any) -> None:
    """Refuse images whose stored metadata changed since they were recorded.

    Parameters
    ----------
    images : sequence of (label, image, recorded)
        ``recorded`` from :func:`recorded_metadata` (None: not checked).
    load : callable
        ``load(fn, what)`` runs ``fn`` (e.g. :meth:`._faults.RetryPolicy.call`).

    Raises
    ------
    ZarrsampleError
        An image's shape, dtype or chunks differ from when it was opened, or
        its metadata can no longer be read for a reason other than a
        transient I/O error (which leaves the check to the next call); the
        first such image in input order.

    Notes
    -----
    One metadata read per image; more than a few images are read by up to
    16 threads at once (remote stores answer in parallel).
    """
    from ._faults import _Exhausted, is_transient

    def check(entry: tuple[str, Any, tuple[Any, ...] | None]) -> None:
        label, image, recorded = entry
        if recorded is None:
            return
        try:
            now = load(lambda: stored_metadata(image), f"{image.name} metadata")
        except ZarrsampleError:
            raise
        except Exception as exc:
            if isinstance(exc, _Exhausted) or is_transient(exc):
                return  # unreachable now; chunk reads will retry, skip or raise as configured
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ZarrsampleError(
                f"{label} ({image.name}) can no longer be opened as it was when the dataset was "
                f"made: {text}"
            ) from exc
        change = source_changes(recorded, now)
        if change:
            raise ZarrsampleError(
                f"{label} ({image.name}) changed on storage since it was opened ({change}); reading "
                "it would mix old and new metadata: open it again and build a new PatchDataset"
            )

    checked = [entry for entry in images if entry[2] is not None]
    if len(checked) <= _SERIAL_CHECKS:
        for entry in checked:
            check(entry)
        return
    # One small metadata read per image, mostly waiting on storage: many at once. The
    # first failure in input order is raised, as in the serial loop.
    with ThreadPoolExecutor(min(_CHECK_THREADS, len(checked)), thread_name_prefix="zarrsample-check") as pool:
        for _ in pool.map(check, checked):
            pass
