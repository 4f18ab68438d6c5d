"""A self-contained demonstration: ``python -m zarrsample_core.demo [--out DIR]``.

Writes a synthetic slide (an RGB image with tissue-like blobs, and a tissue
mask at 1/16 scale) as a zarr v3 group, opens it read-only, plans patches
with both samplers and prints a short report.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ._bluenoise_sampler import BlueNoisePatchSampler
from ._collection import ImageCollection
from ._io import open_image
from ._sampler import PatchSampler

__all__ = ["main", "write_synthetic_slide"]


def write_synthetic_slide(path: Path, *, side: int = 4096, seed: int = 0) -> Path:
    """Write ``image`` (3, side, side) uint8 and ``mask`` (side/16)^2 bool.

    Parameters
    ----------
    path : Path
        Directory of the zarr v3 group to create (must not exist).
    side : int
        Image side in pixels, a multiple of 512.
    seed : int
        Seed of the blob layout.

    Returns
    -------
    Path
        ``path``.
    """
    import zarr

    rng = np.random.default_rng(seed)
    low = side // 16
    yy, xx = np.mgrid[0:low, 0:low] / low
    tissue = np.zeros((low, low))
    for _ in range(7):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        ry, rx = rng.uniform(0.06, 0.18, 2)
        tissue += np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
    mask = tissue > 0.5
    group = zarr.open_group(path, mode="w-", zarr_format=3)
    group.create_array("mask", data=mask, chunks=(low, low))
    image = group.create_array("image", shape=(3, side, side), chunks=(3, 512, 512), dtype="uint8")
    # Pale background, pink-purple tissue, written one band of chunks at a time.
    band = np.kron(tissue, np.ones((16, 16)))
    for y in range(0, side, 512):
        t = np.clip(band[y : y + 512], 0, 1.5) / 1.5
        rgb = np.stack([235 - 60 * t, 235 - 140 * t, 240 - 70 * t])
        rgb += rng.normal(0, 4, rgb.shape)
        image[:, y : y + 512, :] = np.clip(rgb, 0, 255).astype(np.uint8)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zarrsample_core.demo", description=__doc__)
    parser.add_argument("--out", type=Path, help="directory to write the slide into (default: a temporary one)")
    parser.add_argument("--side", type=int, default=4096, help="image side in pixels (default 4096)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zarrsample-demo-") as tmp:
        root = (args.out or Path(tmp)) / "slide.zarr"
        if root.exists():
            parser.error(f"{root} exists already; choose another --out (the demo never overwrites)")
        t0 = time.perf_counter()
        write_synthetic_slide(root, side=args.side)
        print(f"wrote {root} in {time.perf_counter() - t0:.2f} s")
        coll = ImageCollection(
            {
                "images": open_image(root, data_group="image", axes="CYX"),
                "masks": open_image(root, data_group="mask", axes="YX"),
            },
            spatial_axes="YX",
        )
        print(coll)
        samplers = {
            "grid": PatchSampler(256, min_area=0.5, spatial_axes="YX"),
            "grid, stride 128": PatchSampler(256, stride=128, min_area=0.5, spatial_axes="YX"),
            "blue noise": BlueNoisePatchSampler(256, min_area=0.5, spatial_axes="YX", seed=0),
        }
        for label, sampler in samplers.items():
            t0 = time.perf_counter()
            plan = sampler.plan(coll)
            ms = (time.perf_counter() - t0) * 1e3
            chunks = len(np.unique(plan.chunk_ids))
            print(
                f"{label:>17}: {len(plan):5d} patches in {chunks:3d} chunk tiles, "
                f"mean mask coverage {plan.coverage.mean() / np.prod(plan.patch_size):.2f}, "
                f"planned in {ms:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
