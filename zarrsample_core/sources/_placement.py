"""Where an image's pixels lie in physical space, and windows mapped between images.

An image's placement on one axis is its pixel size ``scale`` and the
physical position ``translation`` of the centre of its pixel 0, as OME-Zarr
coordinate transformations state them (TIFF pixel sizes likewise). Pixel
``i`` covers ``[translation + scale * (i - 1/2), translation + scale * (i + 1/2))``.

A window ``[start, stop)`` of a reference image maps to another modality
through the edges: the reference edge ``e`` (the left edge of pixel ``e``)
is the modality edge ``ratio * e + offset`` with ``ratio = s_ref / s_mod``
and ``offset = (t_ref - t_mod) / s_mod + (1 - ratio) / 2``. The modality
window starts at ``floor(ratio * start + offset)`` and is
``max(1, round_half_up(ratio * (stop - start)))`` long, so every window of
one size maps to windows of one size (a batch stacks).

Values are exact fractions of the decimal numbers as written (``0.1`` is
``1/10``, not the binary double nearest to it), so a pyramid of scales
``0.25, 0.5, 1.0`` or ``0.1, 0.2, 0.4`` maps by exact factors. When the
metadata says nothing, the ratio of shapes is used with corners aligned
(``ratio = m / n``, ``offset = 0``), which is what the scales of a pyramid
halved with floor sizes would say only approximately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Any

from .._errors import ZarrsampleError

__all__ = [
    "AxisMap",
    "LENGTH_UNITS",
    "Placement",
    "axis_map",
    "axis_placement",
    "exact",
    "map_window",
    "micrometres",
    "open_at_resolution",
]

#: Micrometres per unit, for the OME-Zarr (UDUNITS-2) length units.
LENGTH_UNITS: dict[str, Fraction] = {
    "angstrom": Fraction(1, 10_000),
    "attometer": Fraction(1, 10**12),
    "centimeter": Fraction(10_000),
    "decimeter": Fraction(100_000),
    "exameter": Fraction(10**24),
    "femtometer": Fraction(1, 10**9),
    "foot": Fraction(304_800),
    "gigameter": Fraction(10**15),
    "hectometer": Fraction(10**8),
    "inch": Fraction(25_400),
    "kilometer": Fraction(10**9),
    "megameter": Fraction(10**12),
    "meter": Fraction(10**6),
    "micrometer": Fraction(1),
    "mile": Fraction(1_609_344_000),
    "millimeter": Fraction(1_000),
    "nanometer": Fraction(1, 1_000),
    "parsec": Fraction(30_856_775_814_913_673) * 10**6,
    "petameter": Fraction(10**21),
    "picometer": Fraction(1, 10**6),
    "terameter": Fraction(10**18),
    "yard": Fraction(914_400),
    "yoctometer": Fraction(1, 10**18),
    "yottameter": Fraction(10**30),
    "zeptometer": Fraction(1, 10**15),
    "zettameter": Fraction(10**27),
    # spellings other tools write
    "micron": Fraction(1),
    "um": Fraction(1),
    "µm": Fraction(1),
    "μm": Fraction(1),
    "nm": Fraction(1, 1_000),
    "mm": Fraction(1_000),
    "cm": Fraction(10_000),
    "m": Fraction(10**6),
    "micrometre": Fraction(1),
    "nanometre": Fraction(1, 1_000),
    "millimetre": Fraction(1_000),
    "centimetre": Fraction(10_000),
    "metre": Fraction(10**6),
}

#: Ratios whose reduced denominator is larger are rounded to the nearest
#: fraction with at most this denominator (values such as 0.30000000000000004
#: written by float arithmetic): far below one pixel at any image size.
MAX_DENOMINATOR = 1 << 20


def exact(value: Any) -> Fraction:
    """The exact fraction of a number as written in decimal (``0.1`` -> ``1/10``).

    Examples
    --------
    >>> exact(0.1), exact(2), exact("0.25")
    (Fraction(1, 10), Fraction(2, 1), Fraction(1, 4))
    """
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(repr(float(value)) if not isinstance(value, str) else value)


def micrometres(unit: str | None) -> Fraction | None:
    """Micrometres per ``unit`` (a length unit name), or None if it is not one."""
    if not isinstance(unit, str):
        return None
    return LENGTH_UNITS.get(unit.strip().lower()) or LENGTH_UNITS.get(unit.strip())


@dataclass(frozen=True)
class Placement:
    """An image's pixel size and pixel-0 centre on one axis, in ``unit``.

    ``unit`` is a length unit name (micrometre when a file's metadata gives
    sizes without one) or None when unknown.
    """

    scale: Fraction
    translation: Fraction
    unit: str | None = None

    def shifted(self, origin: int) -> Placement:
        """The placement of the same pixels indexed from ``origin`` (a region of interest)."""
        return Placement(self.scale, self.translation + self.scale * origin, self.unit)


@dataclass(frozen=True)
class AxisMap:
    """Reference edge ``e`` -> modality edge ``ratio * e + offset`` on one axis."""

    ratio: Fraction
    offset: Fraction = Fraction(0)

    @cached_property
    def integers(self) -> tuple[int, int, int]:
        """``(r, o, d)`` with ``ratio = r / d`` and ``offset = o / d`` (one denominator)."""
        d = math.lcm(self.ratio.denominator, self.offset.denominator)
        return self.ratio.numerator * (d // self.ratio.denominator), self.offset.numerator * (
            d // self.offset.denominator
        ), d


def _reduced(value: Fraction) -> Fraction:
    return value if value.denominator <= MAX_DENOMINATOR else value.limit_denominator(MAX_DENOMINATOR)


def axis_placement(image: Any, axis: str) -> Placement | None:
    """The placement of ``image`` on ``axis`` in its own (region-of-interest) pixels, if known."""
    placement = getattr(image, "placement", None)
    if placement is None or axis not in image.axes:
        return None
    i = image.axes.index(axis)
    where = placement[i]
    return None if where is None else where.shifted(int(image.origin[i]))


def axis_map(
    reference: Placement | None, modality: Placement | None, n: int, m: int,
    stored: tuple[int, int] | None = None,
) -> tuple[AxisMap, str | None]:
    """How reference pixels map to modality pixels on one axis.

    Parameters
    ----------
    reference, modality : Placement or None
        The two images' placements on this axis (None: no metadata).
    n, m : int
        Reference and modality extents on this axis (pixels), after any
        region of interest (whose start the placements include).
    stored : (int, int), optional
        The extents of the whole stored arrays, which the physical extents
        are compared on; default ``(n, m)``.

    Returns
    -------
    AxisMap, str or None
        The map, and why the ratio of shapes was used although both images
        carry placements (their units cannot be compared, or their physical
        extents disagree by more than two of the larger pixels), else None.

    Examples
    --------
    An odd-sized pyramid: level 1 of a 1001-pixel axis has 500 pixels, scale
    2 and translation 0.5; the reference window starting at 128 starts at 64:

    >>> ref, low = Placement(Fraction(1), Fraction(0)), Placement(Fraction(2), Fraction(1, 2))
    >>> amap, why = axis_map(ref, low, 1001, 500)
    >>> amap, why, map_window(128, 256, amap)
    (AxisMap(ratio=Fraction(1, 2), offset=Fraction(0, 1)), None, (64, 64))
    """
    by_shape = AxisMap(Fraction(m, n))
    if reference is None or modality is None:
        return by_shape, None
    units = (reference.unit, modality.unit)
    if units[0] == units[1]:
        factor = Fraction(1)
    else:
        um_ref, um_mod = micrometres(units[0]), micrometres(units[1])
        if um_ref is None or um_mod is None:
            return by_shape, f"units {units[0]!r} and {units[1]!r} cannot be compared"
        factor = um_ref / um_mod  # reference values in modality units
    s_ref, t_ref = reference.scale * factor, reference.translation * factor
    s_mod, t_mod = modality.scale, modality.translation
    n_all, m_all = stored or (n, m)
    extent_ref, extent_mod = s_ref * n_all, s_mod * m_all
    if abs(extent_ref - extent_mod) > 2 * max(s_ref, s_mod):
        return by_shape, (
            f"physical extents disagree: {float(extent_ref):g} (reference, {n_all} px x "
            f"{float(s_ref):g}) and {float(extent_mod):g} ({m_all} px x {float(s_mod):g})"
        )
    ratio = _reduced(s_ref / s_mod)
    offset = _reduced((t_ref - t_mod) / s_mod + (1 - ratio) / 2)
    return AxisMap(ratio, offset), None


def map_window(start: int, stop: int, amap: AxisMap) -> tuple[int, int]:
    """The modality window ``(start_m, size_m)`` of a reference window on one axis.

    ``start_m = floor(ratio * start + offset)`` and
    ``size_m = max(1, round_half_up(ratio * (stop - start)))``, in exact
    integer arithmetic.

    Examples
    --------
    >>> map_window(10, 42, AxisMap(Fraction(1, 2)))
    (5, 16)
    >>> map_window(-5, 15, AxisMap(Fraction(3, 7)))
    (-3, 9)
    """
    r, o, d = amap.integers
    start = int(start)
    return (r * start + o) // d, max(1, (2 * r * (int(stop) - start) + d) // (2 * d))


#: A level matches ``resolution`` when its pixel size is within this fraction of it.
RESOLUTION_TOLERANCE = 0.1


def open_at_resolution(open_level: Any, resolution: Any) -> Any:
    """The image of the first pyramid level whose pixel size matches ``resolution``.

    ``open_level(level)`` opens one level. The pixel size of a level is the
    mean of its ``Y`` and ``X`` pixel sizes in micrometres.

    Raises
    ------
    TypeError
        ``resolution`` is not a number.
    ZarrsampleError
        ``resolution`` not positive and finite, a level without a known pixel
        size, or no level within :data:`RESOLUTION_TOLERANCE` (the message
        lists each level's pixel size).
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)):
        raise TypeError(f"resolution must be a number of micrometres per pixel, got {resolution!r}")
    if not 0 < resolution < math.inf:
        raise ZarrsampleError(f"resolution must be a positive number of micrometres per pixel, got {resolution!r}")
    first = open_level(0)
    found = []
    for level in range(len(first.levels)):
        image = first if level == 0 else open_level(level)
        sizes = [v for a, v in image.pixel_size.items() if a in "YX"]
        if not sizes or any(v is None for v in sizes):
            raise ZarrsampleError(
                f"resolution={resolution} needs pixel sizes, but {image.name} states none for its "
                f"axes {image.axes!r}; choose a level with level= instead"
            )
        size = sum(sizes) / len(sizes)
        if abs(size - resolution) <= RESOLUTION_TOLERANCE * resolution:
            return image
        found.append(f"level {level}: {size:.4g}")
    raise ZarrsampleError(
        f"resolution={resolution} um/px matches no level of {first.name} within "
        f"{RESOLUTION_TOLERANCE:.0%}: {', '.join(found)} um/px"
    )
