"""Open an image: path, URL, zarr array/group (OME-Zarr aware) or numpy array.

``open_image`` resolves the source once (group -> OME-Zarr level or
``data_group`` array, axes, region of interest) and returns an ``Image``
(:mod:`._image`): a small picklable description plus a lazily opened array
handle. Nothing is ever written: zarr stores are opened read-only,
tensorstore with ``read=True`` only.
"""

from __future__ import annotations

import os
from numbers import Integral
from typing import Any, Literal

import numpy as np
import zarr

from .._errors import ZarrsampleError, spelled
from ._axes import guess_axes
from ._image import Image, _native
from ._locations import (
    PICTURE_SUFFIXES,
    check_storage_options,
    location,
    open_path,
    source_text,
)
from ._ome import join_path, resolve_axes, resolve_node
from ._placement import open_at_resolution
from ._roi import parse_roi
from ._tensorstore import tensorstore_spec
from ._tiff import is_tiff_file, tiff_store_source
from ._tiff_image import open_tiff
from ._validate import check_array_metadata, metadata_error

__all__ = ["Backend", "open_image"]

Backend = Literal["zarr", "tensorstore"]
_BACKENDS = ("zarr", "tensorstore")


def open_image(
    source: Any,
    *,
    axes: str | None = None,
    level: int | None = None,
    data_group: str | None = None,
    roi: tuple[slice, ...] | str | None = None,
    backend: Backend = "zarr",
    series: int | None = None,
    resolution: float | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Image:
    """Open an image for patch reading, without reading pixels.

    Parameters
    ----------
    source : str, os.PathLike, zarr.Array, zarr.Group, tifffile store or numpy.ndarray
        A local path or http(s) URL of a zarr v2/v3 array or group; a local
        TIFF-family file (TIFF, BigTIFF, OME-TIFF, SVS, NDPI, SCN, ...:
        whatever tifffile reads as an image series; needs the ``wsi``
        extra); a small PNG, JPEG or other Pillow image (read into memory,
        axes ``YXC`` or ``YX``); a zarr array or group object; tifffile's
        zarr store (``tifffile.imread(path, aszarr=True)``, read again from
        its file); or an in-memory numpy array.
    axes : str, optional
        One letter per dimension from ``"TCZYX"``. Taken from OME-Zarr
        metadata or zarr v3 ``dimension_names`` when those are single axis
        letters (then an explicit value must agree); required otherwise.
    level : int, optional
        Pyramid level (OME-Zarr: index into ``multiscales[0].datasets``;
        TIFF: index into the series' levels, SubIFDs or pages); default 0.
        Plain arrays have the single level 0.
    data_group : str, optional
        Path inside a group of the array (or OME-Zarr image group) to open,
        e.g. ``"0"`` or ``"labels/masks"``. Required for groups without
        OME-Zarr metadata. An array that is a level of an OME-Zarr parent
        group takes its axes and level from that group.
    roi : tuple of slice or str, optional
        Region of interest in the stored array of the chosen level, one entry
        per axis: slices with step None or 1, or zarrdataset's string
        ``"(start_0,...):(length_0,...)"`` where a length <= 0 means "to the
        end". The image's shape, chunks grid and read coordinates are then
        relative to it.
    backend : {"zarr", "tensorstore"}
        Library used for reading. ``"tensorstore"`` needs the array on a
        local path or an http(s), ``s3://`` or ``gs://`` URL (its metadata
        is read with zarr through fsspec, its pixels with tensorstore;
        ``storage_options`` are translated, see :mod:`._tensorstore`);
        TIFF files read with ``"zarr"`` only
        (tifffile decodes their tiles, see :mod:`._tiff`). numpy sources
        accept either and always read with numpy (``Image.backend == "numpy"``).
    series : int, optional
        The image series of a TIFF file with several (slide, label, macro,
        ...); default 0. Only TIFF files have series.
    resolution : float, optional
        Pick the pyramid level whose pixel size (mean over the ``Y`` and
        ``X`` axes, in micrometres; see :attr:`Image.pixel_size`) is within
        10% of this value, instead of ``level``. The error lists the
        resolutions that exist.
    storage_options : dict, optional
        fsspec's options for a URL's protocol (``s3://``, ``gs://``,
        ``http(s)://``, ...), e.g. ``{"anon": True}`` or ``{"key": ...,
        "secret": ..., "client_kwargs": {"endpoint_url": ...}}``. They travel
        with the image, so every process (a forked worker included) opens
        its own store with them. With ``backend="tensorstore"`` they are
        translated to tensorstore's kvstore spec (``anon``, ``key``,
        ``secret``, ``token``, ``profile``, ``endpoint_url``,
        ``region_name``, ``requester_pays`` for ``s3://``); an option
        without a tensorstore counterpart is a ``ZarrsampleError`` naming it.
        Without options, credentials come from the environment as each
        library finds them (``AWS_ACCESS_KEY_ID``, ``~/.aws``, ...).

    Returns
    -------
    Image

    Raises
    ------
    TypeError
        ``source``, ``axes``, ``level``, ``data_group`` or ``roi`` of a wrong type.
    FileNotFoundError
        A path that does not exist, or a URL with no zarr node.
    KeyError
        ``data_group`` does not exist (the message lists what does).
    ImportError
        A TIFF file without tifffile installed (the message says which
        extra to install).
    ZarrsampleError
        A path that is neither zarr nor an image file; a TIFF file tifffile
        cannot read in tiles or strips, or whose ``series`` does not exist;
        no level at ``resolution`` or no pixel size known; both ``level``
        and ``resolution``; a group without ``data_group``; missing or
        conflicting axes; ``level`` out of range; a bad ``roi``; an unknown
        ``backend`` or one the source cannot use; metadata that zarr refuses
        (unknown codec or dtype, negative sizes) or that cannot describe an
        image (chunk sizes < 1, more than ``2**63 - 1`` elements, a dtype
        that is not bool, integer, float or complex, an OME-Zarr multiscale
        whose axes, level shapes or scales disagree), in one line naming the
        path.

    Notes
    -----
    Opening reads metadata only, through zarr: the group and every pyramid
    level's array metadata, O(levels) small reads, no pixel data. tensorstore
    opens the array on the first :meth:`Image.read` (see :class:`Image`).

    Examples
    --------
    >>> image = open_image(np.zeros((2, 5, 6), np.uint8), axes="cyx")
    >>> image.axes, image.shape, image.chunks
    ('CYX', (2, 5, 6), (2, 5, 6))
    """
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise ZarrsampleError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}")
    if level is not None and (isinstance(level, bool) or not isinstance(level, Integral)):
        raise TypeError(f"level must be an int or None, got {level!r} of type {type(level).__name__}")
    if data_group is not None:
        if not isinstance(data_group, str):
            raise TypeError(
                f"data_group must be a string path such as 'labels/masks/0', got {data_group!r}"
            )
        data_group = data_group.strip("/") or None
    storage_options = check_storage_options(storage_options, source, backend)
    if series is not None and (isinstance(series, bool) or not isinstance(series, Integral)):
        raise TypeError(f"series must be an int or None, got {series!r} of type {type(series).__name__}")
    if resolution is not None:
        if level is not None:
            raise ZarrsampleError(
                f"give level or resolution, not both (got level={level}, resolution={resolution})"
            )
        return open_at_resolution(
            lambda lv: open_image(
                source, axes=axes, level=lv, data_group=data_group, roi=roi, backend=backend,
                series=series, storage_options=storage_options,
            ),
            resolution,
        )
    if isinstance(source, np.ndarray):
        if series not in (None, 0):
            raise ZarrsampleError(f"series={series} applies to TIFF files, but the source is a numpy array")
        return _open_numpy(source, axes=axes, level=level, data_group=data_group, roi=roi)
    tiff = _tiff_source(source)
    if tiff is not None:
        path, tiff_series, tiff_level = tiff
        if data_group is not None:
            raise ZarrsampleError(
                f"data_group={data_group!r} applies to zarr groups, but {path} is a TIFF file; "
                "use series= and level="
            )
        if tiff_level is not None and level not in (None, tiff_level):
            raise ZarrsampleError(f"level={level} disagrees with the tifffile store of level {tiff_level}")
        if series is not None and series != tiff_series and not isinstance(source, (str, os.PathLike)):
            raise ZarrsampleError(f"series={series} disagrees with the tifffile store of series {tiff_series}")
        return open_tiff(
            path, axes=axes, level=tiff_level if level is None else level,
            series=series if series is not None else tiff_series, roi=roi, backend=backend,
        )
    if series not in (None, 0):
        raise ZarrsampleError(f"series={series} applies to TIFF files, but the source is not one")
    if isinstance(source, (str, os.PathLike)) and _is_picture(source_text(source)):
        return _open_picture(source_text(source), axes=axes, level=level, data_group=data_group, roi=roi)
    if isinstance(source, (str, os.PathLike)):
        node, label = open_path(source, storage_options), source_text(source)
    elif isinstance(source, (zarr.Array, zarr.Group)):
        node, label = source, str(source.store)
    else:
        raise TypeError(
            "source must be a path or URL (str, os.PathLike), a zarr.Array, a zarr.Group, a "
            f"tifffile zarr store or a numpy.ndarray, got {type(source).__name__}"
        )
    where = join_path(label, node.path)
    try:
        array, level_index, levels, names, names_where, placement = resolve_node(
            node, where, data_group, level
        )
    except (ValueError, TypeError) as exc:  # zarr refusing a child array's metadata
        if isinstance(exc, ZarrsampleError):
            raise
        raise metadata_error(where if data_group is None else join_path(where, data_group), exc) from exc
    name = join_path(label, array.path)
    stored_shape = tuple(int(n) for n in array.shape)
    check_array_metadata(stored_shape, array.chunks, array.dtype, name)
    axes = resolve_axes(axes, names, names_where, stored_shape, name)
    start, stop = parse_roi(roi, stored_shape, axes)
    where_stored = location(array)
    fmt = array.metadata.zarr_format
    if backend == "tensorstore":
        # Opened on first read: tensorstore must not start its threads in a
        # process that will fork() its workers (see Image Notes).
        spec: tuple[Any, ...] | None = tensorstore_spec(
            where_stored, array.path, fmt, name, type(array.store).__name__
        )
        cache: dict[str, Any] = {}
    else:
        # Re-opened from its location in every other process, however it was given.
        spec = None
        if where_stored is not None:
            kind, root, options = where_stored
            spec = ("zarr", kind, root, array.path, fmt, options)
        cache = {"handle": array, "pid": os.getpid()}
    return Image(
        name=name,
        axes=axes,
        shape=tuple(b - a for a, b in zip(start, stop)),
        dtype=_native(array.dtype),
        chunks=tuple(int(c) for c in array.chunks),
        origin=start,
        level=level_index,
        levels=levels,
        backend=backend,
        placement=placement,
        _spec=spec,
        _cache=cache,
    )



