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

Prints one JSON line per case with seconds, patches/s, data requests (GETs
of chunk or shard keys) and ratios to both limits of the same layout.
Usage: ``python benchmarks/remote.py [--rounds 2] [--latency 0.02]``.
"""

from __future__ import annotations

import argparse
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
    "unsharded": {"chunks": (3, 1024, 1024), "shards": None},
    "sharded": {"chunks": (3, 512, 512), "shards": (3, 2048, 2048)},
}
PATCH = 256


def write(path: str, chunks, shards) -> None:
    import zarr
    from zarr.codecs import ZstdCodec

    array = zarr.create_array(store=path, shape=SHAPE, chunks=chunks, shards=shards, dtype="uint8",
                              compressors=ZstdCodec(level=3), zarr_format=3)
    x = np.arange(SHAPE[2], dtype=np.float32)
    step = shards[1] if shards else chunks[1]
    for row in range(0, SHAPE[1], step):
        y = np.arange(row, row + step, dtype=np.float32)[:, None]
        band = np.stack([128 + 60 * np.sin(y / 97 + c) + 60 * np.cos(x / 131 - c) for c in range(3)])
        array[:, row : row + step, :] = band.astype(np.uint8)


def data_requests(server) -> int:
    return sum(n for key, n in server.requests.items() if "/c/" in key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()
    import zarr

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    with tempfile.TemporaryDirectory(prefix="zarrsample-remote-") as tmp:
        for name, layout in LAYOUTS.items():
            write(str(Path(tmp, f"{name}.zarr")), layout["chunks"], layout["shards"])
        patches = (SHAPE[1] // PATCH) * (SHAPE[2] // PATCH)
        best: dict[tuple[str, str], dict] = {}
        with range_server(tmp, latency=args.latency) as (url, server):
            for _ in range(args.rounds):
                for name, layout in LAYOUTS.items():
                    root = Path(tmp, f"{name}.zarr")
                    files = sorted(p.relative_to(tmp).as_posix() for p in root.rglob("*") if "/c/" in p.as_posix()
                                   and p.is_file())
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
                    for case, run in cases.items():
                        server.requests.clear()
                        t0 = time.perf_counter()
                        run()
                        seconds = time.perf_counter() - t0
                        old = best.get((name, case))
                        if old is None or seconds < old["seconds"]:
                            best[name, case] = {"seconds": seconds, "requests": data_requests(server)}
        for name in LAYOUTS:
            fetch_s, backend_s = best[name, "fetch-limit"]["seconds"], best[name, "backend-limit"]["seconds"]
            for case in ("fetch-limit", "backend-limit", "epoch-zarr", "epoch-tensorstore"):
                fields = best[name, case]
                emit(layout=name, case=case, latency_s=args.latency, seconds=round(fields["seconds"], 3),
                     patches_per_s=round(patches / fields["seconds"]), data_requests=fields["requests"],
                     ratio_to_fetch_limit=round(fetch_s / fields["seconds"], 3),
                     ratio_to_backend_limit=round(backend_s / fields["seconds"], 3), rounds=args.rounds)


if __name__ == "__main__":
    main()
