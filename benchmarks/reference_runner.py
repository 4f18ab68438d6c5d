"""Reference side of ``benchmarks/compare.py``: zarrdataset 0.2.2 on the planning workloads.

Runs inside ``.venv-ref`` (zarrdataset 0.2.2, zarr 2, numpy 1.x), one case per
process, and prints one JSON line. The case table (:data:`CASES`) is plain
Python so that ``compare.py`` imports it from our own venv too; zarr and
zarrdataset are imported only here, inside the functions.

Usage::

    python benchmarks/reference_runner.py --case NAME [--toplefts OUT.npy] [--memory-limit-mb N]
    python benchmarks/reference_runner.py --probes
    python benchmarks/reference_runner.py --read NAME --path IMAGE.zarr [--hashes OUT.npz]

``--case`` times ``compute_chunks`` plus ``compute_patches`` over every chunk
and writes the patch top-lefts, ``(n, 2)`` int64 in (Y, X) order, to
``OUT.npy``. A ``MemoryError`` (under the ``--memory-limit-mb`` address-space
cap, if any) is reported with the stage it hit and the peak RSS, not raised.
``--probes`` runs the small examples that isolate each known difference.
``--read`` runs one reading-throughput case (:data:`REFERENCE_READS`) on an
image that ``compare.py`` wrote, and prints patches/s, chunk reads, peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.dont_write_bytecode = True  # write nothing inside the repository
sys.path.insert(0, str(Path(__file__).parent))
from workloads import emit, peak_rss_mb, tissue_mask  # noqa: E402

AXES = "YX"


@dataclass(frozen=True)
class Case:
    """One planning workload: a (3, size, size) uint8 image, a 1/16 tissue mask."""

    size: int
    sampler: str  # "grid" or "bluenoise"
    stride: int | None = None
    full: bool = False  # only with ``compare.py --full``
    patch: int = 256
    chunk: int = 1024
    mask_divisor: int = 16
    min_area: float = 0.5

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def chunks(self) -> tuple[int, int, int]:
        return (3, self.chunk, self.chunk)

    @property
    def mask_shape(self) -> tuple[int, int]:
        return (self.size // self.mask_divisor, self.size // self.mask_divisor)

    def mask(self):
        return tissue_mask(self.mask_shape, seed=0)


CASES = {
    "grid-8192": Case(8192, "grid"),
    "grid-16384": Case(16384, "grid"),
    "grid-32768": Case(32768, "grid", full=True),
    "grid-65536": Case(65536, "grid", full=True),
    "stride-8192": Case(8192, "grid", stride=128),
    "bluenoise-8192": Case(8192, "bluenoise"),
}

#: Reading throughput (``compare.py`` writes the image once with
#: ``workloads.write_smooth_image(path, 2)``: zarr v2, numcodecs Zstd, which
#: zarr 2 reads): PatchSampler(READ_PATCH), no mask, every patch.
READ_SHAPE = (3, 8192, 8192)
READ_CHUNKS = (3, 1024, 1024)
READ_PATCH = 256
READ_PATCHES = (READ_SHAPE[1] // READ_PATCH) * (READ_SHAPE[2] // READ_PATCH)
#: The reference's reading runs: ``ZarrDataset`` keyword arguments (None: the
#: read limit, every chunk once through zarr 2). ``random`` is seeded with
#: READ_SEED before each run (the reference shuffles with the global state).
REFERENCE_READS = {
    "read-limit": None,
    "sequential": {"shuffle": False},
    "sequential-batches": {"shuffle": False},  # stacked by READ_BATCH, as a training loop's collate does
    "shuffled": {"shuffle": True},
    "shuffled-same-chunk": {"shuffle": True, "draw_same_chunk": True},
}
READ_SEED = 0
#: Batch size of the ``-batches`` reading runs (``numpy.stack`` of the patches, what torch's collate does).
READ_BATCH = 32


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class StagePeak:
    """Peak RSS of one stage: resets the kernel's high-water mark (Linux
    ``/proc/self/clear_refs``) at the start, reads ``VmHWM`` at the end.

    ``fields()`` gives ``peak_rss_mb`` (the whole process, setup included),
    ``rss_at_start_mb`` and ``stage_peak_rss_mb`` (None where unsupported).
    """

    def __init__(self) -> None:
        self.setup_peak = peak_rss_mb()  # read first: the reset lowers ru_maxrss too
        self.start = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = _status_mb("VmRSS")
        except OSError:
            pass

    def fields(self) -> dict:
        stage = _status_mb("VmHWM") if self.start is not None else None
        peak = max(self.setup_peak, stage or 0.0, peak_rss_mb())
        return dict(peak_rss_mb=round(peak, 1),
                    rss_at_start_mb=None if self.start is None else round(self.start, 1),
                    stage_peak_rss_mb=None if stage is None else round(stage, 1))


#: ``np.random.seed`` of the reference's blue noise (``poisson_disc`` draws
#: from numpy's global state; the reference has no seed parameter).
REFERENCE_SEED = 0


def _collection(image, mask):
    import zarrdataset

    return zarrdataset.ImageCollection(
        {"images": {"filename": image, "source_axes": "CYX"}, "masks": {"filename": mask, "source_axes": AXES}},
        spatial_axes=AXES,
    )


def _image(shape, chunks):
    """A zarr 2 in-memory array: metadata only, no chunk is ever written."""
    import numpy as np
    import zarr

    return zarr.zeros(shape, chunks=chunks, dtype=np.uint8)


def _sampler(kind: str, patch: int, *, stride=None, min_area=0.5, allow_overlap=False):
    import zarrdataset

    if kind == "grid":
        return zarrdataset.PatchSampler(patch, stride=stride, min_area=min_area, spatial_axes=AXES)
    return zarrdataset.BlueNoisePatchSampler(
        patch, allow_overlap=allow_overlap, stride=stride, min_area=min_area, spatial_axes=AXES
    )


def _all_patches(sampler, collection, chunks=None, stats=None):
    """``(toplefts (n, 2) int64, sizes (n, 2) int64)`` over every chunk.

    ``stats``, a dict, receives ``empty_chunks``: chunks that gave no patch.
    """
    import numpy as np

    if chunks is None:
        chunks = sampler.compute_chunks(collection)
    starts, stops, empty = [], [], 0
    for chunk in chunks:
        patches = sampler.compute_patches(collection, chunk)
        empty += not patches
        for p in patches:
            starts.append([p[a].start for a in AXES])
            stops.append([p[a].stop for a in AXES])
    if stats is not None:
        stats["empty_chunks"] = empty
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, 2)
    stops = np.asarray(stops, dtype=np.int64).reshape(-1, 2)
    return starts, stops - starts


# -- one benchmark case -----------------------------------------------------------


def run_case(name: str, toplefts_path: str | None, memory_limit_mb: int) -> None:
    import numpy as np

    case = CASES[name]
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from importlib.metadata import version

    import zarr

    mask = case.mask()
    collection = _collection(_image(case.image_shape, case.chunks), mask)
    sampler = _sampler(case.sampler, case.patch, stride=case.stride, min_area=case.min_area)
    np.random.seed(REFERENCE_SEED)
    fields = dict(
        case=name, library=f"zarrdataset {version('zarrdataset')}", zarr=zarr.__version__,
        numpy=np.__version__, memory_limit_mb=memory_limit_mb or None,
    )
    rss = StagePeak()
    stage, t0 = "compute_chunks", time.perf_counter()
    try:
        chunks = sampler.compute_chunks(collection)
        t1 = time.perf_counter()
        stage = "compute_patches"
        stats: dict = {}
        toplefts, sizes = _all_patches(sampler, collection, chunks, stats)
        t2 = time.perf_counter()
    except MemoryError as exc:
        emit(**fields, error="MemoryError", stage=stage, message=str(exc),
             seconds_until_error=round(time.perf_counter() - t0, 2), **rss.fields())
        return
    if toplefts_path:
        np.save(toplefts_path, toplefts)
    emit(
        **fields, chunks=len(chunks), empty_chunks=stats["empty_chunks"], patches=len(toplefts),
        unique_patches=len(np.unique(toplefts, axis=0)),
        patch_sizes=sorted({tuple(s) for s in sizes.tolist()}),
        chunks_seconds=round(t1 - t0, 3), patches_seconds=round(t2 - t1, 3),
        seconds=round(t2 - t0, 3), **rss.fields(),
        toplefts=toplefts_path if toplefts_path else toplefts.tolist(),
    )


# -- reading throughput ------------------------------------------------------------------


def patch_digest(patch) -> int:
    """64-bit blake2b of a patch's C-order bytes (shape and dtype included)."""
    import hashlib

    import numpy as np

    patch = np.ascontiguousarray(patch)
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{patch.shape}{patch.dtype.str}".encode())
    h.update(patch.tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


def run_read(name: str, path: str, hashes_path: str | None) -> None:
    """One reading run of the reference: times it, counts the chunk reads (a
    DirectoryStore that counts every non-metadata key it returns) and, with
    ``hashes_path``, afterwards (untimed, after the RSS is read) writes the
    top-left and digest of every patch of a ``return_positions=True`` epoch
    with the same arguments to an ``.npz`` (``toplefts`` (n, 2) Y, X;
    ``digests`` (n,) int64; in delivery order; ``shape`` of the last patch)."""
    import random
    from importlib.metadata import version

    import numpy as np
    import zarr
    import zarrdataset
    from zarrdataset import _zarrdataset

    reads = {"n": 0}

    class CountingStore(zarr.storage.DirectoryStore):
        def __getitem__(self, key):
            if not key.rsplit("/", 1)[-1].startswith(".z"):
                reads["n"] += 1
            return super().__getitem__(key)

    kwargs = REFERENCE_READS[name]
    fields = dict(case=name, library=f"zarrdataset {version('zarrdataset')}", zarr=zarr.__version__,
                  numpy=np.__version__, torch=_zarrdataset.PYTORCH_SUPPORT, kwargs=kwargs)

    def dataset(**extra):
        spec = {"modality": "images", "filenames": path, "source_axes": "CYX", "zarr_store": CountingStore}
        sampler = zarrdataset.PatchSampler(READ_PATCH, spatial_axes=AXES)
        return zarrdataset.ZarrDataset([spec], patch_sampler=sampler, **kwargs, **extra)

    rss = StagePeak()
    random.seed(READ_SEED)
    t0 = time.perf_counter()
    if kwargs is None:
        array = zarr.open(CountingStore(path), mode="r")
        _, ys, xs = READ_SHAPE
        _, cy, cx = READ_CHUNKS
        nbytes = sum(array[:, y : y + cy, x : x + cx].nbytes for y in range(0, ys, cy) for x in range(0, xs, cx))
        patches, views = READ_PATCHES, None
    elif name.endswith("-batches"):
        patches = nbytes = 0
        views = None
        pending: list = []
        for patch in dataset():
            pending.append(patch)
            if len(pending) == READ_BATCH:
                batch = np.stack(pending)
                patches, nbytes, pending = patches + len(batch), nbytes + batch.nbytes, []
        if pending:
            batch = np.stack(pending)
            patches, nbytes = patches + len(batch), nbytes + batch.nbytes
    else:
        patches = nbytes = views = 0
        for patch in dataset():
            patches += 1
            nbytes += patch.nbytes
            views += patch.base is not None
    seconds = time.perf_counter() - t0
    fields.update(seconds=round(seconds, 4), patches=patches, patches_per_s=round(patches / seconds, 1),
                  mb_per_s=round(nbytes / seconds / 2**20, 1), chunk_reads=reads["n"],
                  patches_that_are_views=views, **rss.fields())
    if hashes_path and kwargs is not None and not name.endswith("-batches"):
        random.seed(READ_SEED)
        toplefts, digests = [], []
        for position, patch in dataset(return_positions=True):
            # Rows follow the image axes "CYX": [start, stop] each ([0, -1] for C).
            toplefts.append(position[1:, 0])
            digests.append(patch_digest(patch))
        np.savez(hashes_path, toplefts=np.asarray(toplefts, np.int64).reshape(-1, 2),
                 digests=np.asarray(digests, np.int64), shape=np.asarray(patch.shape, np.int64))
    emit(**fields)


# -- probes: small examples, one per difference ----------------------------------------


def _accepted_up_to(make_collection, patch: int, stride, topleft: tuple[int, int]) -> int:
    """Largest integer ``min_area`` (image pixels) at which the reference still
    returns the patch at ``topleft``: its rounded coverage of that patch."""
    collection = make_collection()

    def accepts(area: int) -> bool:
        starts, _ = _all_patches(_sampler("grid", patch, stride=stride, min_area=area), collection)
        return topleft in {tuple(t) for t in starts.tolist()}

    lo, hi = 0, patch * patch + 1  # accepts(lo) (0 = everything), not accepts(hi)
    if not accepts(1):
        return 0
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if accepts(mid) else (lo, mid)
    return lo


def _pattern_stats(points, patch: int) -> dict:
    """Minimum distance and overlapping windows of blue-noise top-lefts."""
    import numpy as np

    p = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    i, j = np.triu_indices(len(p), 1)
    d = np.abs(p[i] - p[j])
    overlap = np.all(d < patch, axis=1)
    dist = np.sqrt((d.astype(float) ** 2).sum(axis=1))
    example = None
    if overlap.any():
        k = int(np.flatnonzero(overlap)[0])
        example = {"a": p[i[k]].tolist(), "b": p[j[k]].tolist(), "distance": round(float(dist[k]), 1)}
    return dict(points=len(p), min_distance=round(float(dist.min()), 1) if len(dist) else None,
                overlapping_pairs=int(overlap.sum()), example=example)


def run_probes() -> None:
    import numpy as np

    out: dict = {}

    # 1. A 256^2 patch whose 1/16 mask covers exactly half of it.
    half = np.zeros((16, 16), bool)
    half[:8] = True
    coll = lambda: _collection(_image((3, 256, 256), (3, 256, 256)), half)  # noqa: E731
    starts, _ = _all_patches(_sampler("grid", 256, min_area=0.5), coll())
    out["half_covered"] = dict(
        image=256, mask="16x16, rows 0-7 set", exact_coverage_px=128 * 256, threshold_px=32768,
        patches=len(starts), reference_coverage_px=_accepted_up_to(coll, 256, None, (0, 0)),
    )

    # 2. stride < patch: a fully covered 512^2 image, patch 256, stride 128.
    full = np.ones((32, 32), bool)
    coll = lambda: _collection(_image((3, 512, 512), (3, 512, 512)), full)  # noqa: E731
    at_half, _ = _all_patches(_sampler("grid", 256, stride=128, min_area=0.5), coll())
    at_fifth, sizes = _all_patches(_sampler("grid", 256, stride=128, min_area=0.2), coll())
    out["stride_cell"] = dict(
        image=512, mask="32x32 all set", patch=256, stride=128,
        patches_min_area_0_5=len(at_half), patches_min_area_0_2=len(at_fifth),
        outside_image_min_area_0_2=int(np.any(at_fifth + sizes > 512, axis=1).sum()),
        toplefts_min_area_0_2=at_fifth.tolist(),
        reference_coverage_px=_accepted_up_to(coll, 256, 128, (0, 0)),
    )

    # 3. The blue-noise pattern of a 1024^2 chunk tile, with and without overlap.
    coll = _collection(_image((3, 1024, 1024), (3, 1024, 1024)), np.ones((64, 64), bool))
    pattern = {}
    for allow_overlap in (False, True):
        per_seed = []
        for seed in range(10):
            np.random.seed(seed)
            s = _sampler("bluenoise", 256, allow_overlap=allow_overlap)
            s.compute_chunks(coll)  # sets the chunk size the pattern is drawn in
            s.compute_sampling_positions()
            per_seed.append(_pattern_stats(s._base_chunk_tls, 256))
        pattern[f"allow_overlap_{allow_overlap}"] = dict(
            seed_0=per_seed[0],
            seeds_with_overlap=sum(r["overlapping_pairs"] > 0 for r in per_seed),
            seeds=len(per_seed),
            min_distance_all_seeds=min(r["min_distance"] for r in per_seed),
        )
    out["bluenoise_pattern"] = pattern

    # 4. Blue noise on a fully covered 4096^2 image (4 x 4 chunk tiles of 1024):
    # patches per chunk tile, with a 1/16 mask and a 1/4 mask.
    per_tile = {}
    for divisor in (16, 4):
        np.random.seed(REFERENCE_SEED)
        s = _sampler("bluenoise", 256)
        coll = _collection(_image((3, 4096, 4096), (3, 1024, 1024)), np.ones((4096 // divisor,) * 2, bool))
        starts, _ = _all_patches(s, coll)
        counts = np.zeros((4, 4), np.int64)
        np.add.at(counts, tuple((starts // 1024).T), 1)
        per_tile[f"mask_1/{divisor}"] = dict(pattern_points=len(s._base_chunk_tls), per_tile=counts.tolist())
    out["bluenoise_offset"] = per_tile

    # 5. Blue noise with a single set 1/16 mask pixel at the origin (16x16 image
    # pixels): what min_area=0.5 keeps.
    single = np.zeros((64, 64), bool)
    single[0, 0] = True
    np.random.seed(REFERENCE_SEED)
    starts, _ = _all_patches(_sampler("bluenoise", 256), _collection(_image((3, 1024, 1024), (3, 1024, 1024)), single))
    out["bluenoise_min_area"] = dict(image=1024, mask="64x64, only (0, 0) set", patches=len(starts),
                                     toplefts=starts.tolist())
    emit(probes=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--case", choices=sorted(CASES))
    group.add_argument("--probes", action="store_true", help="run the small difference examples")
    group.add_argument("--read", choices=sorted(REFERENCE_READS),
                       help="one reading run on the zarr v2 image at --path")
    parser.add_argument("--path", help="with --read: the image (a .zarr directory)")
    parser.add_argument("--hashes", help="with --read: write top-lefts and patch digests to this .npz")
    parser.add_argument("--toplefts", help="write the patch top-lefts to this .npy instead of the JSON line")
    parser.add_argument("--memory-limit-mb", type=int, default=0,
                        help="address-space cap (RLIMIT_AS) for the case, 0 = none")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # zarrdataset warns that torch is absent
    if args.probes:
        run_probes()
    elif args.read:
        if not args.path:
            parser.error("--read needs --path")
        run_read(args.read, args.path, args.hashes)
    else:
        run_case(args.case, args.toplefts, args.memory_limit_mb)


if __name__ == "__main__":
    main()
