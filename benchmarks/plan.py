"""Planning cost: time and peak memory of PatchSampler / BlueNoisePatchSampler.

Prints one JSON line per case. Each case runs in a fresh subprocess so that
its peak RSS is its own. Usage: ``python benchmarks/plan.py [--case NAME]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from workloads import best_of, emit, peak_rss_mb, tissue_mask  # noqa: E402

# name: (image shape, chunks, axes, mask divisor, sampler, patch, target seconds, target MB)
CASES = {
    "grid-2d-16384": ((3, 16384, 16384), (3, 1024, 1024), "CYX", 16, "grid", 256, None, None),
    "grid-2d-32768": ((3, 32768, 32768), (3, 1024, 1024), "CYX", 16, "grid", 256, None, None),
    "grid-2d-65536": ((3, 65536, 65536), (3, 1024, 1024), "CYX", 16, "grid", 256, 0.1, 300),
    "grid-2d-262144": ((3, 262144, 262144), (3, 1024, 1024), "CYX", 16, "grid", 256, 2.0, None),
    "grid-3d-2048": ((2048, 2048, 2048), (128, 128, 128), "ZYX", 8, "grid", 64, 1.0, None),
    "bluenoise-2d-65536": ((3, 65536, 65536), (3, 1024, 1024), "CYX", 16, "bluenoise", 256, 1.0, None),
    # One base pattern against a fresh pattern per chunk tile (resample_positions=True).
    "bluenoise-2d-65536-c512": ((3, 65536, 65536), (3, 512, 512), "CYX", 16, "bluenoise", 256, None, None),
    "resample-2d-65536-c512": ((3, 65536, 65536), (3, 512, 512), "CYX", 16, "resample", 256, 1.0, None),
    "resample-2d-65536-c512-p64": ((3, 65536, 65536), (3, 512, 512), "CYX", 16, "resample", 64, None, None),
}


def run_case(name: str) -> None:
    import zarr
    from zarr.storage import MemoryStore

    from zarrsample_core import ImageCollection, PatchSampler, open_image

    shape, chunks, axes, divisor, kind, patch, target_s, target_mb = CASES[name]
    spatial = axes.replace("C", "")
    mask_shape = tuple(s // divisor for s, a in zip(shape, axes) if a != "C")
    radii = (0.12, 0.22) if len(mask_shape) == 2 else (0.22, 0.36)
    mask = tissue_mask(mask_shape, seed=0, lo_r=radii[0], hi_r=radii[1])
    # Metadata only: no chunk is ever written or read for the image.
    array = zarr.create_array(store=MemoryStore(), shape=shape, chunks=chunks, dtype="uint8")
    coll = ImageCollection(
        {"images": open_image(array, axes=axes), "masks": open_image(mask, axes=spatial)},
        spatial_axes=spatial,
    )
    rss_before = peak_rss_mb()

    def plan():
        if kind == "grid":
            sampler = PatchSampler(patch, min_area=0.5, spatial_axes=spatial)
        else:
            from zarrsample_core import BlueNoisePatchSampler

            sampler = BlueNoisePatchSampler(
                patch, min_area=0.5, spatial_axes=spatial, seed=0, resample_positions=kind == "resample"
            )
        return sampler.plan(coll)

    t0 = time.perf_counter()
    first = plan()
    first_s = time.perf_counter() - t0
    seconds, result = best_of(plan, repeat=3)
    peak = peak_rss_mb()
    emit(
        case=name, image_shape=list(shape), mask_shape=list(mask_shape),
        mask_fraction=round(float(mask.mean()), 4), sampler=kind, patch=patch,
        patches=len(result), seconds=round(seconds, 4), first_call_seconds=round(first_s, 4),
        plan_mb=round(result.nbytes / 2**20, 2), rss_before_plan_mb=round(rss_before, 1),
        peak_rss_mb=round(peak, 1), target_seconds=target_s, target_peak_mb=target_mb,
        tiles=len(np.unique(result.chunk_ids)),
        patches_per_tile=round(len(result) / max(1, len(np.unique(result.chunk_ids))), 2),
        met=(target_s is None or seconds < target_s) and (target_mb is None or peak < target_mb),
    )
    assert len(first) == len(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    if args.case:
        run_case(args.case)
        return
    for name in CASES:
        subprocess.run([sys.executable, __file__, "--case", name], check=True)


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
