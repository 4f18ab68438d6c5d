"""OME-Zarr outputs: multiscale pyramids, their placement and their metadata.

A pyramid is built level by level from a written level 0. Each level halves
the spatial axes (``Z``, ``Y``, ``X``, OME-Zarr type ``"space"``) that are
longer than one pixel, ``ceil(n / 2)`` pixels per axis, so the last block of
an odd axis is partial and no edge pixel is lost. Float outputs take the
mean of the pixels each block has; integer and bool outputs (labels) keep
the block's first pixel (``[::2]``), so no new label value appears.

Geometry (the pixel-centre convention of ngff-zarr and of OME-Zarr 0.6):
pixel ``i`` of a level is centred at ``scale * i + translation``. A pixel of
a reduced level stands for a block of ``F`` level-0 pixels on each axis
(``F = 2**k`` on an axis halved ``k`` times, 1 on the others), so
``scale_k = F * scale_0`` and ``translation_k = translation_0 +
(F - 1) / 2 * scale_0``: the corners of all levels coincide. Values are
exact fractions, written as the nearest floats.

Metadata: OME-Zarr 0.5 (the ``ome`` key of ``zarr.json``) on zarr v3 and 0.4
(``multiscales`` in ``.zattrs``) on zarr v2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import zarr

from .._errors import ZarrsampleError
from ..sources._image import Image
from ..sources._placement import LENGTH_UNITS, Placement, axis_placement, micrometres

__all__ = [
    "AXIS_TYPES",
    "Pyramid",
    "Reduce",
    "auto_levels",
    "halving_factors",
    "max_levels",
    "multiscale_metadata",
    "ome_attributes",
    "ome_unit",
    "output_pyramid",
    "reduce_block",
    "reduction",
    "write_levels",
]

Reduce = Literal["mean", "nearest"]

#: OME-Zarr axis type of each zarrsample axis letter.
AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
#: The space units the OME-Zarr 0.4 and 0.5 specifications list (UDUNITS-2 names).
SPEC_SPACE_UNITS = (
    "angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot", "gigameter",
    "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer", "mile", "millimeter",
    "nanometer", "parsec", "petameter", "picometer", "terameter", "yard", "yoctometer", "yottameter",
    "zeptometer", "zettameter",
)
#: Input elements reduced at once (float64 accumulators: about 64 MiB).
TILE_ELEMENTS = 8 * 2**20
_DESCRIPTIONS = {
    "mean": "the mean of its block's pixels",
    "nearest": "its block's first pixel ([::2])",
}


@dataclass(frozen=True)
class Pyramid:
    """The levels of an OME-Zarr image: shapes, reduction factors and placement.

    Attributes
    ----------
    axes : tuple of dict
        OME-Zarr axes: ``name``, ``type`` and ``unit`` where known.
    shape : tuple of int
        Level 0's shape.
    factors : tuple of tuple of int
        Per level, how many level-0 pixels one of its pixels spans on each
        axis (level 0: ones); level ``k`` has ``ceil(shape / factors[k])``
        pixels.
    scale, translation : tuple of Fraction
        Level 0's pixel size and the position of its pixel 0's centre.
    outer : list of dict, optional
        The multiscale's own ``coordinateTransformations`` (as written).
    """

    axes: tuple[dict[str, str], ...]
    shape: tuple[int, ...]
    factors: tuple[tuple[int, ...], ...]
    scale: tuple[Fraction, ...]
    translation: tuple[Fraction, ...]
    outer: tuple[dict[str, Any], ...] | None = None

    def shapes(self) -> list[tuple[int, ...]]:
        """Each level's shape, finest first."""
        return [tuple(-(-n // f) for n, f in zip(self.shape, fs)) for fs in self.factors]

    def datasets(self) -> list[dict[str, Any]]:
        """The ``datasets`` entries: path ``"k"`` and the level's scale and translation."""
        out = []
        for k, fs in enumerate(self.factors):
            scale = [float(f * s) for f, s in zip(fs, self.scale)]
            shift = [float(t + Fraction(f - 1, 2) * s) for f, s, t in zip(fs, self.scale, self.translation)]
            out.append({"path": str(k), "coordinateTransformations": [
                {"type": "scale", "scale": scale}, {"type": "translation", "translation": shift}]})
        return out


def max_levels(shape: Sequence[int], spatial: Sequence[bool]) -> int:
    """Levels until every spatial axis is one pixel long (halving with ceil sizes)."""
    return 1 + max([(n - 1).bit_length() for n, sp in zip(shape, spatial) if sp], default=0)


def auto_levels(shape: Sequence[int], chunks: Sequence[int], spatial: Sequence[bool]) -> int:
    """Levels until one fits in one chunk on every spatial axis.

    Examples
    --------
    >>> auto_levels((3, 1000, 600), (3, 256, 256), (False, True, True))
    3
    """
    levels, size = 1, list(shape)
    while any(sp and n > c for n, c, sp in zip(size, chunks, spatial)):
        size = [-(-n // 2) if sp else n for n, sp in zip(size, spatial)]
        levels += 1
    return levels


def halving_factors(shape: Sequence[int], spatial: Sequence[bool], levels: int) -> tuple[tuple[int, ...], ...]:
    """Factors of ``levels`` levels, each halving the spatial axes longer than one pixel.

    Examples
    --------
    >>> halving_factors((3, 5, 2), (False, True, True), 3)
    ((1, 1, 1), (1, 2, 2), (1, 4, 2))
    """
    factors = [tuple(1 for _ in shape)]
    for _ in range(levels - 1):
        prev = factors[-1]
        factors.append(tuple(
            f * 2 if sp and -(-n // f) > 1 else f for n, f, sp in zip(shape, prev, spatial)
        ))
    return tuple(factors)


def ome_unit(unit: str | None) -> str | None:
    """The OME-Zarr name of a length unit (``"um"`` -> ``"micrometer"``); None for none or ``"pixel"``.

    A unit that is not a known length is kept as written.

    Examples
    --------
    >>> ome_unit("µm"), ome_unit("nanometre"), ome_unit("pixel")
    ('micrometer', 'nanometer', None)
    """
    if unit is None or unit == "pixel":
        return None
    if unit in SPEC_SPACE_UNITS:
        return unit
    factor = micrometres(unit)
    return next((name for name in SPEC_SPACE_UNITS if LENGTH_UNITS[name] == factor), unit)


def output_pyramid(
    like: Image | None, axes: str, shape: tuple[int, ...], factors: tuple[tuple[int, ...], ...]
) -> Pyramid:
    """The pyramid of a new OME-Zarr image with axes ``axes``, placed like ``like``.

    A spatial axis of the output takes ``like``'s placement on the axis of
    the same letter (its region of interest included); when the extents
    differ the output spans the same physical extent (scale times the ratio
    of extents, corners aligned). Other axes, and spatial axes ``like``
    lacks, get scale 1 and translation 0. Units are written in their
    OME-Zarr names (see :func:`ome_unit`); ``"pixel"`` (a relative size)
    is not written.
    """
    spec_axes, scale, shift = [], [], []
    for i, letter in enumerate(axes):
        axis = {"name": letter.lower(), "type": AXIS_TYPES[letter]}
        s, t = Fraction(1), Fraction(0)
        if like is not None and letter in "ZYX" and letter in like.axes:
            j = like.axes.index(letter)
            where = axis_placement(like, letter) or Placement(Fraction(1), Fraction(0)).shifted(like.origin[j])
            s = where.scale * Fraction(like.shape[j], shape[i])
            t = where.translation - where.scale / 2 + s / 2
            unit = ome_unit(where.unit)
            if unit is not None:
                axis["unit"] = unit
        spec_axes.append(axis)
        scale.append(s)
        shift.append(t)
    return Pyramid(tuple(spec_axes), shape, factors, tuple(scale), tuple(shift))


def reduction(dtype: np.dtype) -> Reduce:
    """``"mean"`` for float dtypes, ``"nearest"`` for integer and bool ones."""
    return "mean" if dtype.kind in "fc" else "nearest"


def reduce_block(block: np.ndarray, steps: Sequence[int], how: Reduce) -> np.ndarray:
    """Blocks of ``steps`` pixels to one pixel: ``ceil(n / step)`` per axis.

    ``"nearest"`` keeps each block's first pixel; ``"mean"`` averages the
    pixels each block has (a partial last block fewer), in float64.

    Examples
    --------
    >>> reduce_block(np.array([[1.0, 2.0, 6.0]]), (1, 2), "mean").tolist()
    [[1.5, 6.0]]
    >>> reduce_block(np.array([[1, 2, 6]]), (1, 2), "nearest").tolist()
    [[1, 6]]
    """
    if how == "nearest":
        return np.ascontiguousarray(block[tuple(slice(None, None, f) for f in steps)])
    acc = block.astype(np.float64)
    for axis, f in enumerate(steps):
        if f == 1:
            continue
        n = acc.shape[axis]
        m = -(-n // f)
        pad = m * f - n
        if pad:
            acc = np.pad(acc, [(0, pad) if a == axis else (0, 0) for a in range(acc.ndim)])
        acc = acc.reshape(acc.shape[:axis] + (m, f) + acc.shape[axis + 1:]).sum(axis=axis + 1)
        counts = np.full(m, float(f))
        counts[-1] = f - pad
        acc /= counts.reshape((m,) + (1,) * (acc.ndim - axis - 1))
    return acc.astype(block.dtype)


def _tiles(shape: Sequence[int], chunks: Sequence[int], steps: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Regions of an output level, whole chunks each, grown while the input stays small."""
    tile = [min(c, n) for c, n in zip(chunks, shape)]
    grown = True
    while grown:
        grown = False
        for axis in range(len(tile)):
            trial = list(tile)
            trial[axis] = min(shape[axis], 2 * tile[axis])
            if trial[axis] > tile[axis] and math.prod(t * f for t, f in zip(trial, steps)) <= TILE_ELEMENTS:
                tile, grown = trial, True
    for index in np.ndindex(*(-(-n // t) for n, t in zip(shape, tile))):
        yield tuple(slice(i * t, min((i + 1) * t, n)) for i, t, n in zip(index, tile, shape))


def _array_like(group: zarr.Group, path: str, src: Any, shape: tuple[int, ...]) -> Any:
    """A new array at ``path``: ``src``'s dtype, codecs and chunks (capped to ``shape``)."""
    kwargs: dict[str, Any] = dict(
        shape=shape, dtype=src.dtype, chunks=tuple(min(c, n) for c, n in zip(src.chunks, shape)),
        fill_value=src.fill_value, compressors=src.compressors, filters=src.filters,
    )
    if src.metadata.zarr_format == 3:
        kwargs.update(serializer=src.serializer, chunk_key_encoding=src.metadata.chunk_key_encoding,
                      dimension_names=src.metadata.dimension_names)
    else:
        separator = getattr(src.metadata, "dimension_separator", "/")
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": separator}
    return group.create_array(path, **kwargs)


def write_levels(group: zarr.Group, level0: Any, pyramid: Pyramid, how: Reduce) -> list[Any]:
    """Create and fill levels ``1, 2, ...`` of ``pyramid`` in ``group``, each from the one before.

    Returns
    -------
    list of zarr.Array
        Every level, ``level0`` first.

    Notes
    -----
    Each level is read and written in tiles of whole output chunks of at
    most :data:`TILE_ELEMENTS` input pixels, so memory stays bounded for
    any output; the work is one pass over each level.
    """
    arrays = [level0]
    shapes = pyramid.shapes()
    for k in range(1, len(pyramid.factors)):
        steps = tuple(f // p for f, p in zip(pyramid.factors[k], pyramid.factors[k - 1]))
        src, dst = arrays[-1], _array_like(group, str(k), level0, shapes[k])
        for out in _tiles(dst.shape, dst.chunks, steps):
            inp = tuple(slice(s.start * f, min(s.stop * f, n)) for s, f, n in zip(out, steps, src.shape))
            dst[out] = reduce_block(np.asarray(src[inp]), steps, how)
        arrays.append(dst)
    return arrays


def multiscale_metadata(name: str, pyramid: Pyramid, how: Reduce, version: str) -> dict[str, Any]:
    """The ``multiscales[0]`` entry of ``pyramid`` (``version`` inside it for 0.4)."""
    entry: dict[str, Any] = {"name": name, "axes": [dict(a) for a in pyramid.axes],
                             "datasets": pyramid.datasets()}
    if pyramid.outer:
        entry["coordinateTransformations"] = [dict(t) for t in pyramid.outer]
    entry["type"] = how
    entry["metadata"] = {
        "description": "each level halves the spatial axes of the one before (ceil(n / 2) pixels, "
        "a partial last block); a pixel is " + _DESCRIPTIONS[how],
        "method": "zarrsample_core.Stitcher",
    }
    if version == "0.4":
        entry["version"] = "0.4"
    return entry


def ome_attributes(version: str, entries: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Group attributes holding the OME-Zarr ``entries``, other attributes of ``old`` kept.

    0.5 puts them under ``ome`` with its ``version`` (other ``ome`` keys
    kept); 0.4 at the top level.

    Examples
    --------
    >>> ome_attributes("0.5", {"labels": ["cells"]}, {"ome": {"labels": []}, "note": 1})
    {'ome': {'version': '0.5', 'labels': ['cells']}, 'note': 1}
    """
    attrs = dict(old or {})
    if version == "0.5":
        kept = {k: v for k, v in (attrs.get("ome") or {}).items() if k != "version"}
        attrs["ome"] = {"version": "0.5", **kept, **entries}
    elif version == "0.4":
        attrs.update(entries)
    else:
        raise ZarrsampleError(f"OME-Zarr version must be '0.4' or '0.5', got {version!r}")
    return attrs
