"""TIFF-family files (TIFF, BigTIFF, OME-TIFF, SVS, NDPI, SCN, ...) as images, through tifffile.

A TIFF image is one pyramid level of one series of a file. Its chunks are
the file's tiles (or strips), as tifffile's zarr store
(``TiffFile.aszarr(series=, level=)``) gives them, so the planner aligns to
them. One-page levels (whole-slide levels: ``YX`` or ``YXS``) are read tile
by tile with tifffile's decoder (:mod:`._tiff_tiles`, several threads at
once); other layouts through tifffile's zarr store with zarr. The file is opened in the process that reads it, and again in every
other process (a ``fork()`` child included): a TIFF file handle shared by
two processes moves one file position under both, and JPEG or Deflate tiles
then decode from the wrong bytes, sometimes with no error at all.

Pixel sizes come from OME-XML ``PhysicalSize*``, an Aperio ``MPP``, ImageJ
metadata, or the resolution tags (in this order); reduced levels of a
pyramid get the level-0 size times their reduction factor, which is the
integer ``k`` when the level's extent is ``floor`` or ``ceil`` of the level-0
extent over ``k`` (how pyramids are written), else the ratio of extents.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from fractions import Fraction
from math import ceil, floor
from typing import Any

from .._errors import ZarrsampleError
from ._placement import Placement, exact, micrometres

__all__ = [
    "TIFF_INSTALL_HINT",
    "can_decode",
    "is_tiff_file",
    "level_factor",
    "check_readable",
    "open_tiff_level",
    "zarr_level",
    "tiff_axes",
    "tiff_file",
    "tiff_placement",
    "tiff_series_text",
]

TIFF_INSTALL_HINT = 'reading TIFF files needs tifffile and imagecodecs: pip install "zarrsample[wsi]"'
_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Micrometres per TIFF ResolutionUnit (2 inch, 3 centimetre; 4 mm and 5 um in some writers).
_RESOLUTION_UNIT_UM = {2: Fraction(25_400), 3: Fraction(10_000), 4: Fraction(1_000), 5: Fraction(1)}
#: tifffile axis letters that are ours as they are; S (samples, e.g. RGB) reads as C.
_SAME = "TCZYX"


def is_tiff_file(path: str) -> bool:
    """Whether ``path`` is a file that starts like a TIFF or BigTIFF file."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        return handle.read(4) in _MAGIC


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as exc:
        raise ImportError(TIFF_INSTALL_HINT) from exc
    return tifffile


def tiff_file(path: str) -> Any:
    """An open ``tifffile.TiffFile`` (the caller closes it), with one-line errors."""
    tifffile = _tifffile()
    try:
        return tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds for bad files
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ZarrsampleError(f"{path} is not a TIFF file tifffile can read: {text}") from exc


def tiff_series_text(tif: Any) -> str:
    """``0: 'name' YXS (h, w, 3), 3 levels; 1: ...`` for messages."""
    parts = []
    for i, series in enumerate(tif.series):
        levels = len(series.levels)
        parts.append(
            f"{i}: {series.name or series.kind!r} {series.axes} {tuple(series.shape)}, "
            f"{levels} level{'s' if levels != 1 else ''}"
        )
    return "; ".join(parts)


def tiff_axes(tiff_letters: str, axes: Any, name: str) -> str:
    """Our axes for a series' tifffile axes, with the user's ``axes`` where they must decide.

    tifffile letters ``T C Z Y X`` are kept, ``S`` (samples) reads as ``C``
    when there is no other ``C``; any other letter (``I`` sequence, ``Q``
    unknown, ...) needs ``axes``. An explicit ``axes`` must agree with the
    letters that are known.
    """
    from ._axes import check_axes

    mapped = []
    for letter in tiff_letters:
        if letter in _SAME:
            mapped.append(letter)
        elif letter == "S" and "C" not in tiff_letters:
            mapped.append("C")
        else:
            mapped.append("?")
    derived = "".join(mapped)
    if axes is not None:
        letters = check_axes(axes, len(tiff_letters))
        if any(d not in ("?", a) for d, a in zip(derived, letters)):
            raise ZarrsampleError(
                f"axes={axes!r} disagrees with the TIFF series axes {tiff_letters!r} of {name}, "
                f"read as {derived.replace('?', '_')!r}; omit axes or pass axes consistent with it"
            )
        return letters
    if "?" in derived:
        likely = derived.replace("?", "Z", 1).replace("?", "T")
        raise ZarrsampleError(
            f"axes is required for {name}: tifffile gives axes {tiff_letters!r}, whose "
            f"{sorted({t for t, d in zip(tiff_letters, derived) if d == '?'})} have no T/C/Z/Y/X "
            f"meaning; pass e.g. axes={likely!r}", hints=[("axes", likely)],
        )
    return derived


