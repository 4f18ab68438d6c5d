"""OME-Zarr coordinate transformations as written, turned into placements.

A dataset's (or multiscale's) ``coordinateTransformations`` give its
``scale`` and ``translation``; OME-Zarr 0.6 nests them in ``sequence``
transformations and names the axes in ``coordinateSystems``. Only scale,
translation and identity can place an image for zarrsample; any other
transformation leaves the level without a placement (the ratio of shapes
then aligns it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from .._errors import ZarrsampleError
from ._placement import Placement, exact

__all__ = ["multiscale_placement", "system_axes", "transform", "transform_vector"]


def transform(node: Mapping[str, Any], kind: str) -> Any:
    """The ``kind`` ("scale" or "translation") vector of a node's coordinateTransformations, as written.

    0.6 ``sequence`` transformations are looked into. A sequence holding a
    transformation other than scale, translation or identity (affine,
    rotation, ...) has no scale or translation zarrsample can use: None.
    """
    transforms = node.get("coordinateTransformations")
    found = None
    for t in _flat(transforms if isinstance(transforms, Sequence) else ()):
        kind_of = t.get("type")
        if kind_of not in ("scale", "translation", "identity"):
            return None
        if kind_of == kind and found is None:
            found = t.get(kind)
    return found


def _flat(transforms: Sequence[Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for t in transforms:
        if not isinstance(t, Mapping):
            continue
        inner = t.get("transformations")
        if t.get("type") == "sequence" and isinstance(inner, Sequence):
            out.extend(_flat(inner))
        else:
            out.append(t)
    return out


def system_axes(multiscale: Mapping[str, Any]) -> Any:
    """The axes of the coordinate system (0.6) the first level maps into, if any."""
    systems = multiscale.get("coordinateSystems")
    if not isinstance(systems, Sequence) or not systems:
        return None
    datasets = multiscale.get("datasets") or [{}]
    target = next((
        t.get("output", {}).get("name") for t in (datasets[0].get("coordinateTransformations") or [])
        if isinstance(t, Mapping) and isinstance(t.get("output"), Mapping)
    ), None)
    chosen = next((s for s in systems if isinstance(s, Mapping) and s.get("name") == target), systems[0])
    return chosen.get("axes") if isinstance(chosen, Mapping) else None


def transform_vector(value: Any, ndim: int, what: str, where: str, *, positive: bool) -> list[Fraction] | None:
    """A scale or translation as exact fractions, None when absent; one finite number per axis or an error."""
    if value is None:
        return None
    ok = (
        isinstance(value, (list, tuple)) and len(value) == ndim
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and (not positive or all(v > 0 for v in value))
    )
    if not ok:
        rule = "positive finite numbers" if positive else "finite numbers"
        raise ZarrsampleError(
            f"OME-Zarr metadata of {where}: {what} must be {ndim} {rule} (one per axis), got {value!r}"
        )
    return [exact(v) for v in value]


def multiscale_placement(multiscale: Any, index: int, ndim: int, where: str) -> tuple[Placement, ...] | None:
    """Each axis' placement of pyramid level ``index`` of an OME-Zarr multiscale.

    The level's ``scale`` and ``translation`` are composed with the
    multiscale's own ones (applied after). None when no ``scale`` is given
    at all (then the ratio of shapes places the level).

    Raises
    ------
    ZarrsampleError
        A scale or translation that is not one finite number per axis
        (scales positive).

    Examples
    --------
    >>> from zarrsample_core.sources._ome import Multiscale
    >>> ms = Multiscale("0.4", ("y", "x"), ("0", "1"), ([1, 1], [2, 2]), (None, [0.5, 0.5]),
    ...                 ("micrometer", "micrometer"), ([0.25, 0.25], None))
    >>> multiscale_placement(ms, 1, 2, "img.zarr")[0]
    Placement(scale=Fraction(1, 2), translation=Fraction(1, 8), unit='micrometer')
    """
    scales, translations = multiscale.scales, multiscale.translations
    scale = transform_vector(scales[index] if index < len(scales) else None, ndim, f"the scale of level {index}", where, positive=True)
    shift = transform_vector(
        translations[index] if index < len(translations) else None, ndim,
        f"the translation of level {index}", where, positive=False,
    )
    outer_scale, outer_shift = multiscale.outer
    outer_s = transform_vector(outer_scale, ndim, "the multiscale scale", where, positive=True)
    outer_t = transform_vector(outer_shift, ndim, "the multiscale translation", where, positive=False)
    if scale is None and outer_s is None:
        return None
    one, zero = [Fraction(1)] * ndim, [Fraction(0)] * ndim
    scale, shift, outer_s, outer_t = scale or one, shift or zero, outer_s or one, outer_t or zero
    units = multiscale.units if multiscale.units is not None and len(multiscale.units) == ndim else (None,) * ndim
    return tuple(
        Placement(os * s, os * t + ot, unit)
        for s, t, os, ot, unit in zip(scale, shift, outer_s, outer_t, units)
    )
