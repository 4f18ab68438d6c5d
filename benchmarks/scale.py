"""Scale: many slides on executors, cost growth, many open images, plan memory.

Prints one JSON line per case, then a growth table with log-log slopes
(time ~ size**slope: 1.0 is linear, clearly above 1 is super-linear).

Sections (all by default, or ``--only NAME``):

- ``executors``: plan N slides of 65536^2 pixels (metadata-only zarr arrays;
  a 1/16 mask of 4096^2 written once and linked into every slide) in this
  process, on a ``ProcessPoolExecutor(2)`` and on a dask ``LocalCluster`` of
  2 processes; wall time and speed-up.
- ``growth``: plan time and peak RSS against the image side (4096 ..
  65536, 262144 with ``--full``) and against the patch count (up to ~10^7
  with ``--full``); each case in a fresh subprocess so its peak is its own.
- ``reading``: patches/s reading round-robin over 1, 8, 64 open images
  through one PatchDataset, with open file handles and cache bytes.
- ``memory``: bytes per patch of 2-D and 3-D plans.
- ``plan-memory``: one planning run per fresh subprocess (65536^2 slide, 1/16
  mask, patch = stride = 16 and 32): time and peak RSS against the plan's
  size, best of a few runs. ``--case SIDE PATCH STRIDE`` runs one such case
  in this process and prints its line.

Usage: ``python benchmarks/scale.py [--full] [--only SECTION] [--slides N]
[--case SIDE PATCH STRIDE]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from workloads import best_of, emit, peak_rss_mb, tissue_mask, write_smooth_image

SLIDE = 65536
MASK_DIVISOR = 16


def peak_mb() -> float:
    """Peak RSS of this process image, MB.

    ``VmHWM`` belongs to the address space, so it starts afresh after
    ``exec``; ``ru_maxrss`` would carry over the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def write_mask(path: Path, side: int, seed: int = 0) -> None:
    """A tissue mask (bool, zstd, chunks of 1024) at ``path``, written once."""
    import zarr

    if path.exists():
        return
    mask = tissue_mask((side, side), seed=seed)
    zarr.create_array(store=str(path), data=mask, chunks=(min(side, 1024),) * 2)


def write_slide(root: Path, k: int, mask: Path, side: int = SLIDE) -> Path:
    """Slide k: metadata-only image array plus a symlink to the shared mask."""
    import zarr

    slide = root / f"slide{k}"
    slide.mkdir()
    zarr.create_array(store=str(slide / "image.zarr"), shape=(3, side, side), chunks=(3, 1024, 1024),
                      dtype="uint8", fill_value=0)
    os.symlink(mask, slide / "mask.zarr")
    return slide


def open_slide(slide: Path):  # -> ImageCollection
    from zarrsample_core import ImageCollection, open_image

    return ImageCollection({
        "images": open_image(str(slide / "image.zarr"), axes="CYX"),
        "masks": open_image(str(slide / "mask.zarr"), axes="YX"),
    }, spatial_axes="YX")


def du_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


# -- executors -------------------------------------------------------------------


