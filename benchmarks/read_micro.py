"""Patch reading throughput: PatchReader against the raw chunk-read limit.

A (3, 8192, 8192) uint8 zarr v3 array, chunks (3, 1024, 1024), zstd, smooth
content, is written once to a temporary directory. Per backend (zarr,
tensorstore) three cases, each in a fresh subprocess so that its peak RSS is
its own, best of ``--repeat`` passes in each of ``--rounds`` interleaved
rounds:

- ``read-limit``: every storage chunk read once with ``Image.read``;
- ``reader``: all 1024 patches of 256 x 256 in chunk-major plan order through
  ``PatchReader`` (``prefetch_workers=0``);
- ``reader-prefetch``: the same, prefetching ``--lookahead`` patches ahead.

Prints one JSON line per case (patches/s, MB/s of patch pixels, peak RSS);
reader cases add ``ratio_to_read_limit`` (throughput / read limit of the same
backend). Usage: ``python benchmarks/read_micro.py [--repeat 3]``.
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
CASES = ("read-limit", "reader", "reader-prefetch")
BACKENDS = ("zarr", "tensorstore")


def write_image(path: str) -> None:
    """Smooth uint8 content (sines), written one chunk row at a time."""
    import zarr
    from zarr.codecs import BytesCodec, ZstdCodec

    array = zarr.create_array(
        store=path, shape=SHAPE, chunks=CHUNKS, dtype="uint8",
        serializer=BytesCodec(), compressors=ZstdCodec(level=3), zarr_format=3,
    )
    x = np.arange(SHAPE[2], dtype=np.float32)
    for row in range(0, SHAPE[1], CHUNKS[1]):
        y = np.arange(row, row + CHUNKS[1], dtype=np.float32)[:, None]
        band = np.stack([
            128 + 60 * np.sin(y / 97 + c) + 60 * np.cos(x / 131 - c) for c in range(SHAPE[0])
        ])
        array[:, row:row + CHUNKS[1], :] = band.astype(np.uint8)


def run_case(path: str, backend: str, case: str, repeat: int, lookahead: int, cache_mb: int) -> None:
    from zarrsample_core import ImageCollection, PatchSampler, open_image
    from zarrsample_core._reader import PatchReader

    image = open_image(path, axes="CYX", backend=backend)
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    plan = PatchSampler(PATCH, spatial_axes="YX").plan(coll)
    starts = plan.toplefts
    stops = starts + PATCH
    grid = [range(0, n, c) for n, c in zip(SHAPE, CHUNKS)]

    def read_limit() -> int:
        total = 0
        for c in grid[0]:
            for y in grid[1]:
                for x in grid[2]:
                    block = image.read((slice(c, c + CHUNKS[0]), slice(y, y + CHUNKS[1]), slice(x, x + CHUNKS[2])))
                    total += block.nbytes
        return total

    def through_reader(workers: int) -> int:
        reader = PatchReader(prefetch_workers=workers, cache_bytes=cache_mb * 2**20)
        total = 0
        if workers:
            for i in range(min(lookahead, len(starts))):
                reader.prefetch(coll, starts[i], stops[i], spatial_axes="YX")
        for i in range(len(starts)):
            if workers and i + lookahead < len(starts):
                reader.prefetch(coll, starts[i + lookahead], stops[i + lookahead], spatial_axes="YX")
            total += reader.read(coll, starts[i], stops[i], spatial_axes="YX")["images"].nbytes
        through_reader.stats = reader.stats()  # type: ignore[attr-defined]
        return total

    run = {
        "read-limit": read_limit,
        "reader": lambda: through_reader(0),
        "reader-prefetch": lambda: through_reader(2),
    }[case]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        nbytes = run()
        best = min(best, time.perf_counter() - t0)
    fields = dict(
        case=case, backend=backend, shape=list(SHAPE), chunks=list(CHUNKS), patch=PATCH,
        patches=len(starts), seconds=round(best, 4),
        patches_per_s=round(len(starts) / best, 1), mb_per_s=round(nbytes / best / 2**20, 1),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    if case != "read-limit":
        fields.update(cache_mb=cache_mb, stats=through_reader.stats)  # type: ignore[attr-defined]
        if case == "reader-prefetch":
            fields.update(prefetch_workers=2, lookahead=lookahead)
    emit(**fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="passes per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases")
    parser.add_argument("--lookahead", type=int, default=32, help="patches prefetched ahead")
    parser.add_argument("--cache-mb", type=int, default=64)
    parser.add_argument("--case", nargs=3, metavar=("PATH", "BACKEND", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--write", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(*args.case, args.repeat, args.lookahead, args.cache_mb)
        return
    if args.write:
        write_image(args.write)
        return
    with tempfile.TemporaryDirectory(prefix="zarrsample-read-") as tmp:
        path = str(Path(tmp, "image.zarr"))
        t0 = time.perf_counter()
        # In a child: Linux keeps a process's peak RSS across fork + exec, so
        # the parent must stay small for the cases' figures to be their own.
        subprocess.run([sys.executable, __file__, "--write", path], check=True)
        stored = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        emit(case="write", seconds=round(time.perf_counter() - t0, 2), stored_mb=round(stored / 2**20, 1))
        # Rounds interleave the cases so that a change in machine load hits
        # them alike; each case keeps its best round (and its largest RSS).
        best: dict[tuple[str, str], dict] = {}
        for _ in range(args.rounds):
            for backend in BACKENDS:
                for case in CASES:
                    command = [
                        sys.executable, __file__, "--case", path, backend, case,
                        "--repeat", str(args.repeat), "--lookahead", str(args.lookahead),
                        "--cache-mb", str(args.cache_mb),
                    ]
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    fields = json.loads(out.strip().splitlines()[-1])
                    old = best.get((backend, case))
                    if old is not None:
                        fields["peak_rss_mb"] = max(fields["peak_rss_mb"], old["peak_rss_mb"])
                        if old["seconds"] <= fields["seconds"]:
                            fields = {**old, "peak_rss_mb": fields["peak_rss_mb"]}
                    best[backend, case] = fields
        for backend in BACKENDS:
            limit = best[backend, "read-limit"]["patches_per_s"]
            for case in CASES:
                fields = dict(best[backend, case], rounds=args.rounds)
                if case != "read-limit":
                    fields["ratio_to_read_limit"] = round(fields["patches_per_s"] / limit, 3)
                emit(**fields)

if __name__ == "__main__":
    main()