def level_factor(n0: int, n: int) -> Fraction:
    """The reduction factor of a pyramid level of extent ``n`` below extent ``n0``.

    The integer ``k`` when ``n`` is ``floor(n0 / k)`` or ``ceil(n0 / k)``;
    otherwise ``n0 / n``.

    Examples
    --------
    >>> level_factor(1001, 500), level_factor(1001, 501), level_factor(1000, 333)
    (Fraction(2, 1), Fraction(2, 1), Fraction(3, 1))
    >>> level_factor(1000, 300)
    Fraction(10, 3)
    """
    k = max(1, round(n0 / n))
    return Fraction(k) if n in (floor(n0 / k), ceil(n0 / k)) else Fraction(n0, n)


def _ome_pixel_sizes(tif: Any, series_index: int) -> dict[str, Fraction]:
    xml = tif.ome_metadata
    if not xml:
        return {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    pixels = [p for image in root if image.tag.endswith("}Image") for p in image if p.tag.endswith("}Pixels")]
    if series_index >= len(pixels):
        return {}
    sizes = {}
    for axis in "XYZ":
        value = pixels[series_index].get(f"PhysicalSize{axis}")
        unit = micrometres(pixels[series_index].get(f"PhysicalSize{axis}Unit", "µm"))
        try:
            size = exact(float(value)) if value is not None else None
        except ValueError:
            size = None
        if size is not None and size > 0 and unit is not None:
            sizes[axis] = size * unit
    return sizes


def _pixel_sizes(tif: Any, series: Any, series_index: int) -> dict[str, Fraction]:
    """Level-0 pixel size in micrometres per spatial axis the file states ({} if none)."""
    tifffile = _tifffile()
    keyframe = series.keyframe
    if tif.is_ome:
        sizes = _ome_pixel_sizes(tif, series_index)
        if sizes:
            return sizes
    first = tif.pages.first
    if keyframe is first and first.description.startswith(("Aperio ", "Mikroscan ", "Motic ")):
        try:
            mpp = tifffile.tifffile.svs_description_metadata(first.description).get("MPP")
        except Exception:  # noqa: BLE001 - a description that does not parse gives no size
            mpp = None
        if isinstance(mpp, (int, float)) and mpp > 0:
            return {"X": exact(mpp), "Y": exact(mpp)}
    tags = keyframe.tags
    if 282 in tags and 283 in tags:
        if tif.is_imagej:
            meta = tif.imagej_metadata or {}
            per_unit = micrometres(meta.get("unit")) if meta.get("unit") else None
        else:
            per_unit = _RESOLUTION_UNIT_UM.get(int(tags.valueof(296, default=2)))
        x_res, y_res = (Fraction(*v) if isinstance(v, tuple) else exact(v) for v in (tags[282].value, tags[283].value))
        if per_unit is not None and x_res > 0 and y_res > 0:
            sizes = {"X": per_unit / x_res, "Y": per_unit / y_res}
            spacing = (tif.imagej_metadata or {}).get("spacing") if tif.is_imagej else None
            if isinstance(spacing, (int, float)) and spacing > 0:
                sizes["Z"] = exact(spacing) * per_unit
            return sizes
    return {}


def tiff_placement(
    tif: Any, series_index: int, level: int, axes: str, shape: tuple[int, ...]
) -> tuple[Placement, ...]:
    """Each axis' placement of one level: micrometres where the file says, else level-0 pixels.

    Axes without a stated size get unit ``"pixel"`` (level-0 pixels), so the
    levels of one file still align exactly with each other.
    """
    series = tif.series[series_index]
    sizes = _pixel_sizes(tif, series, series_index)
    base = tuple(int(n) for n in series.levels[0].shape)
    placements = []
    for i, axis in enumerate(axes):
        factor = level_factor(base[i], shape[i]) if axis in "ZYX" and level else Fraction(1)
        size = sizes.get(axis)
        unit = "micrometer" if size is not None else "pixel"
        scale = (size or Fraction(1)) * factor
        # Corners aligned: pixel 0 of a level starts where pixel 0 of level 0 starts.
        placements.append(Placement(scale, (scale - (size or Fraction(1))) / 2, unit))
    return tuple(placements)


def open_tiff_level(path: str, series: int, level: int, *, tiles: bool = True) -> Any:
    """A read-only array over one level of one series, with the file opened here.

    A :class:`._tiff_tiles.TileReader` for one-page levels (``tiles=True``),
    else a ``zarr.Array`` on tifffile's zarr store. Either belongs to this
    process (it holds the file open); see :class:`Image` for when it is
    re-opened.
    """
    from ._tiff_tiles import tile_reader

    tif = tiff_file(path)
    try:
        reader = tile_reader(tif, path, series, level) if tiles else None
        return reader if reader is not None else zarr_level(tif, series, level)
    except Exception:
        tif.close()
        raise


def zarr_level(tif: Any, series: int, level: int) -> Any:
    """A read-only ``zarr.Array`` on tifffile's zarr store of one level of an open file."""
    import zarr

    return zarr.open_array(store=tif.aszarr(series=series, level=level), mode="r")


def tiff_store_source(source: Any) -> tuple[str, int, int | None] | None:
    """``(path, series, level)`` of a tifffile zarr store, or of a zarr node on one; else None.

    ``level`` is None for a store of a whole pyramid (tifffile's multiscales
    group), whose level the caller chooses.
    """
    import zarr

    store: Any = source.store if isinstance(source, (zarr.Array, zarr.Group)) else source
    if type(store).__name__ != "ZarrTiffStore":
        return None
    try:
        levels = list(store._data)
        tif = levels[0].parent
        path = os.path.abspath(tif.filehandle.path)
    except (AttributeError, IndexError, TypeError) as exc:
        raise ZarrsampleError(
            f"cannot tell which file, series and level this tifffile store reads ({exc}); "
            "pass the TIFF file's path to open_image instead"
        ) from None
    for index, series in enumerate(tif.series):
        for level, page_series in enumerate(series.levels):
            if page_series is levels[0]:
                whole = len(levels) > 1 or getattr(store, "_multiscales", False)
                if isinstance(source, zarr.Array) and whole:
                    level = int(source.path.strip("/") or 0)  # an array of the multiscales group
                    return path, index, level
                return path, index, None if whole else level
    raise ZarrsampleError(
        f"cannot find the series of this tifffile store in {path}; pass the file's path to open_image"
    )


def check_readable(level: Any, size: int, name: str) -> None:
    """Refuse a level whose tiles or strips are missing or lie past the end of the file."""
    import numpy as np

    for page in level.pages:
        if page is None:
            raise ZarrsampleError(f"{name} has a page tifffile could not read; the file may be truncated")
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size == 0 or offsets.size != counts.size:
            raise ZarrsampleError(f"{name} has no tile or strip offsets; the file may be truncated")
        if int((offsets + counts).max()) > size:
            raise ZarrsampleError(
                f"{name} has tiles or strips past the end of the file ({size} bytes): the file is "
                "truncated or still being written"
            )


def can_decode(keyframe: Any) -> bool:
    """Whether tifffile has a decoder for the page's compression here."""
    try:
        keyframe.decode  # noqa: B018 - tifffile builds (or refuses) the decoder on access
    except Exception:  # noqa: BLE001
        return False
    compression = int(keyframe.compression)
    if compression == 1:
        return True
    tifffile = _tifffile()
    try:
        return compression in tifffile.TIFF.DECOMPRESSORS
    except Exception:  # noqa: BLE001
        return True
