"""Patch throughput over a whole-slide TIFF against tifffile decoding every tile.

Workload: a 32768 x 32768 RGB uint8 pyramidal TIFF (SubIFDs, 3 levels), JPEG
tiles of 512 x 512 (quality 90), smooth content with noise, written once to a
temporary directory by tifffile; PatchSampler(256) over level 0: every tile
is covered by four patches, so an epoch decodes the whole level once, as the
limit does.

Cases (each in a fresh subprocess so that its peak RSS is its own; rounds
interleave the cases so that a change in machine load hits them alike):

- ``decode-floor``: tifffile alone, no zarrsample code: every tile of level 0
  read and decoded once (``TiffPage.segments``, one thread);
- ``decode-floor-2-threads``: the same with two decoding threads (the
  machine's cores);
- ``zarr-store``: every tile once through zarr on tifffile's zarr store (what
  ``tifffile.imread(path, aszarr=True)`` with zarr gives, no zarrsample code);
- ``sequential``: ``ds.epoch(0)`` in plan order;
- ``chunk-shuffle``: ``shuffle=True, draw_same_chunk=True``;
- ``workers-2``: the chunk-shuffled epoch through a torch DataLoader with two
  worker processes (fork), batches of 32.

Prints one JSON line per case (patches/s, MB/s, peak RSS, the ratio to the
decode floor of the same run), then one line of the targets.
Usage: ``python benchmarks/wsi.py [--size 32768] [--rounds 2]``.
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

TILE = 512
PATCH = 256
LEVELS = 3
CASES = ("decode-floor", "decode-floor-2-threads", "zarr-store", "sequential", "chunk-shuffle", "workers-2")


def tiles(size: int, factor: int):
    """The tiles of a level, row by row: a smooth gradient with noise, generated as written."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 24, (TILE, TILE, 3), dtype=np.uint8)
    side = size // factor
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    for y in range(0, side, TILE):
        for x in range(0, side, TILE):
            base = np.stack([
                128 + 90 * np.sin((yy + y) / 211.0 * factor),
                128 + 90 * np.cos((xx + x) / 173.0 * factor),
                128 + 60 * np.sin((xx + yy + x + y) / 97.0 * factor),
            ], axis=-1)
            yield (base.astype(np.uint8) + noise)[: side - y, : side - x]


def write_slide(path: str, size: int) -> None:
    import tifffile

    options = {"tile": (TILE, TILE), "compression": "jpeg", "compressionargs": {"level": 90},
               "photometric": "rgb", "dtype": np.uint8}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(tiles(size, 1), shape=(size, size, 3), subifds=LEVELS - 1,
                  resolution=(40000, 40000), resolutionunit="CENTIMETER", **options)
        for level in range(1, LEVELS):
            side = size // 2**level
            tif.write(tiles(size, 2**level), shape=(side, side, 3), subfiletype=1, **options)


def run_case(path: str, case: str, size: int) -> None:
    """One case; the clock covers the pass over the pixels (file opened, plan made, imports done)."""
    patches = (size // PATCH) ** 2
    nbytes = size * size * 3
    if case.startswith("decode-floor"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            t0 = time.perf_counter()
            workers = 2 if case.endswith("2-threads") else 1
            count = sum(segment is not None for segment, _, _ in page.segments(maxworkers=workers))
            seconds = time.perf_counter() - t0
        assert count == (size // TILE) ** 2
    elif case == "zarr-store":
        import tifffile
        import zarr

        with tifffile.TiffFile(path) as tif:
            array = zarr.open_array(store=tif.aszarr(series=0, level=0), mode="r")
            t0 = time.perf_counter()
            count = sum(array[y : y + TILE, x : x + TILE].size > 0
                        for y in range(0, size, TILE) for x in range(0, size, TILE))
            seconds = time.perf_counter() - t0
        assert count == (size // TILE) ** 2
    else:
        from zarrsample_core import (
            ImageCollection,
            PatchDataset,
            PatchSampler,
            open_image,
        )

        coll = ImageCollection({"images": open_image(path)}, spatial_axes="YX")
        shuffle = {"shuffle": True, "draw_same_chunk": True} if case != "sequential" else {}
        ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), seed=0, **shuffle)
        if case == "workers-2":
            from torch.utils.data import DataLoader

            from zarrsample_torch import PatchIterableDataset

            loader = DataLoader(PatchIterableDataset(ds), batch_size=32, num_workers=2,
                                multiprocessing_context="fork")
            t0 = time.perf_counter()  # worker start-up included: it is part of every epoch here
            got = sum(int(batch["images"].shape[0]) for batch in loader)
        else:
            t0 = time.perf_counter()
            got = sum(1 for _ in ds.epoch(0))
        seconds = time.perf_counter() - t0
        assert got == patches, (got, patches)
    emit(case=case, seconds=round(seconds, 3), patches=patches, patches_per_s=round(patches / seconds, 1),
         mb_per_s=round(nbytes / seconds / 2**20, 1), peak_rss_mb=round(peak_rss_mb(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32768, help="level-0 side in pixels")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all cases")
    parser.add_argument("--case", nargs=2, metavar=("PATH", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case[0], args.case[1], args.size)
        return
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="zarrsample-wsi-") as tmp:
        path = str(Path(tmp, "slide.tif"))
        t0 = time.perf_counter()
        # In a child: Linux carries a parent's peak RSS into its children.
        subprocess.run(
            [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import wsi;"
             " wsi.write_slide(sys.argv[2], int(sys.argv[3]))",
             str(Path(__file__).parent), path, str(args.size)],
            check=True,
        )
        emit(setup="slide written", seconds=round(time.perf_counter() - t0, 1),
             bytes=Path(path).stat().st_size, size=args.size, tile=TILE)
        for _ in range(args.rounds):
            for case in CASES:
                command = [sys.executable, __file__, "--case", path, case, "--size", str(args.size)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"case {case} failed:\n{done.stderr[-3000:]}")
                fields = json.loads(done.stdout.strip().splitlines()[-1])
                old = best.get(case)
                if old is not None:
                    rss = max(fields["peak_rss_mb"], old["peak_rss_mb"])
                    fields = old if old["seconds"] <= fields["seconds"] else fields
                    fields["peak_rss_mb"] = rss
                best[case] = fields
    floor = best["decode-floor"]["seconds"]
    for case in CASES:
        emit(**best[case], ratio_to_decode_floor=round(floor / best[case]["seconds"], 3), rounds=args.rounds)
    emit(
        summary="targets",
        sequential=round(floor / best["sequential"]["seconds"], 3), sequential_target=0.8,
        chunk_shuffle=round(floor / best["chunk-shuffle"]["seconds"], 3), chunk_shuffle_target=0.8,
        workers_2=round(floor / best["workers-2"]["seconds"], 3),
    )


if __name__ == "__main__":
    main()
