"""Low-resolution views of an image: pick a pyramid level, block-average it.

Shared by :func:`~zarrsample_core.inference._tissue.tissue_mask` and the PNG
previews. A view is the chosen pyramid level, block-averaged over ``Y`` and
``X`` by an integer factor when the level is still much larger than wanted
(a plain array without a pyramid), read in chunk-aligned tiles of bounded
memory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from .._checks import check_int
from .._errors import ZarrsampleError
from .._progress import progress as progress_bar
from ._image import Image
from ._io import open_image
from ._ome import join_path

__all__ = ["choose_level", "open_level", "read_reduced", "reduce_factor", "spatial_letters"]

#: Axes a view is block-averaged along (``Z`` is kept whole, like most pyramids).
REDUCED_AXES = "YX"
#: Bytes of source pixels read per tile by :func:`read_reduced`.
TILE_BYTES = 64 * 2**20


def spatial_letters(axes: str) -> str:
    """The spatial axes of ``axes`` in ``"ZYX"`` order.

    Examples
    --------
    >>> spatial_letters("CYX"), spatial_letters("XYZT"), spatial_letters("TC")
    ('YX', 'ZYX', '')
    """
    return "".join(a for a in "ZYX" if a in axes)


def _longest(shape: tuple[int, ...], axes: str) -> int:
    sides = [n for a, n in zip(axes, shape) if a in REDUCED_AXES] or [
        n for a, n in zip(axes, shape) if a in "ZYX"
    ]
    return max(sides, default=1)


def choose_level(levels: tuple[tuple[int, ...], ...], axes: str, *, side: int) -> int:
    """The coarsest pyramid level whose longest ``Y``/``X`` side is >= ``side``.

    Parameters
    ----------
    levels : tuple of tuple of int
        Stored shape of every level, finest first (``Image.levels``).
    axes : str
        Axis letters of the levels.
    side : int
        The wanted longest side, pixels.

    Returns
    -------
    int
        A level index; 0 when even level 0 is shorter than ``side``.

    Examples
    --------
    >>> choose_level(((3, 4096, 3000), (3, 2048, 1500), (3, 1024, 750), (3, 512, 375)), "CYX", side=1000)
    2
    >>> choose_level(((3, 500, 500),), "CYX", side=1000)
    0
    """
    long_enough = [i for i, shape in enumerate(levels) if _longest(shape, axes) >= side]
    return max(long_enough, default=0)


def reduce_factor(shape: tuple[int, ...], axes: str, *, side: int) -> int:
    """Integer block-average factor bringing the longest ``Y``/``X`` side into ``[side, 2 side)``.

    Examples
    --------
    >>> reduce_factor((3, 65536, 40000), "CYX", side=1024), reduce_factor((3, 1500, 900), "CYX", side=1024)
    (64, 1)
    """
    return max(1, _longest(shape, axes) // side)


def open_level(image: Image, level: int) -> Image:
    """Another pyramid level of the OME-Zarr image or TIFF series ``image`` belongs to.

    Parameters
    ----------
    image : Image
        An image opened from an OME-Zarr multiscale group (``image.levels``
        lists its levels).
    level : int
        The level to open, in ``range(len(image.levels))``.

    Returns
    -------
    Image
        ``image`` itself when ``level == image.level``; otherwise the level
        opened read-only through zarr from the group holding ``image``.

    Raises
    ------
    TypeError
        ``level`` is not an int.
    ZarrsampleError
        ``level`` out of range; ``image`` has a region of interest (only its
        own level can be used); the group holding ``image`` cannot be
        reopened (then pass its path instead).
    """
    level = check_int(level, "level")
    if level >= len(image.levels):
        raise ZarrsampleError(
            f"level={level} is out of range for {image.name}: available levels are "
            f"{list(range(len(image.levels)))}"
        )
    if level == image.level:
        return image
    if any(image.origin) or tuple(image.shape) != tuple(image.levels[image.level]):
        raise ZarrsampleError(
            f"level={level} cannot be used for {image.name}: it has a region of interest "
            f"(origin {image.origin}, shape {image.shape}), which is defined on level "
            f"{image.level} only; pass level={image.level} or open the image without roi"
        )
    spec = image._spec
    if spec is not None and spec[0] == "tiff":  # another level of the same TIFF series
        return open_image(spec[1], series=spec[2], level=level, axes=image.axes)
    group = _parent_group(image)
    options = spec[5] if spec is not None and spec[0] == "zarr" and len(spec) > 5 else None
    try:
        other = open_image(group, level=level, axes=image.axes, storage_options=options)
    except (ZarrsampleError, KeyError) as exc:
        raise ZarrsampleError(
            f"cannot open level {level} of {image.name} ({exc}); pass the path of its OME-Zarr "
            "group instead of an Image"
        ) from None
    if other.levels != image.levels:
        raise ZarrsampleError(
            f"cannot open level {level} of {image.name}: the group holding it describes other "
            f"levels {other.levels}; pass the path of its OME-Zarr group instead of an Image"
        )
    return other


def _parent_group(image: Image) -> Any:
    """The zarr group (or its path / URL) holding the array of ``image``."""
    spec = image._spec
    if spec is not None and spec[0] == "zarr":
        root, path = spec[2], spec[3]
        return join_path(root, path.rpartition("/")[0])
    if spec is not None:  # tensorstore: the kvstore names the level's directory
        kvstore = spec[1]["kvstore"]
        where = kvstore.get("path") or kvstore.get("base_url")
        return os.path.dirname(str(where).rstrip("/"))
    array = image._array()
    if not isinstance(array, zarr.Array):
        raise ZarrsampleError(f"{image.name} is not a level of an OME-Zarr group")
    return zarr.open_group(store=array.store, path=array.path.rpartition("/")[0], mode="r")


def read_reduced(image: Image, factor: int, *, progress: str | None = None) -> np.ndarray:
    """Read ``image`` block-averaged by ``factor`` along ``Y`` and ``X``.

    Parameters
    ----------
    image : Image
        The image (any axes); axes other than ``Y``/``X`` are read whole.
    factor : int
        Block side, >= 1. Blocks at the far border may be partial; their
        mean is over the pixels they hold.
    progress : str, optional
        Show a progress bar over the tiles with this description (on a
        terminal, with tqdm installed; see :func:`zarrsample_core._progress.progress`).

    Returns
    -------
    numpy.ndarray
        ``image.read()`` when ``factor == 1``; otherwise float64 means of
        shape ``ceil(n / factor)`` on ``Y``/``X`` and ``n`` on other axes.

    Notes
    -----
    Reads tiles of about ``TILE_BYTES`` aligned to the storage chunks and
    to ``factor``; memory is one tile plus the output.

    Examples
    --------
    >>> image = open_image(np.arange(25.0).reshape(5, 5), axes="YX")
    >>> read_reduced(image, 2)
    array([[ 3. ,  5. ,  6.5],
           [13. , 15. , 16.5],
           [20.5, 22.5, 24. ]])
    """
    factor = check_int(factor, "factor", minimum=1)
    reduced = [k for k, a in enumerate(image.axes) if a in REDUCED_AXES]
    if factor == 1 or not reduced:
        return image.read()
    out_shape = [-(-n // factor) if k in reduced else n for k, n in enumerate(image.shape)]
    out = np.zeros(out_shape, dtype=np.float64)
    steps = {k: factor * -(-int(image.chunks[k]) // factor) for k in reduced}
    other = int(np.prod([n for k, n in enumerate(image.shape) if k not in reduced]))
    # Widen tiles along the last reduced axis up to the byte budget.
    tile_bytes = int(np.prod([steps[k] for k in reduced])) * other * image.dtype.itemsize
    steps[reduced[-1]] *= max(1, TILE_BYTES // max(1, tile_bytes))
    starts = [range(0, image.shape[k], steps[k]) for k in reduced]
    corners = np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(reduced))
    for corner in progress_bar(corners, total=len(corners), desc=progress or "", unit="tile",
                               quiet=progress is None or len(corners) < 2):
        selection = [slice(None)] * image.ndim
        target = [slice(None)] * image.ndim
        for k, start in zip(reduced, corner.tolist()):
            stop = min(start + steps[k], image.shape[k])
            selection[k] = slice(start, stop)
            target[k] = slice(start // factor, -(-stop // factor))
        block = image.read(tuple(selection)).astype(np.float64)
        count = np.ones([1] * block.ndim)
        for k in reduced:
            n = block.shape[k]
            edges = np.arange(0, n, factor)
            block = np.add.reduceat(block, edges, axis=k)
            sizes = np.minimum(edges + factor, n) - edges
            count = count * sizes.reshape([len(sizes) if j == k else 1 for j in range(block.ndim)])
        out[tuple(target)] = block / count
    return out
