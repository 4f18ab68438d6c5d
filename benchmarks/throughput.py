"""Patch throughput of PatchDataset epochs against the chunk-read limit.

Workload: a (3, 8192, 8192) uint8 zarr array (v2 and v3), chunks
(3, 1024, 1024), zstd, smooth content, written once to a temporary
directory; PatchSampler(256): all 1024 patches. The read limit is every
storage chunk read once with the same backend, in the same run.

Cases (each in a fresh subprocess so that its peak RSS is its own; rounds
interleave the cases so that a change in machine load hits them alike):

- ``read-limit``: every chunk once through ``Image.read``;
- ``naive-random``: each patch window read directly from the array, shuffled
  (what a loader without a chunk cache does);
- ``sequential``: ``ds.epoch(0)`` in plan order;
- ``chunk-shuffle``: ``shuffle=True, draw_same_chunk=True``;
- ``window-shuffle``: ``shuffle=True, shuffle_window=8``;
- ``global-shuffle``: ``shuffle=True, shuffle_window=None`` (for reference).

Prints one JSON line per case with patches/s, MB/s, peak RSS, chunk reads and
the ratio to the read limit of the same format and backend, then one line of
the targets. Usage: ``python benchmarks/throughput.py [--rounds 3]``.
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

SHAPE = (3, 8192, 8192)
CHUNKS = (3, 1024, 1024)
PATCH = 256
CASES = ("read-limit", "naive-random", "sequential", "chunk-shuffle", "window-shuffle", "global-shuffle")
BACKENDS = ("zarr", "tensorstore")
FORMATS = (2, 3)
DATASET_KW = {
    "sequential": {},
    "chunk-shuffle": {"shuffle": True, "draw_same_chunk": True},
    "window-shuffle": {"shuffle": True, "shuffle_window": 8},
    "global-shuffle": {"shuffle": True, "shuffle_window": None},
}


def run_case(path: str, backend: str, case: str, repeat: int, cache_mb: int) -> None:
    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    image = open_image(path, axes="CYX", backend=backend)
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    sampler = PatchSampler(PATCH, spatial_axes="YX")
    stats: dict = {}

    def read_limit() -> int:
        total = 0
        for y in range(0, SHAPE[1], CHUNKS[1]):
            for x in range(0, SHAPE[2], CHUNKS[2]):
                total += image.read((slice(None), slice(y, y + CHUNKS[1]), slice(x, x + CHUNKS[2]))).nbytes
        return total

    def naive_random() -> int:
        order = np.random.default_rng(0).permutation(sampler.plan(coll).toplefts)
        return sum(
            image.read((slice(None), slice(y, y + PATCH), slice(x, x + PATCH))).nbytes for y, x in order
        )

    def epoch() -> int:
        ds = PatchDataset(coll, sampler, seed=0, cache_bytes=cache_mb * 2**20, **DATASET_KW[case])
        total = sum(s["images"].nbytes for s in ds.epoch(0))
        stats.update(ds.stats())
        return total

    run = {"read-limit": read_limit, "naive-random": naive_random}.get(case, epoch)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        nbytes = run()
        best = min(best, time.perf_counter() - t0)
    patches = (SHAPE[1] // PATCH) * (SHAPE[2] // PATCH)
    emit(
        case=case, backend=backend, seconds=round(best, 4), patches=patches,
        patches_per_s=round(patches / best, 1), mb_per_s=round(nbytes / best / 2**20, 1),
        peak_rss_mb=round(peak_rss_mb(), 1), cache_mb=cache_mb,
        chunk_reads=stats.get("chunk_reads"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2, help="passes per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases")
    parser.add_argument("--cache-mb", type=int, default=256)
    parser.add_argument("--case", nargs=3, metavar=("PATH", "BACKEND", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(*args.case, args.repeat, args.cache_mb)
        return
    best: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory(prefix="zarrsample-throughput-") as tmp:
        paths = {}
        for fmt in FORMATS:
            paths[fmt] = str(Path(tmp, f"v{fmt}.zarr"))
            # In a child: Linux carries a parent's peak RSS into its children.
            subprocess.run(
                [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import workloads;"
                 " workloads.write_smooth_image(sys.argv[2], int(sys.argv[3]))",
                 str(Path(__file__).parent), paths[fmt], str(fmt)],
                check=True,
            )
        for _ in range(args.rounds):
            for fmt in FORMATS:
                for backend in BACKENDS:
                    for case in CASES:
                        command = [
                            sys.executable, __file__, "--case", paths[fmt], backend, case,
                            "--repeat", str(args.repeat), "--cache-mb", str(args.cache_mb),
                        ]
                        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                        fields = json.loads(out.strip().splitlines()[-1])
                        old = best.get((fmt, backend, case))
                        if old is not None:
                            rss = max(fields["peak_rss_mb"], old["peak_rss_mb"])
                            fields = old if old["seconds"] <= fields["seconds"] else fields
                            fields["peak_rss_mb"] = rss
                        best[fmt, backend, case] = fields
    for fmt in FORMATS:
        for backend in BACKENDS:
            limit = best[fmt, backend, "read-limit"]["patches_per_s"]
            for case in CASES:
                fields = dict(best[fmt, backend, case], zarr_format=fmt, rounds=args.rounds)
                fields["ratio_to_read_limit"] = round(fields["patches_per_s"] / limit, 3)
                emit(**fields)
    for fmt in FORMATS:
        ratio = lambda case: best[fmt, "zarr", case]["patches_per_s"] / best[fmt, "zarr", "read-limit"]["patches_per_s"]  # noqa: E731
        ts_speedup = best[fmt, "tensorstore", "sequential"]["patches_per_s"] / best[fmt, "zarr", "sequential"]["patches_per_s"]
        emit(
            summary="targets", zarr_format=fmt,
            sequential=round(ratio("sequential"), 3), sequential_target=0.9,
            chunk_shuffle=round(ratio("chunk-shuffle"), 3), chunk_shuffle_target=0.8,
            window_shuffle=round(ratio("window-shuffle"), 3), window_shuffle_target=0.7,
            tensorstore_vs_zarr_sequential=round(ts_speedup, 3), tensorstore_target=1.5,
            max_peak_rss_mb=max(v["peak_rss_mb"] for (f, _, _), v in best.items() if f == fmt),
            rss_target_mb=args.cache_mb + 100,
        )


if __name__ == "__main__":
    main()