def bench_executors(n_slides: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from distributed import Client, LocalCluster

    from zarrsample_core import PatchSampler
    from zarrsample_core.planning._planning import plan_collections

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mask = root / "mask.zarr"
        write_mask(mask, SLIDE // MASK_DIVISOR)
        colls = [open_slide(write_slide(root, k, mask)) for k in range(n_slides)]
        sampler = PatchSampler(256, min_area=0.5, spatial_axes="YX")
        t0 = time.perf_counter()
        expected = plan_collections(colls, sampler, progress=False)
        base = time.perf_counter() - t0
        patches = sum(len(p) for p in expected)
        common = {"section": "executors", "n_slides": n_slides, "slide_side": SLIDE,
                  "mask_side": SLIDE // MASK_DIVISOR, "patches": patches, "disk_mb": round(du_mb(root), 2)}
        emit(executor="in-process", workers=1, seconds=round(base, 3), speedup=1.0,
             seconds_per_slide=round(base / n_slides, 4), **common)

        def timed(name: str, executor, startup: float) -> None:
            plan_collections(colls[:2], sampler, executor=executor, progress=False)  # warm the workers
            t0 = time.perf_counter()
            plans = plan_collections(colls, sampler, executor=executor, progress=False)
            seconds = time.perf_counter() - t0
            same = all(
                np.array_equal(a.toplefts, b.toplefts) and np.array_equal(a.coverage, b.coverage)
                for a, b in zip(plans, expected)
            )
            emit(executor=name, workers=2, seconds=round(seconds, 3), speedup=round(base / seconds, 2),
                 startup_seconds=round(startup, 2), identical_to_in_process=same, **common)

        t0 = time.perf_counter()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
            timed("ProcessPoolExecutor(2, forkserver)", pool, time.perf_counter() - t0)
        t0 = time.perf_counter()
        with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            timed("dask LocalCluster(2 processes)", client.get_executor(), time.perf_counter() - t0)


# -- growth ----------------------------------------------------------------------


def growth_case(side: int, patch: int, stride: int, mask_path: str) -> None:
    """One planning case (run in its own subprocess): prints its JSON line."""
    import zarr
    from zarr.storage import MemoryStore

    from zarrsample_core import ImageCollection, PatchSampler, open_image

    image = zarr.create_array(store=MemoryStore(), shape=(3, side, side), chunks=(3, 1024, 1024), dtype="uint8")
    coll = ImageCollection({"images": open_image(image, axes="CYX"),
                            "masks": open_image(mask_path, axes="YX")}, spatial_axes="YX")
    rss_before = peak_mb()
    repeat = 3 if side * side // (stride * stride) < 20_000_000 else 1

    def run():  # -> PatchPlan
        return PatchSampler(patch, stride=stride, min_area=0.5, spatial_axes="YX").plan(coll)

    t0 = time.perf_counter()
    plan = run()
    seconds = time.perf_counter() - t0
    peak = peak_mb()  # of one planning run: the repeats below hold the previous plan
    if repeat > 1:
        del plan
        again, plan = best_of(run, repeat=repeat - 1)
        seconds = min(seconds, again)
    # Windows on mask-pixel boundaries (patch a multiple or divisor of the 16x
    # mask scale) take the block-sum path; others the dearer summed-area path.
    aligned = patch % MASK_DIVISOR == 0 or MASK_DIVISOR % patch == 0
    emit(section="growth", side=side, pixels=side * side, patch=patch, stride=stride, mask_aligned=aligned,
         grid_positions=((side - patch) // stride + 1) ** 2, patches=len(plan), seconds=round(seconds, 4),
         plan_mb=round(plan.nbytes / 2**20, 2), bytes_per_patch=plan.nbytes / max(1, len(plan)),
         rss_before_plan_mb=round(rss_before, 1), peak_rss_mb=round(peak, 1))


def plan_case(side: int, patch: int, stride: int, mask_path: str) -> None:
    """One planning run in this (fresh) process: its time, peak RSS and a digest of the plan."""
    import hashlib

    import zarr
    from zarr.storage import MemoryStore

    from zarrsample_core import ImageCollection, PatchSampler, open_image

    image = zarr.create_array(store=MemoryStore(), shape=(3, side, side), chunks=(3, 1024, 1024), dtype="uint8")
    coll = ImageCollection({"images": open_image(image, axes="CYX"),
                            "masks": open_image(mask_path, axes="YX")}, spatial_axes="YX")
    sampler = PatchSampler(patch, stride=stride, min_area=0.5, spatial_axes="YX", max_plan_bytes=None)
    rss_before = peak_mb()
    t0 = time.perf_counter()
    plan = sampler.plan(coll)
    seconds = time.perf_counter() - t0
    peak = peak_mb()
    digest = hashlib.sha256(plan.toplefts.tobytes() + plan.coverage.tobytes()).hexdigest()[:16]
    plan_mb = plan.nbytes / 2**20
    emit(section="plan-memory", side=side, patch=patch, stride=stride, patches=len(plan),
         plan_mb=round(plan_mb, 1), seconds=round(seconds, 3), rss_before_plan_mb=round(rss_before, 1),
         peak_rss_mb=round(peak, 1), planning_mb=round(peak - rss_before, 1),
         planning_over_plan=round((peak - rss_before) / max(plan_mb, 1e-9), 2), digest=digest)


def bench_plan_memory(root: Path, repeat: int = 3) -> None:
    """Best of ``repeat`` fresh subprocesses per case, cases interleaved."""
    mask = root / f"mask{SLIDE}.zarr"
    write_mask(mask, SLIDE // MASK_DIVISOR)
    runs: dict[int, list[dict]] = {16: [], 32: []}
    for _ in range(repeat):
        for patch, rows in runs.items():
            out = subprocess.run(
                [sys.executable, __file__, "--case", str(SLIDE), str(patch), str(patch), "--mask", str(mask)],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
    for rows in runs.values():
        best = dict(min(rows, key=lambda r: r["peak_rss_mb"]))
        best.update(seconds=min(r["seconds"] for r in rows), runs=len(rows),
                    identical_runs=len({r["digest"] for r in rows}) == 1)
        print(json.dumps(best), flush=True)


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def bench_growth(full: bool, root: Path) -> None:
    sides = [4096, 8192, 16384, 32768, 65536] + ([131072, 262144] if full else [])
    # patch == stride: one coverage path (overlapping windows take another, dearer one)
    strides = [256, 128, 64, 32, 16] + ([12] if full else [])  # 12: ~1.2e7 patches, not aligned
    cases = [("side", s, 256, 256) for s in sides] + [("patches", SLIDE, st, st) for st in strides]
    rows = []
    for kind, side, patch, stride in cases:
        mask = root / f"mask{side}.zarr"
        write_mask(mask, side // MASK_DIVISOR)
        out = subprocess.run(
            [sys.executable, __file__, "--growth-case", str(side), str(patch), str(stride), str(mask)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        row["series"] = kind
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\nseries    side      patches  seconds  peak_rss_mb  plan_mb  mask_aligned", file=sys.stderr)
    for r in rows:
        print(f"{r['series']:8} {r['side']:7d} {r['patches']:11d} {r['seconds']:8.3f} "
              f"{r['peak_rss_mb']:11.1f} {r['plan_mb']:8.2f}  {r['mask_aligned']}", file=sys.stderr)
    side_rows = [r for r in rows if r["series"] == "side"]
    patch_rows = [r for r in rows if r["series"] == "patches" and r["mask_aligned"]]  # one code path
    emit(section="growth-fit", series="side", x="pixels", n_points=len(side_rows),
         time_slope=round(slope([r["pixels"] for r in side_rows], [r["seconds"] for r in side_rows]), 3),
         rss_slope=round(slope([r["pixels"] for r in side_rows], [r["peak_rss_mb"] for r in side_rows]), 3))
    emit(section="growth-fit", series="patches", x="patches", n_points=len(patch_rows),
         time_slope=round(slope([r["patches"] for r in patch_rows], [r["seconds"] for r in patch_rows]), 3),
         rss_slope=round(slope([r["patches"] for r in patch_rows], [r["peak_rss_mb"] for r in patch_rows]), 3))


# -- reading ---------------------------------------------------------------------


def bench_reading(root: Path, counts=(1, 8, 64), n_read: int = 3000) -> None:
    import psutil

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    template = root / "read0.zarr"
    write_smooth_image(str(template), shape=(3, 1024, 1024), chunks=(3, 256, 256))
    for k in range(1, max(counts)):  # same bytes, distinct arrays: copy the small store
        dst = root / f"read{k}.zarr"
        if not dst.exists():
            shutil.copytree(template, dst)
    proc = psutil.Process()
    for window in (None, 8):
        for n in counts:
            colls = [ImageCollection({"images": open_image(str(root / f"read{k}.zarr"), axes="CYX")},
                                     spatial_axes="YX") for k in range(n)]
            ds = PatchDataset(colls, PatchSampler(64, spatial_axes="YX"), shuffle=True, seed=0,
                              shuffle_window=window, cache_bytes=32 * 2**20)
            fds_before = proc.num_fds()
            touched: set[int] = set()
            done, epoch = 0, 0
            t0 = time.perf_counter()
            while done < n_read:  # whole epochs of a small dataset, partial ones of a big one
                it = ds.epoch(epoch)
                take = min(n_read - done, len(it))
                for _ in range(take):
                    next(it)
                touched.update(np.searchsorted(ds._view.offsets, it.indices[:take], side="right").tolist())
                done, epoch = done + take, epoch + 1
            seconds = time.perf_counter() - t0
            stats = ds.stats()
            emit(section="reading", open_images=n, shuffle_window=window, images_touched=len(touched),
                 patches=done, patches_per_s=round(done / seconds, 1), seconds=round(seconds, 3),
                 open_fds_before=fds_before, open_fds_after=proc.num_fds(),
                 cache_limit_bytes=32 * 2**20, cached_bytes=stats.get("cached_bytes"),
                 chunk_reads=stats.get("chunk_reads"), cache_hits=stats.get("cache_hits"),
                 peak_rss_mb=round(peak_rss_mb(), 1))


# -- memory ----------------------------------------------------------------------


def bench_memory() -> None:
    import zarr
    from zarr.storage import MemoryStore

    from zarrsample_core import (
        BlueNoisePatchSampler,
        ImageCollection,
        PatchSampler,
        open_image,
    )

    for axes, shape, chunks, patch in [("YX", (3, 65536, 65536), (3, 1024, 1024), 128),
                                       ("ZYX", (1024, 1024, 1024), (128, 128, 128), 32)]:
        spatial_shape = shape[-len(axes):] if axes == "YX" else shape
        mask = tissue_mask(tuple(s // 16 for s in spatial_shape), seed=1, lo_r=0.2, hi_r=0.35)
        image = zarr.create_array(store=MemoryStore(), shape=shape, chunks=chunks, dtype="uint8")
        coll = ImageCollection({"images": open_image(image, axes="CYX" if axes == "YX" else axes),
                                "masks": open_image(mask, axes=axes)}, spatial_axes=axes)
        for sampler in (PatchSampler(patch, min_area=0.5, spatial_axes=axes),
                        BlueNoisePatchSampler(patch, min_area=0.5, spatial_axes=axes, seed=0)):
            plan = sampler.plan(coll)
            emit(section="memory", sampler=type(sampler).__name__, axes=axes, patches=len(plan),
                 plan_bytes=plan.nbytes, bytes_per_patch=round(plan.nbytes / len(plan), 3),
                 target_bytes_per_patch=24 if axes == "YX" else None,
                 met=plan.nbytes / len(plan) <= 24 if axes == "YX" else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="200 slides, sides to 262144, ~10^7 patches")
    parser.add_argument("--only", choices=["executors", "growth", "reading", "memory", "plan-memory"])
    parser.add_argument("--slides", type=int, help="slides for the executors section (default 64, 200 with --full)")
    parser.add_argument("--growth-case", nargs=4, metavar=("SIDE", "PATCH", "STRIDE", "MASK"), help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=3, type=int, metavar=("SIDE", "PATCH", "STRIDE"),
                        help="plan one slide in this process and print its time and peak RSS")
    parser.add_argument("--mask", help="the mask of --case (default: a 1/16 tissue mask, written to a temp dir)")
    args = parser.parse_args()
    if args.case:
        side, patch, stride = args.case
        if args.mask:
            plan_case(side, patch, stride, args.mask)
            return
        with tempfile.TemporaryDirectory() as tmp:
            mask = Path(tmp) / "mask.zarr"
            write_mask(mask, side // MASK_DIVISOR)
            plan_case(side, patch, stride, str(mask))
        return
    if args.growth_case:
        side, patch, stride, mask = args.growth_case
        growth_case(int(side), int(patch), int(stride), mask)
        return
    run = (lambda name: args.only in (None, name))
    if run("memory"):
        bench_memory()
    if run("executors"):
        bench_executors(args.slides or (200 if args.full else 64))
    with tempfile.TemporaryDirectory() as tmp:
        if run("growth"):
            bench_growth(args.full, Path(tmp))
        if run("reading"):
            bench_reading(Path(tmp))
        if run("plan-memory"):
            bench_plan_memory(Path(tmp))


if __name__ == "__main__":
    main()