def _open_numpy(
    source: np.ndarray, *, axes: object, level: int | None, data_group: str | None, roi: object,
    name: str | None = None,
) -> Image:
    name = name or f"<numpy array shape={source.shape} dtype={source.dtype}>"
    if data_group is not None:
        raise ZarrsampleError(
            f"data_group={data_group!r} applies to zarr groups, but the source is a {name}"
        )
    if level not in (None, 0):
        raise ZarrsampleError(
            f"level={level} is out of range for a {name}: available levels: [0]"
        )
    if axes is None:
        likely = guess_axes(source.shape)
        raise ZarrsampleError(
            f"axes is required for a numpy array source: it has ndim={source.ndim} (shape "
            f"{tuple(source.shape)}); pass e.g. {spelled('axes', likely)}", hints=[("axes", likely)],
        )
    axes = resolve_axes(axes, None, "", source.shape, name)
    start, stop = parse_roi(roi, source.shape, axes)
    return Image(
        name=name,
        axes=axes,
        shape=tuple(b - a for a, b in zip(start, stop)),
        dtype=_native(source.dtype),
        chunks=tuple(source.shape),
        origin=start,
        level=0,
        levels=(tuple(source.shape),),
        backend="numpy",
        _cache={"handle": source},
    )


def _is_picture(path: str) -> bool:
    return "://" not in path and path.lower().endswith(PICTURE_SUFFIXES) and os.path.isfile(path)


def _open_picture(path: str, *, axes: object, level: int | None, data_group: str | None, roi: object) -> Image:
    """A small PNG/JPEG/... file read whole with Pillow: axes ``YXC``, or ``YX`` for one band."""
    try:
        from PIL import Image as PILImage
    except ImportError as exc:
        raise ImportError('reading PNG or JPEG files needs Pillow: pip install "zarrsample[wsi]"') from exc
    try:
        with PILImage.open(path) as picture:
            pixels = np.asarray(picture)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for bad files
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ZarrsampleError(f"{path} is not an image file Pillow can read: {text}") from exc
    if axes is None:
        axes = "YXC" if pixels.ndim == 3 else "YX"
    return _open_numpy(pixels, axes=axes, level=level, data_group=data_group, roi=roi, name=path)


def _tiff_source(source: Any) -> tuple[str, int, int | None] | None:
    """``(path, series, level)`` when ``source`` is a TIFF file or tifffile's zarr store on one."""
    if isinstance(source, (str, os.PathLike)):
        text = source_text(source)
        if text.startswith("file://"):
            text = text[len("file://") :]
        return (text, 0, None) if "://" not in text and is_tiff_file(text) else None
    return tiff_store_source(source)
