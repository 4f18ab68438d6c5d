"""zarr-python's codec pipeline against the zarrs pipeline (Rust), and where zarrsample uses either.

zarrsample decodes local zarr chunks (sharded or not, the common codecs)
itself, with numcodecs in its reading threads; only other layouts and
remote unsharded arrays go through zarr-python's codec pipeline. This
script measures whether the optional ``zarrs`` package
(``zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})``)
would pay on those paths, side by side in one process.

Workload: (3, 8192, 8192) uint8, smooth content, zstd level 3, zarr v3:
unsharded (chunks (3, 1024, 1024)) and sharded (shards (3, 2048, 2048) of
inner chunks (3, 512, 512)), local and served over HTTP on 127.0.0.1
(``--latency``, default 0). PatchSampler(256): 1024 patches per epoch.

Cases, interleaved over ``--rounds``, best of each, one JSON line each:

- ``decode-floor``: numcodecs zstd decode of every stored chunk, one thread;
- ``zarr-python`` / ``zarrs``: the array sliced chunk by chunk (inner chunks
  when sharded), opened with that pipeline: no zarrsample code;
- ``epoch`` / ``epoch+zarrs``: a sequential ``PatchDataset`` epoch (fresh
  dataset, cold cache), opened with the default pipeline or with zarrs.

``--zarrs-http`` adds the HTTP cases through zarrs: zarrsample's own HTTP
options (``client_kwargs`` with its timeouts) are refused there ("Unsupported
storage option for HTTPFileSystem"), and a bare ``zarr.open_array`` of the
URL waited without end on the test's range server.

Usage: ``python benchmarks/codec_pipelines.py [--rounds 3] [--latency 0] [--zarrs-http]``
(needs ``pip install zarrs``; not part of ``make bench``, as zarrsample does
not depend on it).

Measured (2-core machine, 3 rounds, zarrs 0.2.3, zarr 3.1.6), seconds per
1024 patches: local unsharded, zarr-python chunk reads 0.30, zarrs 0.27,
our epoch 0.26 (0.24 under the zarrs setting, which our local reads do not
use: run-to-run noise); local sharded, zarr-python 0.67, zarrs 0.41, our
epoch 0.32; HTTP unsharded, zarr-python 0.38, our epoch 0.39 (through
zarr-python). zarrs does not pay where zarrsample reads: it is not adopted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from range_server import range_server  # noqa: E402
from remote import SHAPE, write  # noqa: E402 - the same smooth images, sharded or not
from workloads import emit  # noqa: E402

PATCH = 256
LAYOUTS = {
    "unsharded": {"chunks": (3, 1024, 1024), "shards": None},
    "sharded": {"chunks": (3, 512, 512), "shards": (3, 2048, 2048)},
}
ZARRS = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}


def pipeline(zarrs: bool):
    import zarr

    return zarr.config.set(ZARRS) if zarrs else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every HTTP GET")
    parser.add_argument("--zarrs-http", action="store_true",
                        help="also read over HTTP through zarrs (here it waited forever on the test server)")
    args = parser.parse_args()
    import numcodecs
    import zarr

    try:
        import zarrs  # noqa: F401 - the optional pipeline under test
    except ImportError:
        sys.exit("codec_pipelines.py measures the zarrs pipeline: pip install zarrs")

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    patches = (SHAPE[1] // PATCH) * (SHAPE[2] // PATCH)
    with tempfile.TemporaryDirectory(prefix="zarrsample-pipelines-") as tmp:
        for name, layout in LAYOUTS.items():
            write(str(Path(tmp, f"{name}.zarr")), layout["chunks"], layout["shards"], 3)
        with range_server(tmp, latency=args.latency) as (url, _server):
            run: dict = {}
            for name, layout in LAYOUTS.items():
                chunks = layout["chunks"]
                regions = [(slice(None), slice(y, y + chunks[1]), slice(x, x + chunks[2]))
                           for y in range(0, SHAPE[1], chunks[1]) for x in range(0, SHAPE[2], chunks[2])]
                local = str(Path(tmp, f"{name}.zarr"))
                if layout["shards"] is None:
                    raw = [p.read_bytes() for p in sorted(Path(local, "c").rglob("*")) if p.is_file()]
                    codec = numcodecs.Zstd()
                    run[name, "local", "decode-floor"] = lambda raw=raw, codec=codec: [codec.decode(b) for b in raw]
                for where, location in (("local", local), ("http", f"{url}/{name}.zarr")):
                    for zarrs in (False, True) if where == "local" or args.zarrs_http else (False,):
                        def chunks_of(location=location, regions=regions, zarrs=zarrs) -> None:
                            with pipeline(zarrs):
                                array = zarr.open_array(location, mode="r")
                                for region in regions:
                                    array[region]

                        def epoch(location=location, zarrs=zarrs) -> None:
                            with pipeline(zarrs):
                                image = open_image(location, axes="CYX")
                                coll = ImageCollection({"images": image}, spatial_axes="YX")
                                ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"))
                                assert sum(1 for _ in ds.epoch(0)) == patches

                        run[name, where, "zarrs" if zarrs else "zarr-python"] = chunks_of
                        run[name, where, "epoch+zarrs" if zarrs else "epoch"] = epoch
            best = dict.fromkeys(run, float("inf"))
            errors: dict = {}
            for _ in range(args.rounds):
                for key, fn in run.items():
                    if key in errors:
                        continue
                    t0 = time.perf_counter()
                    try:
                        fn()
                    except Exception as exc:  # noqa: BLE001 - a pipeline that cannot read this is a result
                        errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                        continue
                    best[key] = min(best[key], time.perf_counter() - t0)
    for (name, where, case), seconds in best.items():
        fields: dict = dict(layout=name, where=where, case=case, latency_s=args.latency if where == "http" else 0)
        if (name, where, case) in errors:
            emit(**fields, error=errors[name, where, case])
            continue
        limit = best[name, where, "zarr-python"]
        emit(**fields, seconds=round(seconds, 4), patches_per_s=round(patches / seconds),
             ratio_to_zarr_python=round(limit / seconds, 3), rounds=args.rounds)


if __name__ == "__main__":
    main()
