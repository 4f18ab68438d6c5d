"""Low-resolution views of an image: pick a pyramid level, block-average it.

Shared by :func:`~zarrsample_core.inference._tissue.tissue_mask` and the PNG
previews. A view is the chosen pyramid level, block-averaged over ``Y`` and
``X`` by an integer factor when the level is still much larger than wanted
(a plain array without a pyramid), read in chunk-aligned tiles of bounded
memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

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
#: Bytes of source pixels up to which :func:`read_reduced` joins small chunks into one tile.
TILE_BYTES = 256 * 2**10
#: Threads of :func:`read_reduced`: decoding releases the GIL, and remote reads wait.
READ_THREADS = min(16, max(4, os.cpu_count() or 1))

T = TypeVar("T")
R = TypeVar("R")


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


def _tiles(image: Image, reduced: list[int]) -> np.ndarray:
    """``(n, 2, ndim)`` start and stop of chunk-aligned tiles covering ``image``.

    A tile is one storage chunk, widened along the last reduced axis to
    whole chunks up to ``TILE_BYTES``.
    """
    steps = [max(1, min(int(c), n)) for c, n in zip(image.chunks, image.shape)]
    chunk_bytes = int(np.prod(steps)) * image.dtype.itemsize
    steps[reduced[-1]] *= max(1, TILE_BYTES // max(1, chunk_bytes))
    starts = [np.arange(0, n, s, dtype=np.int64) for n, s in zip(image.shape, steps)]
    first = np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, image.ndim)
    last = np.minimum(first + np.asarray(steps, np.int64), np.asarray(image.shape, np.int64))
    return np.stack([first, last], axis=1)


def _sum_blocks(block: np.ndarray, k: int, start: int, factor: int, dtype: Any = np.float64) -> np.ndarray:
    """Sums of ``block`` along axis ``k`` over the ``factor``-blocks of the image grid.

    ``block`` starts at pixel ``start`` of the image along ``k``; a block of
    the grid cut by either end of ``block`` is summed over the part inside,
    in ``dtype``.
    """
    n = block.shape[k]
    head = min((-start) % factor, n)  # pixels before the first edge of the grid
    body = (n - head) // factor * factor
    parts = []
    if head:
        parts.append(block[(slice(None),) * k + (slice(0, head),)].sum(axis=k, keepdims=True, dtype=dtype))
    if body:
        whole = block[(slice(None),) * k + (slice(head, head + body),)]
        split = whole.shape[:k] + (body // factor, factor) + whole.shape[k + 1 :]
        parts.append(whole.reshape(split).sum(axis=k + 1, dtype=dtype))
    if head + body < n:
        parts.append(block[(slice(None),) * k + (slice(head + body, n),)].sum(axis=k, keepdims=True, dtype=dtype))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=k)


def _block_sums(image: Image, tile: np.ndarray, reduced: list[int], factor: int) -> tuple[tuple[slice, ...], np.ndarray]:
    """Sums over the ``factor``-blocks of the image grid that one tile holds, and where they go."""
    selection = tuple(slice(int(a), int(b)) for a, b in tile.T)
    block: np.ndarray = image.read(selection)
    target = list(selection)
    # Bytes and booleans summed over one axis fit uint16 exactly: a few times faster than float64.
    small = block.dtype.kind in "bu" and block.dtype.itemsize == 1 and factor <= 257
    for i, k in enumerate(reduced):
        start, stop = selection[k].start, selection[k].stop
        block = _sum_blocks(block, k, start, factor, np.uint16 if small and i == 0 else np.float64)
        target[k] = slice(start // factor, (stop - 1) // factor + 1)
    return tuple(target), block


def read_reduced(
    image: Image, factor: int, *, progress: str | None = None, threads: int | None = None
) -> np.ndarray:
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
    threads : int, optional
        Threads reading and reducing tiles; default ``READ_THREADS``.

    Returns
    -------
    numpy.ndarray
        ``image.read()`` when ``factor == 1``; otherwise float64 means of
        shape ``ceil(n / factor)`` on ``Y``/``X`` and ``n`` on other axes.

    Notes
    -----
    Reads chunk-aligned tiles (one chunk, or a run of chunks smaller than
    ``TILE_BYTES``) in ``threads`` threads; each thread sums its tile over
    the blocks of the image's ``factor`` grid (a block split between tiles
    is summed from both), so every chunk is decoded once whatever the
    factor. A one-chunk tile of a local zarr array is decoded directly by
    numcodecs (:mod:`._direct`), which releases the GIL, as tensorstore
    does: the tiles decode in parallel. At most two tiles per thread
    are in flight: memory is about ``2 * threads`` tiles plus the float64
    output, never the whole image.

    Examples
    --------
    >>> image = open_image(np.arange(25.0).reshape(5, 5), axes="YX")
    >>> read_reduced(image, 2)
    array([[ 3. ,  5. ,  6.5],
           [13. , 15. , 16.5],
           [20.5, 22.5, 24. ]])
    """
    factor = check_int(factor, "factor", minimum=1)
    threads = READ_THREADS if threads is None else check_int(threads, "threads", minimum=1)
    reduced = [k for k, a in enumerate(image.axes) if a in REDUCED_AXES]
    if factor == 1 or not reduced:
        return image.read()
    tiles = _tiles(image, reduced)
    out = np.zeros([-(-n // factor) if k in reduced else n for k, n in enumerate(image.shape)], np.float64)
    sums = _in_threads(lambda tile: _block_sums(image, tile, reduced, factor), list(tiles), threads)
    for target, block in progress_bar(sums, total=len(tiles), desc=progress or "", unit="tile",
                                      quiet=progress is None or len(tiles) < 2):
        out[target] += block
    for k in reduced:  # divide by the pixels each block holds (fewer at the far border)
        n = image.shape[k]
        sizes = np.minimum(factor, n - np.arange(0, n, factor)).astype(np.float64)
        out /= sizes.reshape([-1 if j == k else 1 for j in range(out.ndim)])
    return out


def _in_threads(work: Callable[[T], R], items: Sequence[T], threads: int) -> Iterator[R]:
    """``work(item)`` for every item in order, in ``threads`` threads, at most ``2 * threads`` ahead."""
    if threads == 1 or len(items) < 2:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="zarrsample-thumbnail") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an abandoned generator: drop the reads not started
            for future in pending:
                future.cancel()
