"""Patches/s through each framework adapter, as a ratio to the core iterator.

Workload of ``benchmarks/throughput.py``: a (3, 8192, 8192) uint8 zarr v3
array, chunks (3, 1024, 1024), zstd; PatchSampler(256): 1024 patches per
epoch, plan order. Cases (each in its own subprocess, rounds interleaved,
best of the rounds):

- ``core-single``: ``ds.epoch(0)`` with ``prefetch=0``: one thread reads;
- ``core``: ``ds.epoch(0)`` with the default read-ahead threads (the rate
  the in-process adapters are compared with);
- ``torch-workers-0``: ``DataLoader(PatchIterableDataset(ds), batch_size=None)``;
- ``torch-workers-2``: two forked DataLoader workers, ``batch_size=16`` (per-
  sample IPC of 200 kB tensors costs ~1 ms each otherwise), ``prefetch=0``
  in the workers (the workers are the parallelism); worker start-up included;
- ``tf``: ``as_tf_dataset(ds)``;
- ``grain``: ``as_grain_dataset(ds, num_epochs=1).to_iter_dataset()`` (in process);
- ``core-batch32``, ``torch-batch32``, ``tf-batch32``, ``grain-batch32``: the same
  epoch in batches of 32 read by the core (``ds.epoch(0).batches(32)``, and
  each adapter's ``batch_size=32``); the adapters' per-sample overhead is
  measured against ``core-batch32``; and once more with the four batched
  cases in one process, warm and interleaved (``batched-same-process``),
  split into the time to the first batch (building the pipeline: tf.data
  traces its map function, ~25 ms, and starts its iterator) and the
  per-sample overhead after it.

Every timed epoch uses a new PatchDataset (a cold chunk cache). Prints one
JSON line per case: patches/s, ratios to ``core-single`` and ``core``, the
per-sample overhead in microseconds against ``core``, then one line of the
targets (torch with 2 workers >= 1.3x the core's single-process rate; tf and
grain >= 0.8 of the core; batched adapters <= 20 us per sample over the
core's batches, tf with ``batch_size`` >= 0.8 of them).
Usage: ``python benchmarks/adapters.py [--rounds 3]``.
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

sys.path.insert(0, str(Path(__file__).parent))
from workloads import emit, peak_rss_mb  # noqa: E402

CASES = (
    "core-single", "core", "core-batch32", "torch-workers-0", "torch-batch32", "torch-workers-2",
    "torch-workers-2-warm", "tf", "tf-batch16", "tf-batch32", "grain", "grain-batch32",
)
BATCHED = ("torch-batch32", "tf-batch32", "grain-batch32")  # compared with core-batch32
PATCHES = 1024


def run_case(path: str, case: str) -> None:
    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    coll = ImageCollection({"images": open_image(path, axes="CYX")}, spatial_axes="YX")

    def fresh(**kwargs):
        return PatchDataset(coll, PatchSampler(256, spatial_axes="YX"), **kwargs)

    if case == "core-batch32":
        def epoch():
            return sum(len(b["images"]) for b in fresh().epoch(0).batches(32))
    elif case.startswith("core"):
        def epoch():
            return sum(1 for _ in fresh(prefetch=0 if case == "core-single" else 256).epoch(0))
    elif case.startswith("torch"):
        from torch.utils.data import DataLoader

        from zarrsample_torch import PatchIterableDataset

        if case == "torch-workers-0":
            def epoch():
                return sum(1 for _ in DataLoader(PatchIterableDataset(fresh()), batch_size=None))
        elif case == "torch-batch32":
            def epoch():
                data = PatchIterableDataset(fresh(), batch_size=32)
                return sum(len(b["images"]) for b in DataLoader(data, batch_size=None))
        elif case == "torch-workers-2":
            def epoch():
                loader = DataLoader(PatchIterableDataset(fresh(prefetch=0)), batch_size=16, num_workers=2)
                return sum(len(batch["images"]) for batch in loader)
        else:
            def epoch():
                # A small cache: the second epoch must read its chunks again, as in a long run.
                data = PatchIterableDataset(fresh(prefetch=0, cache_bytes=16 * 2**20))
                loader = DataLoader(data, batch_size=16, num_workers=2, persistent_workers=True)
                sum(len(batch["images"]) for batch in loader)  # starts the workers
                data.set_epoch(1)
                nonlocal t0
                t0 = time.perf_counter()
                return sum(len(batch["images"]) for batch in loader)
    elif case.startswith("tf"):
        from zarrsample_tf import as_tf_dataset

        size = {"tf-batch16": 16, "tf-batch32": 32}.get(case)

        def epoch():
            return sum(len(b["images"]) if size else 1 for b in as_tf_dataset(fresh(), batch_size=size))
    else:
        from zarrsample_jax import as_grain_dataset

        size = 32 if case == "grain-batch32" else None

        def epoch():
            data = as_grain_dataset(fresh(), num_epochs=1, batch_size=size).to_iter_dataset()
            return sum(len(b["images"]) if size else 1 for b in data)

    best = float("inf")
    t0 = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        n = epoch()
        best = min(best, time.perf_counter() - t0)
    assert n == PATCHES, (case, n)
    emit(case=case, seconds=round(best, 4), patches_per_s=round(n / best, 1), peak_rss_mb=round(peak_rss_mb(), 1))


def run_batched_same_process(path: str, rounds: int) -> None:
    """The batched adapters and the core's batches in one process, interleaved: overhead per sample."""
    from torch.utils.data import DataLoader

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
    from zarrsample_jax import as_grain_dataset
    from zarrsample_tf import as_tf_dataset
    from zarrsample_torch import PatchIterableDataset

    coll = ImageCollection({"images": open_image(path, axes="CYX")}, spatial_axes="YX")
    plan = PatchSampler(256, spatial_axes="YX").plan(coll)

    def fresh() -> PatchDataset:  # a cold chunk cache, the plan made once
        return PatchDataset(coll, PatchSampler(256, spatial_axes="YX"), plans=[plan])

    batches = {  # each builds its pipeline over a new dataset and returns an iterator of batches
        "core-batch32": lambda: fresh().epoch(0).batches(32),
        "torch-batch32": lambda: iter(DataLoader(PatchIterableDataset(fresh(), batch_size=32), batch_size=None)),
        "tf-batch32": lambda: iter(as_tf_dataset(fresh(), batch_size=32)),
        "grain-batch32": lambda: iter(as_grain_dataset(fresh(), num_epochs=1, batch_size=32).to_iter_dataset()),
    }

    def epoch(make) -> tuple[float, float, int]:
        """(seconds to build the pipeline and get the first batch, seconds for the rest, patches)."""
        t0 = time.perf_counter()
        it = make()
        n = len(next(it)["images"])
        t1 = time.perf_counter()
        n += sum(len(b["images"]) for b in it)
        return t1 - t0, time.perf_counter() - t1, n

    for make in batches.values():
        assert epoch(make)[2] == PATCHES  # warm: imports, first calls
    best = dict.fromkeys(batches, float("inf"))
    first = dict.fromkeys(batches, float("inf"))
    rest = dict.fromkeys(batches, float("inf"))
    for _ in range(rounds):
        for case, make in batches.items():
            a, b, _ = epoch(make)
            best[case], first[case], rest[case] = min(best[case], a + b), min(first[case], a), min(rest[case], b)
    adapters = [k for k in best if k != "core-batch32"]
    core, core_rest = best["core-batch32"], rest["core-batch32"]
    steady = PATCHES - 32  # samples after the first batch
    emit(summary="batched-same-process", rounds=rounds, seconds={k: round(v, 4) for k, v in best.items()},
         overhead_us_per_sample={k: round((best[k] - core) / PATCHES * 1e6, 1) for k in adapters},
         ratio_to_core_batch32={k: round(core / best[k], 3) for k in adapters},
         first_batch_seconds={k: round(v, 4) for k, v in first.items()},
         after_first_batch_seconds={k: round(v, 4) for k, v in rest.items()},
         steady_overhead_us_per_sample={k: round((rest[k] - core_rest) / steady * 1e6, 1) for k in adapters},
         steady_ratio_to_core_batch32={k: round(core_rest / rest[k], 3) for k in adapters}, target_us=20,
         note="first batch: building the pipeline (tf traces its map function) and reading the first batch; "
              "steady: per-sample overhead after it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", nargs=2, metavar=("PATH", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        if args.case[1] == "batched-same-process":
            run_batched_same_process(args.case[0], max(5, 2 * args.rounds))
        else:
            run_case(*args.case)
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="zarrsample-adapters-") as tmp:
        path = str(Path(tmp, "v3.zarr"))
        subprocess.run(
            [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import workloads;"
             " workloads.write_smooth_image(sys.argv[2], 3)", str(Path(__file__).parent), path],
            check=True,
        )
        for _ in range(args.rounds):
            for case in CASES:
                out = subprocess.run(
                    [sys.executable, __file__, "--case", path, case],
                    check=True, capture_output=True, text=True, env=env,
                ).stdout
                fields = json.loads(out.strip().splitlines()[-1])
                if case not in best or fields["seconds"] < best[case]["seconds"]:
                    best[case] = fields
        # The batched overheads again, in one process (warm, interleaved): differences between
        # cold subprocesses are as large as the overheads themselves.
        same = subprocess.run(
            [sys.executable, __file__, "--case", path, "batched-same-process"],
            check=True, capture_output=True, text=True, env=env,
        ).stdout
    core, single = best["core"], best["core-single"]
    for case in CASES:
        fields = dict(best[case], rounds=args.rounds)
        fields["ratio_to_core_single"] = round(fields["patches_per_s"] / single["patches_per_s"], 3)
        fields["ratio_to_core"] = round(fields["patches_per_s"] / core["patches_per_s"], 3)
        base = best["core-batch32"] if case in BATCHED else core
        fields["overhead_us_per_sample"] = round((fields["seconds"] - base["seconds"]) / PATCHES * 1e6, 1)
        fields["overhead_against"] = "core-batch32" if case in BATCHED else "core"
        emit(**fields)
    ratio = lambda case: round(best[case]["patches_per_s"] / core["patches_per_s"], 3)  # noqa: E731
    emit(
        summary="targets",
        torch_workers_2_vs_core_single=round(best["torch-workers-2"]["patches_per_s"] / single["patches_per_s"], 3),
        torch_workers_2_warm_vs_core_single=round(
            best["torch-workers-2-warm"]["patches_per_s"] / single["patches_per_s"], 3
        ),
        torch_target=1.3, tf=ratio("tf"), tf_batch16=ratio("tf-batch16"), grain=ratio("grain"),
        tf_grain_target=0.8,
        tf_batch32_vs_core_batch32=round(best["tf-batch32"]["patches_per_s"] / best["core-batch32"]["patches_per_s"], 3),
        tf_batch_target=0.8,
        batched_overhead_us_per_sample={
            case: round((best[case]["seconds"] - best["core-batch32"]["seconds"]) / PATCHES * 1e6, 1)
            for case in BATCHED
        },
        batched_overhead_target_us=20,
    )
    print(same.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
