"""Workloads shared by the benchmark scripts (numpy only, so that any
environment, including the reference library's, can build them)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np


def tissue_mask(
    shape: tuple[int, ...], *, seed: int = 0, ellipses: int = 6, lo_r: float = 0.12, hi_r: float = 0.22
) -> np.ndarray:
    """A boolean mask of a few filled ellipses (ellipsoids in 3-D), ~40% cover.

    Built one row (plane) at a time from the closed form of the ellipse, so a
    16384^2 mask costs a fraction of a second and no float image.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    side = np.asarray(shape, dtype=float)
    for _ in range(ellipses):
        centre = rng.uniform(0.2, 0.8, len(shape)) * side
        radii = rng.uniform(lo_r, hi_r, len(shape)) * side
        first = np.arange(shape[0])
        rows = 1 - ((first + 0.5 - centre[0]) / radii[0]) ** 2
        for i in np.flatnonzero(rows > 0):
            if len(shape) == 2:
                half = radii[1] * np.sqrt(rows[i])
                lo, hi = int(max(0, np.ceil(centre[1] - half))), int(min(shape[1], centre[1] + half))
                mask[i, lo:hi] = True
            else:
                yy = np.arange(shape[1])
                cols = rows[i] - ((yy + 0.5 - centre[1]) / radii[1]) ** 2
                for j in np.flatnonzero(cols > 0):
                    half = radii[2] * np.sqrt(cols[j])
                    lo, hi = int(max(0, np.ceil(centre[2] - half))), int(min(shape[2], centre[2] + half))
                    mask[i, j, lo:hi] = True
    return mask


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def emit(**fields: object) -> None:
    """Print one JSON line."""
    print(json.dumps(fields), flush=True)


def threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


def write_smooth_image(path: str, zarr_format: int = 3, shape=(3, 8192, 8192), chunks=(3, 1024, 1024)) -> None:
    """Smooth uint8 content (sines), zstd, written one chunk row at a time."""
    import zarr
    from zarr.codecs import ZstdCodec

    if zarr_format == 3:
        compressors = ZstdCodec(level=3)
    else:
        from numcodecs import Zstd

        compressors = Zstd(level=3)
    array = zarr.create_array(
        store=path, shape=shape, chunks=chunks, dtype="uint8", compressors=compressors,
        zarr_format=zarr_format,
    )
    x = np.arange(shape[2], dtype=np.float32)
    for row in range(0, shape[1], chunks[1]):
        y = np.arange(row, min(row + chunks[1], shape[1]), dtype=np.float32)[:, None]
        band = np.stack([128 + 60 * np.sin(y / 97 + c) + 60 * np.cos(x / 131 - c) for c in range(shape[0])])
        array[:, row : row + chunks[1], :] = band.astype(np.uint8)
