"""Epochs over HTTP with latency: requests and patches/s, sharded and unsharded, both backends.

Workload: (3, 8192, 8192) uint8, smooth content, zstd; zarr v3 unsharded
(chunks (3, 1024, 1024)) and sharded (shards (3, 2048, 2048) of inner chunks
(3, 512, 512)), served on 127.0.0.1 by a byte-range HTTP server that adds
``--latency`` seconds (default 20 ms) to every GET. PatchSampler(256), 1024
patches per epoch, plan order, a fresh dataset (cold cache) per epoch.

Limits measured in the same run, without zarrsample code:

- ``fetch-limit``: every chunk or shard file fetched once (GETs of whole
  files, 8 at a time): the network part alone;
- ``backend-limit``: zarr-python reading every chunk (unsharded) or every
  whole shard (sharded) once with one ``a[...]`` call each: fetch and decode.

With ``--reference-python`` (the venv of ``make bench-compare``), the
reference library (zarrdataset 0.2.2, zarr 2, which reads neither zarr v3
nor sharded arrays) reads a zarr v2 copy of the unsharded image over the
same server, timed in its own process from its first patch to its last
(its start-up is not counted; ours is), next to our epochs of that copy.

Prints one JSON line per case with seconds, patches/s, data requests (GETs
of chunk or shard keys) and ratios to both limits of the same layout.
Usage: ``python benchmarks/remote.py [--rounds 2] [--latency 0.02] [--reference-python .venv-ref/bin/python]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from range_server import range_server  # noqa: E402
from workloads import emit  # noqa: E402

SHAPE = (3, 8192, 8192)
LAYOUTS = {
    "unsharded": {"chunks": (3, 1024, 1024), "shards": None, "zarr_format": 3},
    "sharded": {"chunks": (3, 512, 512), "shards": (3, 2048, 2048), "zarr_format": 3},
    # zarr v2: what the reference library (zarr-python 2) reads, for the side-by-side case
    "unsharded-v2": {"chunks": (3, 1024, 1024), "shards": None, "zarr_format": 2},
}
#: The reference library's epoch over HTTP (run by --reference-python): zarrdataset 0.2.2
#: with zarr 2's FSStore, plan order, every patch.
REFERENCE = """
import json, sys, time
import zarr, zarrdataset
spec = {"modality": "images", "filenames": sys.argv[1], "source_axes": "CYX", "zarr_store": zarr.storage.FSStore}
ds = zarrdataset.ZarrDataset([spec], patch_sampler=zarrdataset.PatchSampler(int(sys.argv[2]), spatial_axes="YX"),
                             shuffle=False)
t0 = time.perf_counter()
n = sum(1 for _ in ds)
print(json.dumps({"seconds": time.perf_counter() - t0, "patches": n}))
"""
PATCH = 256


def write(path: str, chunks, shards, zarr_format: int) -> None:
    import numcodecs
    import zarr
    from zarr.codecs import ZstdCodec

    compressors = ZstdCodec(level=3) if zarr_format == 3 else numcodecs.Zstd(level=3)
    array = zarr.create_array(store=path, shape=SHAPE, chunks=chunks, shards=shards, dtype="uint8",
                              compressors=compressors, zarr_format=zarr_format)
    x = np.arange(SHAPE[2], dtype=np.float32)
    step = shards[1] if shards else chunks[1]
    for row in range(0, SHAPE[1], step):
        y = np.arange(row, row + step, dtype=np.float32)[:, None]
        band = np.stack([128 + 60 * np.sin(y / 97 + c) + 60 * np.cos(x / 131 - c) for c in range(3)])
        array[:, row : row + step, :] = band.astype(np.uint8)


def data_requests(server) -> int:
    """GETs of chunk or shard keys (not metadata)."""
    return sum(n for key, n in server.requests.items() if not key.rsplit("/", 1)[-1].startswith((".z", "zarr.json")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--reference-python", help="python of a venv with zarrdataset 0.2.2 (.venv-ref)")
    args = parser.parse_args()
    import zarr

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    with tempfile.TemporaryDirectory(prefix="zarrsample-remote-") as tmp:
        for name, layout in LAYOUTS.items():
            write(str(Path(tmp, f"{name}.zarr")), layout["chunks"], layout["shards"], layout["zarr_format"])
        patches = (SHAPE[1] // PATCH) * (SHAPE[2] // PATCH)
        best: dict[tuple[str, str], dict] = {}
        with range_server(tmp, latency=args.latency) as (url, server):
            for _ in range(args.rounds):
                for name, layout in LAYOUTS.items():
                    root = Path(tmp, f"{name}.zarr")
                    files = sorted(p.relative_to(tmp).as_posix() for p in root.rglob("*")
                                   if p.is_file() and not p.name.startswith((".z", "zarr.json")))
                    unit = layout["shards"] or layout["chunks"]
                    regions = [(slice(None), slice(y, y + unit[1]), slice(x, x + unit[2]))
                               for y in range(0, SHAPE[1], unit[1]) for x in range(0, SHAPE[2], unit[2])]

                    def fetch(files=files) -> None:
                        with ThreadPoolExecutor(8) as pool:
                            list(pool.map(lambda f: urllib.request.urlopen(f"{url}/{f}").read(), files))

                    def backend(name=name, regions=regions) -> None:
                        array = zarr.open_array(f"{url}/{name}.zarr", mode="r")
                        for region in regions:
                            array[region]

                    cases = {"fetch-limit": fetch, "backend-limit": backend}
                    for kind in ("zarr", "tensorstore"):
                        def epoch(name=name, kind=kind) -> None:
                            image = open_image(f"{url}/{name}.zarr", axes="CYX", backend=kind)
                            coll = ImageCollection({"images": image}, spatial_axes="YX")
                            ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"))
                            assert sum(1 for _ in ds.epoch(0)) == patches

                        cases[f"epoch-{kind}"] = epoch
                    if args.reference_python and layout["zarr_format"] == 2:
                        def reference(name=name) -> float:
                            out = subprocess.run(
                                [args.reference_python, "-c", REFERENCE, f"{url}/{name}.zarr", str(PATCH)],
                                check=True, capture_output=True, text=True,
                            ).stdout
                            fields = json.loads(out.strip().splitlines()[-1])
                            assert fields["patches"] == patches, fields
                            return fields["seconds"]  # its own timing: from its first patch to its last

                        cases["epoch-zarrdataset"] = reference
                    for case, run in cases.items():
                        server.requests.clear()
                        t0 = time.perf_counter()
                        reported = run()
                        seconds = time.perf_counter() - t0 if reported is None else reported
                        old = best.get((name, case))
                        if old is None or seconds < old["seconds"]:
                            best[name, case] = {"seconds": seconds, "requests": data_requests(server)}
        for name in LAYOUTS:
            fetch_s, backend_s = best[name, "fetch-limit"]["seconds"], best[name, "backend-limit"]["seconds"]
            for case in ("fetch-limit", "backend-limit", "epoch-zarr", "epoch-tensorstore", "epoch-zarrdataset"):
                if (name, case) not in best:
                    continue
                fields = best[name, case]
                emit(layout=name, case=case, latency_s=args.latency, seconds=round(fields["seconds"], 3),
                     patches_per_s=round(patches / fields["seconds"]), data_requests=fields["requests"],
                     ratio_to_fetch_limit=round(fetch_s / fields["seconds"], 3),
                     ratio_to_backend_limit=round(backend_s / fields["seconds"], 3), rounds=args.rounds)


if __name__ == "__main__":
    main()
