"""Tissue masks of whole-slide images: grey level, Otsu threshold, clean-up.

``tissue_mask`` reads a low-resolution pyramid level of a slide, turns it
grey, keeps the pixels darker than an Otsu threshold (tissue on a bright
background), removes specks and fills holes, and returns the mask as an
:class:`~zarrsample_core.Image` that an :class:`~zarrsample_core.ImageCollection`
takes as its ``"masks"`` modality at its own scale.
"""

from __future__ import annotations

import os
from math import isfinite
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage  # type: ignore[import-untyped]

from .._checks import check_bool, check_int
from .._errors import ZarrsampleError
from ..sources._image import Image
from ..sources._io import open_image
from ..sources._thumbnail import choose_level, open_level, read_reduced, reduce_factor

__all__ = ["clean_mask", "grey_levels", "otsu_threshold", "tissue_mask"]

#: Luminance weights of red, green and blue (ITU-R BT.709, as scikit-image's rgb2gray).
LUMINANCE = (0.2125, 0.7154, 0.0721)


def otsu_threshold(values: ArrayLike, *, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` over a ``bins``-bin histogram.

    Parameters
    ----------
    values : array_like
        Grey levels (any shape; NaN and infinities are ignored).
    bins : int
        Number of equal-width bins spanning ``[min, max]`` of the values.

    Returns
    -------
    float
        The bin edge ``t`` maximising the between-class variance
        ``w0 * w1 * (mean0 - mean1) ** 2`` of the classes ``values < t`` and
        ``values >= t`` (means of the values themselves, not of bin centres;
        the first edge wins a tie). For constant values, that value (so
        ``values < t`` is empty).

    Raises
    ------
    TypeError
        ``bins`` is not an int.
    ZarrsampleError
        ``bins < 2``, or no finite value.

    Notes
    -----
    O(n log bins) time (one ``searchsorted`` and two ``bincount``), O(n)
    memory. References: N. Otsu, "A threshold selection method from
    gray-level histograms", IEEE Trans. SMC 9 (1979).

    Examples
    --------
    >>> otsu_threshold([10, 11, 12, 200, 201, 202])
    12.25
    """
    bins = check_int(bins, "bins", minimum=2)
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        raise ZarrsampleError("values must hold at least one finite number, got none")
    lo, hi = flat.min(), flat.max()
    if lo == hi:
        return float(hi)
    edges = np.linspace(lo, hi, bins + 1)
    index = np.searchsorted(edges[1:-1], flat, side="right")  # edges[k] <= v < edges[k + 1]
    centred = flat - flat.mean()
    count0 = np.cumsum(np.bincount(index, minlength=bins))[:-1].astype(np.float64)
    sum0 = np.cumsum(np.bincount(index, weights=centred, minlength=bins))[:-1]
    count1 = flat.size - count0
    sum1 = centred.sum() - sum0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = count0 * count1 * (sum0 / count0 - sum1 / count1) ** 2
    between[(count0 == 0) | (count1 == 0)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def grey_levels(pixels: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Grey image of ``pixels``: luminance over the ``C`` axis.

    Parameters
    ----------
    pixels : numpy.ndarray
        One array dimension per letter of ``axes``.
    axes : str
        Axis letters; ``C`` of size 3 or 4 is RGB(A) (luminance of RGB,
        weights ``LUMINANCE``), size 1 a grey channel, other sizes are
        averaged. Other non-spatial axes must have size 1.

    Returns
    -------
    grey : numpy.ndarray
        float64, one dimension per spatial axis.
    spatial_axes : str
        The letters of those dimensions, in ``axes`` order.

    Raises
    ------
    ZarrsampleError
        No spatial axis (``Z``, ``Y``, ``X``), or a ``T`` axis longer than 1.

    Examples
    --------
    >>> rgb = np.array([[[255, 0]], [[255, 0]], [[255, 0]]], np.uint8)  # (C, Y, X)
    >>> grey_levels(rgb, "CYX")
    (array([[255.,   0.]]), 'YX')
    """
    spatial = "".join(a for a in axes if a in "ZYX")
    if not spatial:
        raise ZarrsampleError(
            f"a tissue mask needs an image with spatial axes (Z, Y or X), got axes {axes!r}"
        )
    wide = {a: n for a, n in zip(axes, pixels.shape) if a not in "ZYXC" and n > 1}
    if wide:
        raise ZarrsampleError(
            f"a tissue mask needs one time point, got axes {axes!r} with sizes {wide}; open one "
            "time point with open_image(..., roi=...)"
        )
    data = np.asarray(pixels, dtype=np.float64)
    if "C" in axes:
        c = axes.index("C")
        data = np.moveaxis(data, c, -1)
        n = data.shape[-1]
        if n in (3, 4):
            data = data[..., :3] @ np.asarray(LUMINANCE)
        else:
            data = data.mean(axis=-1)
    rest = "".join(a for a in axes if a != "C")
    keep = tuple(i for i, a in enumerate(rest) if a in "ZYX")
    return data.reshape([data.shape[i] for i in keep]), spatial


def clean_mask(mask: np.ndarray, *, min_size: int = 16, fill_holes: bool = True) -> np.ndarray:
    """Drop connected components smaller than ``min_size`` pixels, fill holes.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        Foreground, any number of dimensions.
    min_size : int
        Components (full connectivity: diagonal neighbours connect) with
        fewer pixels are removed; 0 or 1 keeps everything.
    fill_holes : bool
        Set background regions not connected to the border (face
        connectivity) to foreground, after the removal.

    Returns
    -------
    numpy.ndarray of bool
        Same shape.

    Examples
    --------
    >>> m = np.zeros((6, 7), bool); m[1:5, 1:5] = True; m[2, 2] = False; m[0, 6] = True
    >>> clean_mask(m, min_size=2).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1, 0, 0],
           [0, 1, 1, 1, 1, 0, 0],
           [0, 1, 1, 1, 1, 0, 0],
           [0, 1, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    min_size = check_int(min_size, "min_size")
    fill_holes = check_bool(fill_holes, "fill_holes")
    mask = np.asarray(mask, dtype=bool)
    if min_size > 1 and mask.any():
        labels, _ = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
        sizes = np.bincount(labels.reshape(-1))
        keep = sizes >= min_size
        keep[0] = False
        mask = keep[labels]
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask


def tissue_mask(
    image: Image | str | os.PathLike[str] | Any,
    *,
    level: int | None = None,
    threshold: float | None = None,
    min_size: int = 16,
    fill_holes: bool = True,
    side: int = 1024,
    progress: bool = True,
) -> Image:
    """Boolean tissue mask of a slide, from a low-resolution level.

    Parameters
    ----------
    image : Image, str or os.PathLike
        An image from :func:`open_image`, or a source that ``open_image``
        opens without further arguments (an OME-Zarr path or URL). Other
        pyramid levels are reached through the OME-Zarr group holding it.
    level : int, optional
        Pyramid level to read. Default: the coarsest level whose longest
        ``Y``/``X`` side is at least ``side`` pixels (level 0 when none is),
        or ``image.level`` when ``image`` has a region of interest.
    threshold : float, optional
        Grey level below which a pixel is tissue, on the image's value scale
        (0-255 for uint8). Default: Otsu's threshold (:func:`otsu_threshold`).
    min_size : int
        Tissue components smaller than this many mask pixels are removed.
    fill_holes : bool
        Fill background holes enclosed by tissue.
    side : int
        Wanted longest side of the mask, pixels. A level longer than
        ``2 * side - 1`` (a plain array without a pyramid, or an explicit
        ``level``) is block-averaged by the integer factor
        ``longest // side`` before thresholding.
    progress : bool
        Show a progress bar while a level is read tile by tile to be
        block-averaged (an image without a pyramid), when stderr is a
        terminal and tqdm is installed.

    Returns
    -------
    Image
        A bool numpy-backed image with the spatial axes of ``image`` (in its
        order), covering the same area as ``image``. Its extent relative to
        ``image`` sets its scale in an :class:`ImageCollection`.

    Raises
    ------
    TypeError
        A parameter of the wrong type.
    FileNotFoundError, KeyError, ZarrsampleError
        As :func:`open_image` for a path; also: an image without spatial
        axes, several time points, ``level`` out of range, a bad
        ``threshold`` or ``side``.

    Notes
    -----
    Tissue is darker than the background (bright-field slides: H&E, IHC).
    Colour images (a ``C`` axis of 3 or 4) become grey by luminance; other
    channel counts are averaged. Cost: reading the level (bounded to tiles
    of ``TILE_BYTES`` when block-averaged), then O(pixels) for the
    threshold, labelling and hole filling; memory a few float64 copies of
    the mask-sized image (about 100 MB for a 2047 x 2047 mask).

    Examples
    --------
    >>> rgb = np.full((3, 64, 64), 230, np.uint8)
    >>> rgb[:, 16:48, 8:40] = 90                      # one dark square of "tissue"
    >>> mask = tissue_mask(open_image(rgb, axes="CYX"))
    >>> mask.axes, mask.shape, int(mask.read().sum())
    ('YX', (64, 64), 1024)
    """
    if not isinstance(image, Image):
        image = open_image(image)
    side = check_int(side, "side", minimum=1)
    if level is None:
        roi = any(image.origin) or tuple(image.shape) != tuple(image.levels[image.level])
        level = image.level if roi else choose_level(image.levels, image.axes, side=side)
    source = open_level(image, level)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, Real) or not isfinite(threshold):
            raise TypeError(f"threshold must be a finite number or None, got {threshold!r}")
    min_size = check_int(min_size, "min_size")
    factor = reduce_factor(source.shape, source.axes, side=side)
    fill_holes = check_bool(fill_holes, "fill_holes")
    progress = check_bool(progress, "progress")
    pixels = read_reduced(source, factor, progress="tissue mask" if progress else None)
    grey, spatial = grey_levels(pixels, source.axes)
    cut = otsu_threshold(grey) if threshold is None else float(threshold)
    mask = clean_mask(grey < cut, min_size=min_size, fill_holes=fill_holes)
    return open_image(mask, axes=spatial)
