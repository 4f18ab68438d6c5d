"""Random and class-balanced crops per epoch: planning time, and reading them against the grid plan.

Planning workload: a (3, 65536, 65536) uint8 zarr array, chunks (3, 1024,
1024), nothing written (planning reads no pixel), a 1/16 tissue mask
(4096 x 4096, three discs, about 28 % tissue) and a 1/16 label image of 4
classes (background, tissue, a "tumour" region inside the tissue, a small
"necrosis" disc). Cases, each in its own process (peak RSS its own):

- ``grid-plan``: ``PatchSampler(256).plan`` (the fixed grid, for scale);
- ``random-plan``: ``RandomPatchSampler(256, 10_000)``: the first epoch
  (finding the samplable set once per image, then the crops) and a later
  epoch (best of ``--repeat``; the target is <= 50 ms);
- ``balanced-plan``: ``ClassBalancedPatchSampler(256, 10_000,
  class_ratios={0: .25, 1: .25, 2: .25, 3: .25})``, likewise (target <= 100 ms).

Reading workload: a written (3, 16384, 16384) smooth image (chunks 1024,
zstd) with a 1/16 tissue mask. In one process, interleaved rounds: one
``draw_same_chunk`` epoch of the grid plan (``PatchSampler(256)``) and one of
as many random crops (``RandomPatchSampler(256, n)``, a new epoch each
round); prints patches/s of both and their ratio (target >= 0.7).

Usage: ``python benchmarks/random_crops.py [--repeat 5] [--rounds 3] [--size 16384] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from workloads import emit, peak_rss_mb, write_smooth_image  # noqa: E402

PLAN_SIDE = 65536
MASK_SIDE = 4096


def discs(side: int, circles: list[tuple[float, float, float]]) -> np.ndarray:
    """A boolean image of discs given as fractions of ``side`` (centre y, centre x, radius)."""
    yy, xx = np.ogrid[0:side, 0:side]
    out = np.zeros((side, side), bool)
    for cy, cx, r in circles:
        out |= (yy - cy * side) ** 2 + (xx - cx * side) ** 2 < (r * side) ** 2
    return out


def tissue(side: int) -> np.ndarray:
    return discs(side, [(0.3, 0.32, 0.17), (0.64, 0.7, 0.22), (0.8, 0.2, 0.12)])


def labels(side: int) -> np.ndarray:
    out = tissue(side).astype(np.uint8)
    out[discs(side, [(0.6, 0.66, 0.1)])] = 2
    out[discs(side, [(0.3, 0.3, 0.02)])] = 3
    return out


def plan_collection(root: Path):
    import zarr

    from zarrsample_core import ImageCollection, open_image

    path = root / "blank.zarr"
    if not path.exists():
        zarr.create_array(store=str(path), shape=(3, PLAN_SIDE, PLAN_SIDE), chunks=(3, 1024, 1024), dtype="uint8")
    return ImageCollection({
        "images": open_image(path, axes="CYX"),
        "masks": open_image(tissue(MASK_SIDE), axes="YX"),
        "labels": open_image(labels(MASK_SIDE), axes="YX"),
    }, spatial_axes="YX")


def run_plan_case(case: str, root: Path, repeat: int) -> None:
    from zarrsample_core import ClassBalancedPatchSampler, PatchSampler, RandomPatchSampler

    coll = plan_collection(root)
    if case == "grid-plan":
        t0 = time.perf_counter()
        plan = PatchSampler(256, spatial_axes="YX").plan(coll)
        emit(case=case, patches=len(plan), seconds=round(time.perf_counter() - t0, 4), peak_rss_mb=peak_rss_mb())
        return
    if case == "random-plan":
        sampler = RandomPatchSampler(256, 10_000, spatial_axes="YX", seed=0)
    else:
        sampler = ClassBalancedPatchSampler(256, 10_000, class_ratios={0: .25, 1: .25, 2: .25, 3: .25},
                                            spatial_axes="YX", seed=0)
    t0 = time.perf_counter()
    first = sampler.epoch_plan(coll, epoch=0)
    first_seconds = time.perf_counter() - t0
    later = []
    for epoch in range(1, repeat + 1):
        t0 = time.perf_counter()
        plan = sampler.epoch_plan(coll, epoch=epoch)
        later.append(time.perf_counter() - t0)
    found = sampler.samplable(coll)
    target = 0.05 if case == "random-plan" else 0.1
    emit(case=case, patches=len(plan), first_epoch_seconds=round(first_seconds, 4),
         epoch_seconds=round(min(later), 4), target_seconds=target, met=min(later) <= target,
         samplable_positions=found.total, boxes=len(found.box_start), leaves=len(found.leaf_start),
         peak_rss_mb=peak_rss_mb(), first_patches=len(first))


def run_read_case(root: Path, size: int, rounds: int) -> None:
    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, RandomPatchSampler, open_image

    path = root / f"smooth-{size}.zarr"
    if not path.exists():
        write_smooth_image(str(path), shape=(3, size, size))
    coll = ImageCollection({"images": open_image(path, axes="CYX"), "masks": open_image(tissue(size // 16), axes="YX")},
                           spatial_axes="YX")
    grid_sampler = PatchSampler(256, spatial_axes="YX")
    n = len(grid_sampler.plan(coll))
    crop_sampler = RandomPatchSampler(256, n, spatial_axes="YX", seed=0)
    rates: dict[str, list[float]] = {"grid": [], "random": []}
    reads: dict[str, int] = {}
    for r in range(rounds):
        for name, sampler in (("grid", grid_sampler), ("random", crop_sampler)):
            ds = PatchDataset(coll, sampler, shuffle=True, draw_same_chunk=True)  # a cold cache each round
            t0 = time.perf_counter()
            count = sum(1 for _ in ds.epoch(r + 1))
            rates[name].append(count / (time.perf_counter() - t0))
            reads[name] = ds.stats()["chunk_reads"]
    best = {k: max(v) for k, v in rates.items()}
    for name in ("grid", "random"):
        emit(case=f"read-{name}", patches=n, patches_per_s=round(best[name]), chunk_reads=reads[name])
    ratio = best["random"] / best["grid"]
    emit(case="read-ratio", random_over_grid=round(ratio, 3), target=0.7, met=ratio >= 0.7,
         peak_rss_mb=peak_rss_mb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.case:
            if args.case == "read":
                run_read_case(root, args.size, args.rounds)
            else:
                run_plan_case(args.case, root, args.repeat)
            return
        for case in ("grid-plan", "random-plan", "balanced-plan", "read"):
            command = [sys.executable, __file__, "--case", case, "--dir", str(root), "--repeat", str(args.repeat),
                       "--rounds", str(args.rounds), "--size", str(args.size)]
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
