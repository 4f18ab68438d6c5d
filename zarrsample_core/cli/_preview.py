"""PNG previews: a low-resolution image, its mask and the planned patches.

A preview shows where patches come from: a low-resolution view of the
reference image (a pyramid level, block-averaged if needed), the sampling
mask as a semi-transparent colour, and the planned patches: their outlines
where a patch is at least ``OUTLINE_MIN_PIXELS`` preview pixels wide, a
density map (the patch area over each preview pixel, as a translucent
colour) where patches are smaller. Both leave the image visible.
Pillow is needed to resize and write PNGs; it is imported when a preview is
made, so the core imports without it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._checks import check_int
from .._errors import ZarrsampleError
from ..planning._plan import PatchPlan
from ..sources._image import Image
from ..sources._thumbnail import choose_level, open_level, read_reduced, reduce_factor

__all__ = [
    "DENSITY_ALPHA", "MASK_ALPHA", "MASK_COLOUR", "OUTLINE_ALPHA", "OUTLINE_MIN_PIXELS", "PATCH_COLOUR",
    "patch_density", "patch_outlines", "render_preview", "write_preview",
]

#: RGB of patch outlines and of the density map.
PATCH_COLOUR = (255, 221, 0)
#: Weight of ``PATCH_COLOUR`` blended over outline pixels.
OUTLINE_ALPHA = 0.7
#: Weight of ``PATCH_COLOUR`` over a preview pixel at the highest patch density.
DENSITY_ALPHA = 0.6
#: Patches narrower than this many preview pixels (along Y or X) are drawn as a density map.
OUTLINE_MIN_PIXELS = 4
#: Patches :func:`patch_density` takes at a time.
DENSITY_BATCH = 2**16
#: RGB blended over mask pixels, with weight ``MASK_ALPHA``.
MASK_COLOUR = (0, 170, 90)
MASK_ALPHA = 0.35


def _pillow() -> Any:
    try:
        from PIL import Image as PILImage
    except ImportError as exc:
        raise ImportError(
            'previews need Pillow, which is not installed: pip install "zarrsample[all]"'
        ) from exc
    return PILImage


def _plane(pixels: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """``pixels`` reduced to ``Y``, ``X`` (and ``C``): middle ``Z`` plane, first time point."""
    index = tuple(
        n // 2 if a == "Z" else 0 if a not in "CYX" else slice(None)
        for a, n in zip(axes, pixels.shape)
    )
    return pixels[index], "".join(a for a in axes if a in "CYX")


def _to_rgb(pixels: np.ndarray, axes: str, dtype: np.dtype) -> np.ndarray:
    """``(Y, X, 3)`` uint8 from a plane with axes among ``CYX``."""
    if "Y" not in axes or "X" not in axes:
        raise ZarrsampleError(f"a preview needs an image with Y and X axes, got axes {axes!r}")
    data = np.asarray(pixels, dtype=np.float64)
    if "C" in axes:
        data = np.moveaxis(data, axes.index("C"), -1)
        rest = axes.replace("C", "")
        n = data.shape[-1]
        data = data[..., :3] if n in (3, 4) else data.mean(axis=-1, keepdims=True)
    else:
        rest, data = axes, data[..., None]
    if rest != "YX":
        data = np.swapaxes(data, 0, 1)
    if dtype == np.uint8:
        scaled = data
    else:  # stretch the 0.5-99.5 percentiles over 0-255
        lo, hi = np.percentile(data, [0.5, 99.5]) if data.size else (0.0, 1.0)
        scaled = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
    rgb = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


def _view(image: Image, size: int, progress: str | None) -> tuple[np.ndarray, str]:
    """A view of ``image`` whose longest ``Y``/``X`` side is near ``size``."""
    roi = any(image.origin) or tuple(image.shape) != tuple(image.levels[image.level])
    level = image.level if roi else choose_level(image.levels, image.axes, side=size)
    source = open_level(image, level)
    pixels = read_reduced(source, reduce_factor(source.shape, source.axes, side=size), progress=progress)
    return _plane(pixels, source.axes)


def patch_outlines(
    shape: tuple[int, int], start: np.ndarray, stop: np.ndarray
) -> np.ndarray:
    """Pixels on the outline of rectangles, as one boolean image.

    Parameters
    ----------
    shape : (int, int)
        ``(height, width)`` of the canvas.
    start, stop : (n, 2) int arrays
        Inclusive first and last ``(y, x)`` pixel of each rectangle, inside
        the canvas, ``start <= stop``.

    Returns
    -------
    numpy.ndarray of bool, shape ``shape``

    Notes
    -----
    Vectorised with difference arrays: O(n + height * width), no loop over
    rectangles.

    Examples
    --------
    >>> patch_outlines((4, 6), np.array([[0, 1]]), np.array([[2, 4]])).astype(int)
    array([[0, 1, 1, 1, 1, 0],
           [0, 1, 0, 0, 1, 0],
           [0, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    h, w = shape
    (y0, x0), (y1, x1) = np.asarray(start, np.int64).T, np.asarray(stop, np.int64).T
    rows = np.zeros((h, w + 1), np.int64)
    cols = np.zeros((h + 1, w), np.int64)
    for y in (y0, y1):  # top and bottom edges
        np.add.at(rows, (y, x0), 1)
        np.add.at(rows, (y, x1 + 1), -1)
    for x in (x0, x1):  # left and right edges
        np.add.at(cols, (y0, x), 1)
        np.add.at(cols, (y1 + 1, x), -1)
    return (np.cumsum(rows, axis=1)[:, :w] > 0) | (np.cumsum(cols, axis=0)[:h] > 0)


def _segments(lo: np.ndarray, hi: np.ndarray, pixels: int, extent: int) -> list[tuple[np.ndarray, ...]]:
    """The overlap of ``[lo, hi)`` (image pixels) with each of ``pixels`` preview pixels along one axis.

    Three runs ``(first, stop, weight)`` per interval: the first preview
    pixel it touches, the whole pixels inside, the last pixel. Weights are in
    units of ``1 / pixels`` image pixels, so that a whole preview pixel
    weighs ``extent``; integer arithmetic throughout.
    """
    lo, hi = lo * pixels, hi * pixels  # preview pixel i spans [i * extent, (i + 1) * extent)
    a, b = lo // extent, (hi - 1) // extent
    first = np.minimum(hi, (a + 1) * extent) - lo
    last = np.where(b > a, hi - b * extent, 0)
    return [(a, a + 1, first), (a + 1, np.maximum(a + 1, b), np.full_like(a, extent)), (b, b + 1, last)]


def patch_density(
    shape: tuple[int, int], extent: tuple[int, int], start: np.ndarray, stop: np.ndarray
) -> np.ndarray:
    """Patch area over every pixel of a canvas that shows an image of ``extent`` pixels.

    Parameters
    ----------
    shape : (int, int)
        ``(height, width)`` of the canvas.
    extent : (int, int)
        ``(height, width)`` of the image, pixels; canvas pixel ``(i, j)``
        shows the image region ``[i, i + 1) * height_image / height`` by
        ``[j, j + 1) * width_image / width``.
    start, stop : (n, 2) int arrays
        First and one-past-last ``(y, x)`` image pixel of each patch,
        ``0 <= start < stop <= extent``.

    Returns
    -------
    numpy.ndarray of float64, shape ``shape``
        The area of the patches inside each canvas pixel's region over the
        region's area: 1 where one patch covers it, 0.25 where a quarter of
        it, 2 where two patches overlap over all of it.

    Notes
    -----
    The overlap of a patch with the canvas is nine rectangles of constant
    weight (first, inner and last pixels along each axis), added to a
    difference array with :func:`numpy.bincount`: O(n + height * width)
    time, no loop over patches; memory O(``DENSITY_BATCH`` + height * width)
    (patches are taken ``DENSITY_BATCH`` at a time).

    Examples
    --------
    >>> patch_density((2, 4), (4, 8), np.array([[0, 0], [1, 3]]), np.array([[2, 2], [4, 8]]))
    array([[1.  , 0.25, 0.5 , 0.5 ],
           [0.  , 0.5 , 1.  , 1.  ]])
    """
    h, w = shape
    start, stop = np.asarray(start, np.int64), np.asarray(stop, np.int64)
    difference = np.zeros((h + 1) * (w + 1), np.float64)
    for first in range(0, len(start), DENSITY_BATCH):  # batches bound the memory, not the work
        (y0, x0), (y1, x1) = start[first : first + DENSITY_BATCH].T, stop[first : first + DENSITY_BATCH].T
        rows, cols = _segments(y0, y1, h, int(extent[0])), _segments(x0, x1, w, int(extent[1]))
        index, weight = [], []
        for ya, yb, wy in rows:
            for xa, xb, wx in cols:
                area = (wy * wx).astype(np.float64)
                index += [ya * (w + 1) + xa, ya * (w + 1) + xb, yb * (w + 1) + xa, yb * (w + 1) + xb]
                weight += [area, -area, -area, area]
        difference += np.bincount(np.concatenate(index), np.concatenate(weight), minlength=len(difference))
    total = difference.reshape(h + 1, w + 1).cumsum(axis=0).cumsum(axis=1)[:h, :w]
    return np.maximum(total / (float(extent[0]) * float(extent[1])), 0.0)  # no -0.0 from rounding


def _draw_patches(canvas: np.ndarray, plan: PatchPlan) -> None:
    """Outlines or the density map of the patches of ``plan`` on ``canvas``, in place."""
    axes_of_plan = plan.spatial_axes
    if "Y" not in axes_of_plan or "X" not in axes_of_plan:
        raise ZarrsampleError(f"a preview needs a plan along Y and X, got spatial axes {axes_of_plan!r}")
    k = [axes_of_plan.index("Y"), axes_of_plan.index("X")]
    extent = np.asarray(plan.image_shape, np.int64)[k]
    canvas_shape = np.array(canvas.shape[:2], np.int64)
    first = plan.toplefts[:, k]
    last = np.minimum(first + np.asarray(plan.patch_size, np.int64)[k], extent)
    first = np.clip(first, 0, extent - 1)
    colour = np.asarray(PATCH_COLOUR, np.float64)
    narrowest = float(np.min(np.asarray(plan.patch_size, np.float64)[k] * canvas_shape / extent))
    if narrowest >= OUTLINE_MIN_PIXELS:
        start = np.clip(first * canvas_shape // extent, 0, canvas_shape - 1)
        stop = np.clip(-(-last * canvas_shape // extent) - 1, start, canvas_shape - 1)
        on = patch_outlines(canvas.shape[:2], start, stop)
        if on.mean() <= 0.5:  # outlines that would cover most of the image: a density map instead
            canvas[on] = np.rint((1 - OUTLINE_ALPHA) * canvas[on] + OUTLINE_ALPHA * colour).astype(np.uint8)
            return
    density = patch_density(canvas.shape[:2], (int(extent[0]), int(extent[1])), first, last)
    alpha = DENSITY_ALPHA * density / max(1.0, float(density.max()))
    canvas[...] = np.rint((1 - alpha[..., None]) * canvas + alpha[..., None] * colour).astype(np.uint8)


def render_preview(
    image: Image,
    *,
    plan: PatchPlan | None = None,
    mask: Image | None = None,
    size: int = 1024,
    progress: bool = False,
) -> Any:
    """A preview of ``image`` with ``mask`` and the patches of ``plan``.

    Parameters
    ----------
    image : Image
        The reference image. A low-resolution pyramid level is read when it
        has one (see :func:`open_image`), block-averaged to about ``size``.
    plan : PatchPlan, optional
        Patches to draw (pad excluded) in ``PATCH_COLOUR``. Where a patch
        is at least ``OUTLINE_MIN_PIXELS`` preview pixels wide along ``Y``
        and ``X``, its outline, one pixel wide, blended with weight
        ``OUTLINE_ALPHA``; where patches are smaller (or their outlines
        would cover more than half of the preview), a density map: each
        pixel blended with weight ``DENSITY_ALPHA`` times the patch area
        over it (:func:`patch_density`), divided by the largest such area
        when patches overlap. ``Y`` and ``X`` of 3-D plans are projected
        onto the plane.
    mask : Image, optional
        A sampling mask at any scale, shown as ``MASK_COLOUR`` blended with
        weight ``MASK_ALPHA`` where the (block-averaged) mask is >= 0.5.
    size : int
        Longest side of the preview, pixels; the other side keeps the
        aspect ratio of ``image``.
    progress : bool
        Show a progress bar while a large level is read (on a terminal
        only, see :func:`zarrsample_core._progress.progress`).

    Returns
    -------
    PIL.Image.Image
        An RGB image. Of 3-D images the middle ``Z`` plane is shown, of
        time series the first time point; uint8 images keep their values,
        others are stretched between their 0.5 and 99.5 percentiles.

    Raises
    ------
    ImportError
        Pillow is not installed (``pip install "zarrsample[all]"``).
    TypeError, ZarrsampleError
        Bad ``size``; an image or mask without ``Y`` and ``X`` axes.

    Notes
    -----
    Memory: the view (tiles of bounded size read in threads, see
    ``read_reduced``) plus a few ``size``-squared arrays; the patches cost
    O(patches) on top.

    Examples
    --------
    >>> from zarrsample_core import ImageCollection, PatchSampler, open_image
    >>> image = open_image(np.full((3, 64, 128), 200, np.uint8), axes="CYX")
    >>> coll = ImageCollection({"images": image}, spatial_axes="YX")
    >>> plan = PatchSampler(32, spatial_axes="YX").plan(coll)
    >>> picture = render_preview(image, plan=plan, size=256)
    >>> picture.size, picture.getpixel((0, 0))  # an outline over grey 200
    ((256, 128), (238, 215, 60))
    """
    pil = _pillow()
    size = check_int(size, "size", minimum=1)
    pixels, axes = _view(image, size, "preview" if progress else None)
    rgb = _to_rgb(pixels, axes, image.dtype)
    long_side = max(rgb.shape[:2])
    height = max(1, round(rgb.shape[0] * size / long_side))
    width = max(1, round(rgb.shape[1] * size / long_side))
    resample = pil.Resampling.BILINEAR if long_side > size else pil.Resampling.NEAREST
    canvas = np.array(pil.fromarray(rgb).resize((width, height), resample))
    if mask is not None:
        values, mask_axes = _view(mask, size, "preview mask" if progress else None)
        if "Y" not in mask_axes or "X" not in mask_axes:
            raise ZarrsampleError(f"a preview mask needs Y and X axes, got axes {mask.axes!r}")
        values = values.reshape([n for a, n in zip(mask_axes, values.shape) if a in "YX"])
        if mask_axes.replace("C", "") != "YX":
            values = values.T
        on = pil.fromarray(((values >= 0.5) * 255).astype(np.uint8)).resize((width, height), pil.Resampling.NEAREST)
        on = np.array(on) > 0
        blended = (1 - MASK_ALPHA) * canvas[on] + MASK_ALPHA * np.asarray(MASK_COLOUR, np.float64)
        canvas[on] = np.rint(blended).astype(np.uint8)
    if plan is not None and len(plan):
        _draw_patches(canvas, plan)
    return pil.fromarray(canvas)


def write_preview(
    path: str | os.PathLike[str],
    image: Image,
    *,
    plan: PatchPlan | None = None,
    mask: Image | None = None,
    size: int = 1024,
    progress: bool = False,
) -> tuple[int, int]:
    """Write :func:`render_preview` to ``path`` as a PNG; return its ``(width, height)``.

    Raises
    ------
    ImportError
        Pillow is not installed.
    FileNotFoundError
        The directory of ``path`` does not exist (checked before anything
        is read).
    """
    folder = os.path.dirname(os.fspath(path)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"preview path {os.fspath(path)!r}: directory {folder!r} does not exist")
    picture = render_preview(image, plan=plan, mask=mask, size=size, progress=progress)
    picture.save(path, format="PNG")
    return picture.size
