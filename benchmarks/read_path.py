"""Where the time of an epoch goes: floors, the backend's own chunk reads, our epochs.

Workload: a (3, 8192, 8192) uint8 zarr v3 array, chunks (3, 1024, 1024),
zstd level 3, smooth content; PatchSampler(256): 1024 patches of 196 kB.

Every case runs in this one process, interleaved over ``--rounds`` so that a
change of machine load hits them alike; each prints one JSON line with its
best time and its ratio to the limit it is judged against:

- ``decode-floor``: zstd decode of every stored chunk, one thread (numcodecs),
  the bytes read from disk beforehand;
- ``copy-floor``: copying the 1024 patches out of decoded chunks (numpy);
- ``zarr-chunks`` / ``tensorstore-chunks``: the backend's array sliced chunk
  by chunk (``a[:, y:y+1024, x:x+1024]``), no zarrsample code: the limit of
  that backend;
- ``epoch``: ``PatchDataset`` epochs (sequential, ``draw_same_chunk``,
  windowed shuffle), single samples and ``batches(32)``, per backend, as a
  ratio to that backend's chunk reads;
- ``later-epochs``: four consecutive epochs of one dataset whose cache
  (``--later-cache-mb``, 128) holds less than the image (192 MiB): chunk
  reads and seconds per epoch.

Usage: ``python benchmarks/read_path.py [--rounds 3] [--cache-mb 256]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from workloads import emit, peak_rss_mb, write_smooth_image  # noqa: E402

SHAPE = (3, 8192, 8192)
CHUNKS = (3, 1024, 1024)
PATCH = 256
BATCH = 32
ORDERS = {
    "sequential": {},
    "chunk-shuffle": {"shuffle": True, "draw_same_chunk": True},
    "window-shuffle": {"shuffle": True, "shuffle_window": 8},
}
TARGETS = {"sequential": 0.8, "chunk-shuffle": 0.8, "window-shuffle": 0.7}


def chunk_slices() -> list[tuple[slice, ...]]:
    return [
        (slice(None), slice(y, y + CHUNKS[1]), slice(x, x + CHUNKS[2]))
        for y in range(0, SHAPE[1], CHUNKS[1]) for x in range(0, SHAPE[2], CHUNKS[2])
    ]


def stored_chunks(path: str) -> list[bytes]:
    """The raw bytes of every chunk file (zarr v3 default key encoding)."""
    files = sorted(p for p in Path(path, "c").rglob("*") if p.is_file())
    return [p.read_bytes() for p in files]


def cases(path: str, cache_mb: int) -> dict:
    import tensorstore as ts
    import zarr
    from numcodecs import Zstd

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    raw = stored_chunks(path)
    codec = Zstd()
    decoded = [
        np.frombuffer(codec.decode(b), np.uint8).reshape(CHUNKS) for b in raw
    ]
    toplefts = [(y, x) for y in range(0, SHAPE[1], PATCH) for x in range(0, SHAPE[2], PATCH)]
    per_row = SHAPE[2] // CHUNKS[2]
    zarr_array = zarr.open_array(path, mode="r")
    ts_array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}, read=True).result()
    slices = chunk_slices()

    def decode_floor() -> int:
        return sum(codec.decode(b).__len__() for b in raw)

    def copy_floor() -> int:
        out = np.empty((3, PATCH, PATCH), np.uint8)
        for y, x in toplefts:
            chunk = decoded[(y // CHUNKS[1]) * per_row + x // CHUNKS[2]]
            oy, ox = y % CHUNKS[1], x % CHUNKS[2]
            out[...] = chunk[:, oy : oy + PATCH, ox : ox + PATCH]
        return out.nbytes * len(toplefts)

    def zarr_chunks() -> int:
        return sum(zarr_array[s].nbytes for s in slices)

    def ts_chunks() -> int:
        return sum(ts_array[s].read().result().nbytes for s in slices)

    run: dict = {
        "decode-floor": decode_floor, "copy-floor": copy_floor,
        "zarr-chunks": zarr_chunks, "tensorstore-chunks": ts_chunks,
    }
    sampler = PatchSampler(PATCH, spatial_axes="YX")
    counters: dict = {}
    for backend in ("zarr", "tensorstore"):
        coll = ImageCollection({"images": open_image(path, axes="CYX", backend=backend)}, spatial_axes="YX")
        plan = sampler.plan(coll)
        for order, kw in ORDERS.items():
            for batched in (False, True):
                def epoch(coll=coll, plan=plan, kw=kw, batched=batched, key=(backend, order, batched)) -> int:
                    ds = PatchDataset(coll, plans=[plan], seed=0, cache_bytes=cache_mb * 2**20, **kw)
                    it = ds.epoch(0)
                    if batched:
                        total = sum(b["images"].nbytes for b in it.batches(BATCH))
                    else:
                        total = sum(s["images"].nbytes for s in it)
                    counters[key] = ds.stats()["chunk_reads"]
                    return total

                run[f"epoch/{backend}/{order}/{'batches' if batched else 'samples'}"] = epoch
    return {"run": run, "counters": counters}


def later_epochs(path: str, order: str, cache_mb: int, epochs: int = 4) -> dict:
    """Chunk reads and seconds of consecutive epochs of one dataset whose cache holds less than the image."""
    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    coll = ImageCollection({"images": open_image(path, axes="CYX")}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), seed=0, cache_bytes=cache_mb * 2**20,
                      **ORDERS[order])
    reads, seconds = [], []
    for epoch in range(epochs):
        before = ds.stats()["chunk_reads"]
        t0 = time.perf_counter()
        for _ in ds.epoch(epoch):
            pass
        seconds.append(round(time.perf_counter() - t0, 4))
        reads.append(ds.stats()["chunk_reads"] - before)
    chunks = (SHAPE[1] // CHUNKS[1]) * (SHAPE[2] // CHUNKS[2])
    image_mb = chunks * int(np.prod(CHUNKS)) / 2**20
    return dict(case=f"later-epochs/zarr/{order}", cache_mb=cache_mb, image_mb=image_mb, chunk_reads=reads,
                seconds=seconds, chunks=chunks,
                note="one dataset, consecutive epochs, the cache holding less than the image; with least "
                     "recently used eviction a sequential epoch reads every chunk again (64 here), a windowed "
                     "shuffle 43-45")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases")
    parser.add_argument("--cache-mb", type=int, default=256)
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument("--later-cache-mb", type=int, default=128, help="cache of the later-epochs case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zarrsample-read-path-") as tmp:
        path = str(Path(tmp, "v3.zarr"))
        write_smooth_image(path, 3, SHAPE, CHUNKS)
        setup = cases(path, args.cache_mb)
        run, counters = setup["run"], setup["counters"]
        names = [n for n in run if not n.startswith("epoch") or args.only in n]
        best = dict.fromkeys(names, float("inf"))
        nbytes: dict = {}
        for _ in range(args.rounds):
            for name in names:
                t0 = time.perf_counter()
                nbytes[name] = run[name]()
                best[name] = min(best[name], time.perf_counter() - t0)
    patches = (SHAPE[1] // PATCH) * (SHAPE[2] // PATCH)
    limits = {"zarr": best["zarr-chunks"], "tensorstore": best["tensorstore-chunks"]}
    for name in names:
        fields: dict = {"case": name, "seconds": round(best[name], 4)}
        if name.startswith("epoch"):
            _, backend, order, unit = name.split("/")
            key = (backend, order, unit == "batches")
            fields.update(
                patches_per_s=round(patches / best[name]),
                ratio_to_backend_chunks=round(limits[backend] / best[name], 3),
                target=TARGETS[order], chunk_reads=counters.get(key),
            )
        elif name in ("zarr-chunks", "tensorstore-chunks"):
            fields.update(ratio_to_decode_floor=round(best["decode-floor"] / best[name], 3))
        emit(**fields)
    if not args.only:
        with tempfile.TemporaryDirectory(prefix="zarrsample-read-path-") as tmp:
            path = str(Path(tmp, "v3.zarr"))
            write_smooth_image(path, 3, SHAPE, CHUNKS)
            for order in ("sequential", "window-shuffle"):
                emit(**later_epochs(path, order, args.later_cache_mb))
    seq = {b: best.get(f"epoch/{b}/sequential/samples") for b in ("zarr", "tensorstore")}
    if all(seq.values()):
        emit(summary="tensorstore-vs-zarr-sequential", ratio=round(seq["zarr"] / seq["tensorstore"], 3),
             target=1.5, peak_rss_mb=round(peak_rss_mb(), 1), cache_mb=args.cache_mb)


if __name__ == "__main__":
    main()
