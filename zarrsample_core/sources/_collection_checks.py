"""Checks of an ImageCollection's modalities that warn about inputs probably not meant.

Each check is accepted input of the zarrdataset-compatible surface (a mask
stretched to any shape, any modality name, any mask values), so each warns
with :class:`~zarrsample_core.ZarrsampleWarning` and says what was assumed;
none of them raises.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .._errors import ZarrsampleWarning
from ._placement import axis_map, axis_placement

__all__ = [
    "MASK_KEY", "check_aspect", "check_mask_values", "check_modality_names", "fits_one_downsampling",
    "stored_extent",
]

#: The modality that restricts where patches are sampled.
MASK_KEY = "masks"


def check_modality_names(names: Sequence[str]) -> None:
    """Warn when no modality is ``"masks"`` but one looks meant to be (``"mask"``, ``"Masks"``, ``"msks"``).

    zarrdataset takes the first key that contains ``"mask"`` as the mask;
    zarrsample takes only ``"masks"`` and reads other keys as data.
    """
    if MASK_KEY in names[1:]:
        return
    for name in names[1:]:
        if "mask" in name.lower() or difflib.get_close_matches(name.lower(), [MASK_KEY], cutoff=0.75):
            warnings.warn(
                f"modality {name!r} is read as data alongside the reference {names[0]!r}, not as the "
                f"sampling mask: only the key {MASK_KEY!r} restricts where patches are taken; rename it "
                f"to {MASK_KEY!r} if it is the mask",
                ZarrsampleWarning, stacklevel=3,
            )
            return


def fits_one_downsampling(reference: Sequence[int], modality: Sequence[int]) -> bool:
    """Whether one factor ``f`` gives every extent of ``modality`` from ``reference``.

    Extent ``m`` comes from ``n`` by a factor ``f`` when ``|n / f - m| < 1``
    (``floor`` or ``ceil`` of ``n / f``, as pyramids of odd sizes do), i.e.
    ``n / (m + 1) < f < n / (m - 1)``; the intervals of all axes must meet.
    Axes of extent 1 in either image are left out.

    Examples
    --------
    >>> fits_one_downsampling((1001, 2000), (500, 1000)), fits_one_downsampling((3000, 2000), (77, 33))
    (True, False)
    >>> fits_one_downsampling((3000, 2000), (200, 300)), fits_one_downsampling((64, 48), (128, 96))
    (False, True)
    """
    low, high = Fraction(0), None
    for n, m in zip(reference, modality):
        if n <= 1 or m <= 1:
            continue
        low = max(low, Fraction(n, m + 1))
        upper = Fraction(n, m - 1)
        high = upper if high is None else min(high, upper)
    return high is None or low < high


def check_aspect(name: str, reference: Any, image: Any, axes: str, n: Sequence[int], m: Sequence[int]) -> None:
    """Warn when modality ``image`` has another aspect ratio than ``reference`` along ``axes``.

    ``n`` and ``m`` are their extents per axis of ``axes``. Silent when one
    downsampling factor explains the shapes (:func:`fits_one_downsampling`)
    or when both images' placements (OME-Zarr scale, TIFF pixel sizes)
    cover the same physical extent on every axis, i.e. the metadata says so.
    """
    if fits_one_downsampling(n, m) or _placed_alike(reference, image, axes, n, m):
        return
    scales = ", ".join(f"{a} {mi}/{ni} = {mi / ni:.4g}" for a, ni, mi in zip(axes, n, m) if ni > 1 and mi > 1)
    swapped = len(axes) == 2 and fits_one_downsampling(n, m[::-1])
    warnings.warn(
        f"modality {name!r} ({getattr(image, 'name', '?')}, {tuple(m)} along {axes!r}) does not have the "
        f"aspect ratio of the reference ({getattr(reference, 'name', '?')}, {tuple(n)}); it is stretched to "
        f"cover it with a different scale per axis ({scales})"
        + ("; its transpose would fit: are its axes swapped?" if swapped else "")
        + "; give both images placement metadata (OME-Zarr scale) if this is meant",
        ZarrsampleWarning, stacklevel=3,
    )


def _placed_alike(reference: Any, image: Any, axes: str, n: Sequence[int], m: Sequence[int]) -> bool:
    for axis, ni, mi in zip(axes, n, m):
        if ni <= 1 or mi <= 1:
            continue
        ref, mod = axis_placement(reference, axis), axis_placement(image, axis)
        stored = (stored_extent(reference, axis, ni), stored_extent(image, axis, mi))
        if ref is None or mod is None or axis_map(ref, mod, ni, mi, stored)[1] is not None:
            return False
    return True


def stored_extent(image: Any, axis: str, extent: int) -> int:
    """The extent of the whole stored array on ``axis`` (before a region of interest)."""
    levels, level = getattr(image, "levels", None), getattr(image, "level", 0)
    if axis not in image.axes or not levels:
        return extent
    return int(levels[level][image.axes.index(axis)])


def check_mask_values(name: str, image: Any, block: np.ndarray) -> bool:
    """Warn (and return True) when a float mask holds values other than 0 and 1.

    The rule for every mask dtype is "non-zero covers": 0.3, -1 and NaN
    cover their pixel as fully as 1 does (no weighting), as in zarrdataset.
    A float mask with other values is probably a probability map meant to
    be thresholded.
    """
    if block.dtype.kind not in "fc":
        return False
    other = ~np.isin(block, (0, 1))
    if not other.any():
        return False
    first = block[other].flat[0]
    example = f"{float(first):g}" if block.dtype.kind == "f" else str(first)
    warnings.warn(
        f"mask {name!r} ({getattr(image, 'name', '?')}) is {block.dtype} with values other than 0 and 1 "
        f"(e.g. {example}): every non-zero value covers its pixel fully, so the mask is used as "
        f"mask != 0; threshold it (e.g. mask > 0.5) if it holds probabilities",
        ZarrsampleWarning, stacklevel=2,
    )
    return True
