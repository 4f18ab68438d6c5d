"""Throughput of ``on_error="retry"`` against a server that fails 5% of requests.

Workload: a (3, 4096, 4096) uint8 zarr v3 array, chunks (3, 512, 512), zstd,
smooth content, served over HTTP from 127.0.0.1 by a threaded server in
this process; PatchSampler(256): 256 patches per epoch, plan order, a fresh
dataset (empty cache) per pass.

Cases, per backend (zarr, tensorstore), rounds interleaved so that machine
load hits them alike, best pass of each kept:

- ``clean-raise``: no failures, ``on_error="raise"`` (no retry wrapper);
- ``clean-retry``: no failures, ``on_error="retry"`` (the policy's cost);
- ``flaky-5pct``: every 20th chunk request answered with HTTP 503,
  ``on_error="retry"`` (``retries=3``, ``backoff=0.05``); the epoch must be
  pixel-identical to the clean one.

Prints one JSON line per case (patches/s, MB/s, failed requests, ratio to
``clean-retry``), then a summary line with the target (flaky >= 0.8 of
clean). Usage: ``python benchmarks/faults.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from workloads import emit, peak_rss_mb, write_smooth_image  # noqa: E402

SHAPE, CHUNKS, PATCH = (3, 4096, 4096), (3, 512, 512), 256
FAIL_EVERY = 20  # 5% of chunk requests
METADATA = ("zarr.json", ".zarray", ".zattrs", ".zgroup")


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def do_GET(self):  # noqa: N802 - stdlib name
        server = self.server
        if server.fail_every and not self.path.endswith(METADATA):
            with server.lock:
                server.chunk_requests += 1
                fail = server.chunk_requests % server.fail_every == 0
                server.failures += fail
            if fail:
                self.send_error(503, "Service Unavailable")
                return
        super().do_GET()


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops SYNs under concurrent chunk reads (1 s stalls)
    daemon_threads = True


def run_epoch(url: str, backend: str, on_error: str) -> tuple[float, str, dict]:
    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    image = open_image(url, axes="CYX", backend=backend)
    coll = ImageCollection({"images": image}, spatial_axes="YX")
    ds = PatchDataset(coll, PatchSampler(PATCH, spatial_axes="YX"), on_error=on_error)
    digest = hashlib.blake2b()
    start = time.perf_counter()
    for sample in ds.epoch(0):
        digest.update(sample["images"].data)
    return time.perf_counter() - start, digest.hexdigest(), ds.stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1"
    with tempfile.TemporaryDirectory() as root:
        write_smooth_image(os.path.join(root, "img.zarr"), 3, SHAPE, CHUNKS)
        server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        server.lock, server.chunk_requests, server.failures, server.fail_every = threading.Lock(), 0, 0, 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/img.zarr"
        cases = {"clean-raise": (0, "raise"), "clean-retry": (0, "retry"), "flaky-5pct": (FAIL_EVERY, "retry")}
        n = (SHAPE[1] // PATCH) * (SHAPE[2] // PATCH)
        mb = n * SHAPE[0] * PATCH * PATCH / 1e6
        summary = {}
        for backend in ("zarr", "tensorstore"):
            best: dict[str, float] = {c: float("inf") for c in cases}
            failures: dict[str, int] = {c: 0 for c in cases}
            digests: dict[str, set] = {c: set() for c in cases}
            for _ in range(args.rounds):
                for case, (fail_every, on_error) in cases.items():
                    server.fail_every, server.chunk_requests, server.failures = fail_every, 0, 0
                    seconds, digest, _ = run_epoch(url, backend, on_error)
                    best[case] = min(best[case], seconds)
                    failures[case] += server.failures
                    digests[case].add(digest)
            identical = len(set().union(*digests.values())) == 1
            for case in cases:
                emit(
                    case=case, backend=backend, seconds=round(best[case], 4), patches=n,
                    patches_per_s=round(n / best[case], 1), mb_per_s=round(mb / best[case], 1),
                    failed_requests=failures[case], rounds=args.rounds, pixel_identical=identical,
                    ratio_to_clean=round(best["clean-retry"] / best[case], 3), peak_rss_mb=round(peak_rss_mb(), 1),
                )
            summary[backend] = round(best["clean-retry"] / best["flaky-5pct"], 3)
        server.shutdown()
        server.server_close()
    emit(summary="targets", flaky_vs_clean=summary, target=0.8)


if __name__ == "__main__":
    main()
