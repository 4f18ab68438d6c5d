"""The thumbnail of a single-level image against the backend reading every chunk once.

Workload: a (3, 16384, 16384) uint8 zarr v3 array without a pyramid, chunks
(3, 1024, 1024) (``--chunk``), zstd, smooth content (``workloads.write_smooth_image``),
written once to a temporary directory (or ``--dir``).

Cases (each in a fresh subprocess so that its peak RSS is its own):

- ``zarr-chunks``: zarr-python alone, no zarrsample code: ``a[...]`` of every
  chunk once, one thread;
- ``zarr-chunks-threads``: the same in ``READ_THREADS`` threads;
- ``thumbnail``: ``read_reduced`` of the image to a longest side of 1024
  (factor 16), as a preview reads it;
- ``plan-preview``: the command ``zarrsample plan PATH --preview out.png``,
  its wall time and the time until the plan summary is printed.

Each case runs in ``--rounds`` interleaved rounds, the best kept. Prints one
JSON line per case (seconds, MB/s of decoded pixels, peak RSS), then one line with the thumbnail's rate over the faster backend case (the
limit; the target is >= 0.8).
Usage: ``python benchmarks/preview.py [--size 16384] [--chunk 1024] [--rounds 3] [--repeat 3] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from workloads import best_of, emit, peak_rss_mb, write_smooth_image  # noqa: E402

SIDE = 1024


def _chunk_slices(shape: tuple[int, ...], chunk: int) -> list[tuple[slice, ...]]:
    return [(slice(None), slice(y, y + chunk), slice(x, x + chunk))
            for y in range(0, shape[1], chunk) for x in range(0, shape[2], chunk)]


def run_case(case: str, path: str, repeat: int) -> None:
    import zarr

    array = zarr.open_array(path, mode="r")
    nbytes = int(np.prod(array.shape)) * array.dtype.itemsize
    if case in ("zarr-chunks", "zarr-chunks-threads"):
        from concurrent.futures import ThreadPoolExecutor

        from zarrsample_core.sources._thumbnail import READ_THREADS

        slices = _chunk_slices(array.shape, array.chunks[-1])
        if case == "zarr-chunks":
            seconds, _ = best_of(lambda: [array[s].shape for s in slices], repeat)
        else:
            with ThreadPoolExecutor(READ_THREADS) as pool:
                seconds, _ = best_of(lambda: list(pool.map(lambda s: array[s].shape, slices)), repeat)
        extra: dict[str, object] = {"threads": 1 if case == "zarr-chunks" else READ_THREADS}
    elif case == "thumbnail":
        from zarrsample_core import open_image
        from zarrsample_core.sources import _thumbnail

        image = open_image(path, axes="CYX")
        factor = _thumbnail.reduce_factor(image.shape, image.axes, side=SIDE)
        seconds, out = best_of(lambda: _thumbnail.read_reduced(image, factor), repeat)
        extra = {"threads": _thumbnail.READ_THREADS, "factor": factor, "shape": list(out.shape)}  # type: ignore[attr-defined]
    else:
        raise SystemExit(f"unknown case {case!r}")
    emit(case=case, seconds=round(seconds, 3), mb_per_s=round(nbytes / seconds / 1e6, 1),
         peak_rss_mb=round(peak_rss_mb(), 1), **extra)


def plan_preview(path: str, folder: str) -> dict[str, float]:
    """Wall time of ``zarrsample plan PATH --preview`` and the time of its first printed line."""
    command = [sys.executable, "-m", "zarrsample_core", "plan", path, "--axes", "CYX",
               "--preview", os.path.join(folder, "preview.png")]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    first = child.stdout.readline()
    t_first = time.perf_counter() - t0
    rest = child.stdout.read()
    if child.wait() != 0 or not first:
        raise SystemExit(f"zarrsample plan failed: {first}{rest}")
    return {"seconds": round(time.perf_counter() - t0, 3), "first_output_s": round(t_first, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--chunk", type=int, default=1024, help="chunk side (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="calls per case and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all cases (default 3)")
    parser.add_argument("--dir", help="keep the image here (written once)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.path, args.repeat)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or scratch
        name = f"single-{args.size}.zarr" if args.chunk == 1024 else f"single-{args.size}-{args.chunk}.zarr"
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            write_smooth_image(path, shape=(3, args.size, args.size), chunks=(3, args.chunk, args.chunk))
        best: dict[str, dict[str, object]] = {}
        for _ in range(args.rounds):  # rounds interleave the cases: a change in load hits them alike
            for case in ("zarr-chunks", "zarr-chunks-threads", "thumbnail"):
                out = subprocess.run([sys.executable, __file__, "--case", case, "--path", path,
                                      "--repeat", str(args.repeat)], capture_output=True, text=True, check=True)
                found = json.loads(out.stdout.strip().splitlines()[-1])
                if case not in best or found["mb_per_s"] > best[case]["mb_per_s"]:  # type: ignore[operator]
                    best[case] = found
        for found in best.values():
            print(json.dumps(found), flush=True)
        rates = {case: float(found["mb_per_s"]) for case, found in best.items()}  # type: ignore[arg-type]
        emit(case="plan-preview", **min((plan_preview(path, scratch) for _ in range(args.rounds)),
                                        key=lambda r: r["seconds"]))
        limit = max(rates["zarr-chunks"], rates["zarr-chunks-threads"])
        emit(case="targets", thumbnail_over_backend=round(rates["thumbnail"] / limit, 2), target=0.8)


if __name__ == "__main__":
    main()
