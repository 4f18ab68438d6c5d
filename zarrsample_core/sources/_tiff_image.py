"""The :class:`Image` of one level of one series of a TIFF file (see :mod:`._tiff`)."""

from __future__ import annotations

import os
from typing import Any

from .._errors import ZarrsampleError
from ._image import Image, _native
from ._roi import parse_roi
from ._tiff import (
    can_decode,
    check_readable,
    tiff_axes,
    tiff_file,
    tiff_placement,
    tiff_series_text,
    zarr_level,
)
from ._validate import check_array_metadata

__all__ = ["open_tiff"]


def open_tiff(
    path: str, *, axes: Any, level: int | None, series: int | None, roi: Any, backend: str
) -> Any:
    """The :class:`Image` of one level of one series of a TIFF file (metadata reads only)."""
    path = os.path.abspath(path)
    if backend != "zarr":
        raise ZarrsampleError(
            f"backend={backend!r} cannot read TIFF files ({path}); use backend='zarr', which reads "
            "them through tifffile's zarr store"
        )
    with tiff_file(path) as tif:
        if not tif.series:
            raise ZarrsampleError(f"{path} holds no image series tifffile can read")
        index = 0 if series is None else series
        if not 0 <= index < len(tif.series):
            raise ZarrsampleError(
                f"series={series} is out of range for {path}: it has {len(tif.series)} series "
                f"({tiff_series_text(tif)})"
            )
        chosen = tif.series[index]
        level_index = 0 if level is None else int(level)
        if not 0 <= level_index < len(chosen.levels):
            raise ZarrsampleError(
                f"level={level} is out of range for series {index} of {path}: available levels are "
                f"{list(range(len(chosen.levels)))} (shapes {[tuple(s.shape) for s in chosen.levels]})"
            )
        name = f"{path} (series {index}, level {level_index})"
        try:
            array = zarr_level(tif, index, level_index)  # the store's chunks are the tiles (strips)
        except ZarrsampleError:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile refusing a layout it cannot chunk
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ZarrsampleError(f"tifffile cannot read {name} in chunks: {text}") from exc
        try:
            shape = tuple(int(n) for n in array.shape)
            check_array_metadata(shape, array.chunks, array.dtype, name)
            letters = tiff_axes(chosen.levels[level_index].axes, axes, name)
            keyframe = chosen.levels[level_index].keyframe
            compression = getattr(keyframe.compression, "name", str(keyframe.compression))
            if not can_decode(keyframe):
                raise ZarrsampleError(
                    f"{name} is compressed with {compression}, which tifffile cannot decode here; "
                    "install imagecodecs (pip install \"zarrsample[wsi]\")"
                )
            check_readable(chosen.levels[level_index], os.path.getsize(path), name)
            placement = tiff_placement(tif, index, level_index, letters, shape)
            levels = tuple(tuple(int(n) for n in s.shape) for s in chosen.levels)
            chunks = tuple(int(c) for c in array.chunks)
            dtype = _native(array.dtype)
        finally:
            array.store.close()
    start, stop = parse_roi(roi, shape, letters)
    return Image(
        name=name,
        axes=letters,
        shape=tuple(b - a for a, b in zip(start, stop)),
        dtype=dtype,
        chunks=chunks,
        origin=start,
        level=level_index,
        levels=levels,
        backend="zarr",
        placement=placement,
        _spec=("tiff", path, index, level_index),
        _cache={},
    )
