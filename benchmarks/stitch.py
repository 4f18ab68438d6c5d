"""Stitching throughput and memory: an identity model written back to a zarr array.

Workload: a single-channel float32 output of ``size x size`` pixels (zarr v3,
default chunks 256 x 256, in a temporary directory); PatchSampler(256,
stride=224, allow_incomplete_patches=True) planned over an image of that size
with storage chunks 1024 x 1024 (plan order: chunk tile by chunk tile); every
patch holds a smooth function of its pixel coordinates (the "model"), added
in batches of 16 with ``blend="mean"`` (32-pixel overlaps).

Cases (each in a fresh subprocess so that its peak RSS is its own):

- ``plan``: ``positions=`` from the plan, so chunks are written as soon as
  their last patch arrives;
- ``no-plan``: no positions: accumulators stay in memory up to ``max_bytes``,
  the rest spills to a temporary directory, everything is written in
  ``finalize()``;
- ``write-limit``: the same values written straight to the same array, one
  256 x 256 chunk per write (what any stitcher must at least spend).

Prints one JSON line per (case, size): wall time of adds + finalize, output
MB/s, peak RSS, the stitcher's counters and the largest error against the
function on a sparse sample of pixels. In plan order the pending
accumulators grow by one row of output chunks with the width (see the
Stitcher's Notes) until ``--max-mb``, beyond which they spill. Usage:
``python benchmarks/stitch.py [--sizes 4096 8192 16384] [--write-threads 1] [--max-mb 256]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from workloads import emit, peak_rss_mb  # noqa: E402

PATCH, STRIDE, BATCH = 256, 224, 16
SIZES = (4096, 8192, 16384)


def model(positions: np.ndarray) -> np.ndarray:
    """The identity model's output: f(y, x) = sin(y / 97) + cos(x / 131) over each window."""
    y = positions[:, 0, :1] + np.arange(PATCH)                   # (B, PATCH)
    x = positions[:, 1, :1] + np.arange(PATCH)
    return (np.sin(y / 97)[:, :, None] + np.cos(x / 131)[:, None, :]).astype(np.float32)


def run_case(size: int, case: str, max_mb: int, write_threads: int) -> None:
    import zarr
    from zarr.storage import MemoryStore

    from zarrsample_core import ImageCollection, PatchSampler, open_image
    from zarrsample_core.inference._stitch import Stitcher

    virtual = zarr.create_array(store=MemoryStore(), shape=(size, size), chunks=(1024, 1024), dtype="uint8")
    coll = ImageCollection({"images": open_image(virtual, axes="YX")}, spatial_axes="YX")
    plan = PatchSampler(PATCH, stride=STRIDE, allow_incomplete_patches=True, spatial_axes="YX").plan(coll)
    positions = np.stack([plan.toplefts, plan.toplefts + PATCH], axis=-1)
    with tempfile.TemporaryDirectory(prefix="zarrsample-bench-stitch-") as tmp:
        path = Path(tmp, "out.zarr")
        if case == "write-limit":
            t0 = time.perf_counter()
            array = zarr.create_array(store=str(path), shape=(size, size), chunks=(256, 256), dtype="float32")
            for y in range(0, size, 256):
                ys = np.sin(np.arange(y, y + 256) / 97)[:, None]
                for x in range(0, size, 256):
                    array[y : y + 256, x : x + 256] = (ys + np.cos(np.arange(x, x + 256) / 131)).astype(np.float32)
            seconds = time.perf_counter() - t0
            emit(case=case, size=size, seconds=round(seconds, 2),
                 mb_per_s=round(size * size * 4 / seconds / 2**20, 1), peak_rss_mb=round(peak_rss_mb(), 1))
            return
        t0 = time.perf_counter()
        stitcher = Stitcher(
            path, shape=(size, size), positions=positions if case == "plan" else None,
            max_bytes=max_mb * 2**20, write_threads=write_threads,
        )
        for i in range(0, len(positions), BATCH):
            stitcher.add(model(positions[i : i + BATCH]), positions[i : i + BATCH])
        out = stitcher.finalize()
        seconds = time.perf_counter() - t0
        stats = stitcher.stats()
        sample = out[::509, ::509]
        y, x = np.arange(0, size, 509), np.arange(0, size, 509)
        error = float(np.abs(sample - (np.sin(y / 97)[:, None] + np.cos(x / 131)[None, :])).max())
    emit(
        case=case, size=size, patches=len(positions), seconds=round(seconds, 2),
        mb_per_s=round(size * size * 4 / seconds / 2**20, 1), peak_rss_mb=round(peak_rss_mb(), 1),
        max_mb=max_mb, write_threads=write_threads, chunks_written=stats["chunks_written"],
        peak_accumulator_mb=round(stats["peak_bytes"] / 2**20, 1), spills=stats["spills"],
        max_abs_error=error,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--no-plan-sizes", type=int, nargs="*", default=[SIZES[0]],
                        help="sizes also run without positions (spilling)")
    parser.add_argument("--max-mb", type=int, default=256, help="the stitcher's max_bytes, MB")
    parser.add_argument("--write-threads", type=int, default=1, help="the stitcher's write_threads")
    parser.add_argument("--case", nargs=2, metavar=("SIZE", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(int(args.case[0]), args.case[1], args.max_mb, args.write_threads)
        return
    runs = [(size, case) for size in args.sizes for case in ("write-limit", "plan")]
    runs += [(size, "no-plan") for size in args.no_plan_sizes]
    for size, case in runs:
        command = [sys.executable, __file__, "--case", str(size), case, "--max-mb", str(args.max_mb),
                   "--write-threads", str(args.write_threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print(json.dumps(json.loads(out.strip().splitlines()[-1])), flush=True)


if __name__ == "__main__":
    main()
