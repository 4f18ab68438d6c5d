"""Planning side by side: zarrsample against zarrdataset 0.2.2 on the same workloads.

Usage::

    python benchmarks/compare.py --reference-python .venv-ref/bin/python [--full] [--case NAME]

For every case (see ``reference_runner.CASES``; ``--full`` adds 32768^2 and
65536^2) both libraries run in their own subprocess, so each peak RSS is the
case's own: ours in this interpreter, the reference as
``reference_runner.py --case NAME`` in the reference venv (with a timeout and
an address-space cap). Prints one JSON line per case: the reference's time
(``compute_chunks`` + ``compute_patches`` over every chunk) and peak RSS, ours
(``plan`` and the same ``compute_chunks`` + ``compute_patches`` surface), the
speed ratio, and whether the patch sets agree; both are also checked against
a naive exact-coverage oracle, and every difference is explained by a small
probe run through both libraries (``why``).

Then READING throughput (skipped with ``--case`` or ``--no-reading``; alone
with ``--reading-only``): a (3, 8192, 8192) uint8 zarr v2 image, chunks
(3, 1024, 1024), zstd, smooth content, written once to a temporary directory;
PatchSampler(256), no mask: all 1024 patches. Each run in its own subprocess
(``reference_runner.py --read NAME`` in the reference venv, ``--ours-read
NAME`` here), 5 interleaved rounds, best of them. One line per case:
``read-limit`` (every chunk once: zarr 2 / our Image.read on zarr 3),
``sequential`` (``ZarrDataset(shuffle=False)`` against ``PatchDataset.epoch(0)``,
plus whether the (top-left, content digest) of every delivered patch agrees;
and in batches of 32: the reference's patches stacked with ``numpy.stack``, as
a training loop's collate does, against ``epoch(0).batches(32)``),
``shuffled`` (``ZarrDataset(shuffle=True)`` against ours with
``draw_same_chunk=True`` and with the default 8-chunk window). Then one
summary line (planning table and the reading table).
Scratch files go to a temporary directory; nothing is written in the repo.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # write nothing inside the repository
sys.path.insert(0, str(Path(__file__).parent))
from reference_runner import (  # noqa: E402
    AXES, CASES, READ_BATCH, READ_CHUNKS, READ_PATCH, READ_PATCHES, READ_SHAPE, Case, StagePeak,
    _pattern_stats, patch_digest,
)
from workloads import best_of, emit  # noqa: E402

RUNNER = Path(__file__).with_name("reference_runner.py")
EXAMPLES = 5


# -- our side (one case per subprocess) -------------------------------------------


def _our_collection(image_shape, chunks, mask):
    import zarr
    from zarr.storage import MemoryStore

    from zarrsample_core import ImageCollection, open_image

    # Metadata only: no chunk is ever written or read for the image.
    array = zarr.create_array(store=MemoryStore(), shape=image_shape, chunks=chunks, dtype="uint8")
    return ImageCollection({"images": open_image(array, axes="CYX"), "masks": open_image(mask, axes=AXES)},
                           spatial_axes=AXES)


def _our_sampler(kind: str, patch: int, *, stride=None, min_area=0.5):
    if kind == "grid":
        from zarrsample_core import PatchSampler

        return PatchSampler(patch, stride=stride, min_area=min_area, spatial_axes=AXES)
    from zarrsample_core import BlueNoisePatchSampler

    return BlueNoisePatchSampler(patch, stride=stride, min_area=min_area, spatial_axes=AXES, seed=0)


def _our_patches(sampler, collection) -> tuple[int, np.ndarray]:
    """Chunk count and top-lefts ``(n, 2)`` from compute_chunks + compute_patches."""
    chunks = sampler.compute_chunks(collection)
    starts = [[p[a].start + sampler.pad[a] for a in AXES]
              for chunk in chunks for p in sampler.compute_patches(collection, chunk)]
    return len(chunks), np.asarray(starts, dtype=np.int64).reshape(-1, 2)


def run_ours(name: str, toplefts_path: str) -> None:
    case = CASES[name]
    collection = _our_collection(case.image_shape, case.chunks, case.mask())
    make = lambda: _our_sampler(case.sampler, case.patch, stride=case.stride, min_area=case.min_area)  # noqa: E731
    try:
        make()
    except ImportError as exc:
        emit(case=name, error=f"ImportError: {exc}")
        return
    rss = StagePeak()
    t0 = time.perf_counter()
    make().plan(collection)
    first = time.perf_counter() - t0
    plan_s, plan = best_of(lambda: make().plan(collection), repeat=3)
    t0 = time.perf_counter()
    chunks, toplefts = _our_patches(make(), collection)
    compute_s = time.perf_counter() - t0
    np.save(toplefts_path, toplefts)
    emit(case=name, chunks=chunks, patches=len(toplefts), plan_seconds=round(plan_s, 4),
         plan_first_seconds=round(first, 4), compute_seconds=round(compute_s, 4),
         plan_equals_patches=bool(np.array_equal(np.asarray(plan.toplefts), toplefts)),
         **rss.fields())


# -- reading throughput: our side (one run per subprocess) ----------------------------

#: Our reading runs: ``PatchDataset`` keyword arguments (None: the read limit,
#: every chunk once through ``Image.read``, then through the bare zarr 3 array).
OUR_READS = {
    "read-limit": None,
    "sequential": {},
    "sequential-batches": {},  # the same epoch through ``batches(BATCH)``
    "chunk-shuffle": {"shuffle": True, "draw_same_chunk": True},
    "window-shuffle": {"shuffle": True},
}
#: Batch size of the batched case (what a training loop would ask for).
BATCH = READ_BATCH


def _chunk_windows():
    _, ys, xs = READ_SHAPE
    _, cy, cx = READ_CHUNKS
    return [(slice(None), slice(y, y + cy), slice(x, x + cx)) for y in range(0, ys, cy) for x in range(0, xs, cx)]


def run_ours_read(name: str, path: str, hashes_path: str | None) -> None:
    """Our side of one reading run (see ``reference_runner.run_read``)."""
    from importlib.metadata import version

    import zarr

    from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image

    kwargs = OUR_READS[name]
    fields = dict(case=name, library=f"zarrsample {version('zarrsample')}", zarr=zarr.__version__,
                  numpy=np.__version__, kwargs=kwargs)
    rss = StagePeak()
    t0 = time.perf_counter()
    image = open_image(path, axes="CYX")
    coll = ImageCollection({"images": image}, spatial_axes=AXES)
    stats: dict = {}
    if kwargs is None:
        nbytes = sum(image.read(w).nbytes for w in _chunk_windows())
        patches, chunk_reads = READ_PATCHES, len(_chunk_windows())  # one read per chunk region
    else:
        ds = PatchDataset(coll, PatchSampler(READ_PATCH, spatial_axes=AXES), **kwargs)
        patches = nbytes = 0
        epoch = ds.epoch(0)
        for sample in epoch.batches(BATCH) if name.endswith("-batches") else epoch:
            patches += len(sample["images"]) if name.endswith("-batches") else 1
            nbytes += sample["images"].nbytes
        stats = ds.stats()
        chunk_reads = stats.get("chunk_reads")
    seconds = time.perf_counter() - t0
    fields.update(seconds=round(seconds, 4), patches=patches, patches_per_s=round(patches / seconds, 1),
                  mb_per_s=round(nbytes / seconds / 2**20, 1), chunk_reads=chunk_reads,
                  cache_hits=stats.get("cache_hits"), cached_bytes_at_end=stats.get("cached_bytes"),
                  **rss.fields())
    if kwargs is None:
        # The bare zarr 3 array, same chunk windows (after the RSS was read).
        t0 = time.perf_counter()
        array = zarr.open_array(path, mode="r")
        for w in _chunk_windows():
            array[w]
        fields["zarr_array_patches_per_s"] = round(READ_PATCHES / (time.perf_counter() - t0), 1)
    if hashes_path and kwargs is not None and not name.endswith("-batches"):
        ds = PatchDataset(coll, PatchSampler(READ_PATCH, spatial_axes=AXES), return_positions=True, **kwargs)
        toplefts, digests = [], []
        for sample in ds.epoch(0):
            toplefts.append(sample["position"][:, 0])  # (D, 2) [start, stop] along "YX"
            digests.append(patch_digest(sample["images"]))
        np.savez(hashes_path, toplefts=np.asarray(toplefts, np.int64).reshape(-1, 2),
                 digests=np.asarray(digests, np.int64), shape=np.asarray(sample["images"].shape, np.int64))
    emit(**fields)


# -- naive exact oracle ---------------------------------------------------------------


def exact_coverage(mask: np.ndarray, divisor: int, toplefts: np.ndarray, patch: int) -> np.ndarray:
    """Image pixels of each window ``[tl, tl + patch)^2`` that the mask covers.

    Mask pixel ``(i, j)`` covers image pixels ``[i d, (i + 1) d) x [j d, (j + 1) d)``;
    per window, a weight per mask row and column (its overlap with the window)
    and one small product. Deliberately naive: independent of both libraries.
    """
    toplefts = np.asarray(toplefts, dtype=np.int64).reshape(-1, 2)
    out = np.zeros(len(toplefts), dtype=np.int64)
    k = np.arange(patch // divisor + 2)
    for b in range(0, len(toplefts), 4096):
        t = toplefts[b : b + 4096]
        weights, index = [], []
        for ax in range(2):
            a = t[:, ax : ax + 1]
            i = a // divisor + k
            w = np.minimum((i + 1) * divisor, a + patch) - np.maximum(i * divisor, a)
            inside = (i >= 0) & (i < mask.shape[ax])
            weights.append(np.where(inside, np.clip(w, 0, None), 0))
            index.append(np.clip(i, 0, mask.shape[ax] - 1))
        m = mask[index[0][:, :, None], index[1][:, None, :]].astype(np.int64)
        out[b : b + len(t)] = np.einsum("ni,nij,nj->n", weights[0], m, weights[1])
    return out


def _keys(toplefts: np.ndarray) -> np.ndarray:
    t = np.asarray(toplefts, dtype=np.int64).reshape(-1, 2)
    return (t[:, 0] << 32) + t[:, 1]


def _rows(keys: np.ndarray) -> np.ndarray:
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=-1)


def _threshold(case: Case) -> int:
    return int(np.ceil(case.min_area * case.patch**2)) if case.min_area < 1 else int(np.ceil(case.min_area))


def _examples(mask, case, rows) -> list:
    rows = rows[:EXAMPLES]
    cover = exact_coverage(mask, case.mask_divisor, rows, case.patch)
    return [{"topleft": r, "exact_coverage_px": int(c)} for r, c in zip(rows.tolist(), cover.tolist())]


def grid_agreement(case: Case, mask: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> dict:
    """Patch sets of both libraries and of the exact oracle (every grid top-left)."""
    stride = case.stride or case.patch
    starts = np.arange(0, case.size - case.patch + 1, stride)
    grid = np.stack(np.meshgrid(starts, starts, indexing="ij"), -1).reshape(-1, 2)
    exact = grid[exact_coverage(mask, case.mask_divisor, grid, case.patch) >= _threshold(case)]
    k_ours, k_ref, k_exact = (np.unique(_keys(t)) for t in (ours, ref, exact))
    only_ours = _rows(np.setdiff1d(k_ours, k_ref))
    only_ref = _rows(np.setdiff1d(k_ref, k_ours))
    thr = _threshold(case)
    cov_ours = exact_coverage(mask, case.mask_divisor, only_ours, case.patch)
    cov_ref = exact_coverage(mask, case.mask_divisor, only_ref, case.patch)
    outside = np.any(only_ref + case.patch > case.size, axis=1)
    return dict(
        equal=bool(len(only_ours) == len(only_ref) == 0),
        reference_patches=len(ref), reference_unique=len(k_ref), ours_patches=len(ours),
        common=len(np.intersect1d(k_ours, k_ref)), only_ours=len(only_ours), only_reference=len(only_ref),
        exact_patches=len(k_exact),
        ours_equals_exact=bool(np.array_equal(k_ours, k_exact)) and len(k_ours) == len(ours),
        reference_equals_exact=bool(np.array_equal(k_ref, k_exact)),
        only_ours_at_threshold=int((cov_ours == thr).sum()),
        only_ours_above_threshold=int((cov_ours > thr).sum()),
        only_reference_outside_image=int(outside.sum()),
        only_reference_below_threshold=int((~outside & (cov_ref < thr)).sum()),
        only_reference_passing=int((~outside & (cov_ref >= thr)).sum()),
        threshold_px=thr,
        examples_only_ours=_examples(mask, case, only_ours),
        examples_only_reference=_examples(mask, case, only_ref),
    )


def overlapping_pairs(toplefts: np.ndarray, patch: int) -> int:
    """Pairs of ``patch``-sided windows that share a pixel (blocks of rows)."""
    t = np.asarray(toplefts, dtype=np.int64).reshape(-1, 2)
    pairs = 0
    for b in range(0, len(t), 1024):
        d = np.abs(t[b : b + 1024, None, :] - t[None, :, :])
        hit = np.all(d < patch, axis=-1)
        pairs += int(hit.sum()) - min(1024, len(t) - b)  # drop self pairs
    return pairs // 2


def bluenoise_agreement(case: Case, mask: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> dict:
    """Positions are random: compare counts, overlaps and the min_area test."""
    thr = _threshold(case)
    out = {}
    for side, t in (("reference", ref), ("ours", ours)):
        cover = exact_coverage(mask, case.mask_divisor, t, case.patch)
        out[side] = dict(
            patches=len(t), overlapping_pairs=overlapping_pairs(t, case.patch),
            min_distance=_pattern_stats(t, case.patch)["min_distance"] if len(t) > 1 else None,
            fraction_min_area=round(float((cover >= thr).mean()), 4) if len(t) else None,
            outside_image=int(np.any(t + case.patch > case.size, axis=1).sum()),
            examples=[{"topleft": r, "exact_coverage_px": int(c)}
                      for r, c in zip(t[:EXAMPLES].tolist(), cover[:EXAMPLES].tolist())],
        )
    out["threshold_px"] = thr
    return out


# -- probes: the same small examples through our side -------------------------------


def our_probes() -> dict:
    out: dict = {}
    half = np.zeros((16, 16), bool)
    half[:8] = True
    coll = _our_collection((3, 256, 256), (3, 256, 256), half)
    plan = _our_sampler("grid", 256).plan(coll)
    out["half_covered"] = dict(patches=len(plan), coverage_px=plan.coverage.tolist())
    coll = _our_collection((3, 512, 512), (3, 512, 512), np.ones((32, 32), bool))
    stride = {}
    for area in (0.5, 0.2):
        _, t = _our_patches(_our_sampler("grid", 256, stride=128, min_area=area), coll)
        stride[f"min_area_{area}"] = dict(patches=len(t), outside_image=int(np.any(t + 256 > 512, axis=1).sum()))
    out["stride_cell"] = stride
    try:
        coll = _our_collection((3, 1024, 1024), (3, 1024, 1024), np.ones((64, 64), bool))
        _, t = _our_patches(_our_sampler("bluenoise", 256), coll)
        out["bluenoise_pattern"] = _pattern_stats(t, 256)
        coll = _our_collection((3, 4096, 4096), (3, 1024, 1024), np.ones((256, 256), bool))
        _, t = _our_patches(_our_sampler("bluenoise", 256), coll)
        counts = np.zeros((4, 4), np.int64)
        np.add.at(counts, tuple((t // 1024).T), 1)
        out["bluenoise_offset"] = dict(per_tile=counts.tolist())
        single = np.zeros((64, 64), bool)
        single[0, 0] = True
        _, t = _our_patches(_our_sampler("bluenoise", 256), _our_collection((3, 1024, 1024), (3, 1024, 1024), single))
        out["bluenoise_min_area"] = dict(patches=len(t))
    except ImportError as exc:
        out["bluenoise_error"] = f"ImportError: {exc}"
    return out


# -- explanations: each tied to a probe result or a measured count -----------------------


def explain_grid(case: Case, agree: dict, ref: dict, ours: dict, probes: dict) -> list[str]:
    why = []
    rp, op = probes["reference"], probes["ours"]
    half, stride = rp["half_covered"], rp["stride_cell"]
    strided = bool(case.stride and case.stride < case.patch)
    if agree["only_ours_at_threshold"] and not strided:
        ok = half["reference_coverage_px"] < half["exact_coverage_px"] and op["half_covered"]["patches"] == 1
        why.append(
            f"{'confirmed' if ok else 'NOT confirmed'} float32 + 1e-4 fudge + rounding: "
            f"{agree['only_ours_at_threshold']} patch(es) only in ours have exact coverage exactly min_area "
            f"({agree['threshold_px']} of {case.patch ** 2} px). The reference shrinks every mask pixel's "
            f"footprint by (1 - 1e-4) in float32 and rounds the sum: for a 256^2 image whose 16x16 mask covers "
            f"exactly the top half it computes {half['reference_coverage_px']} px instead of "
            f"{half['exact_coverage_px']} and returns {half['patches']} patch(es) at min_area=0.5 "
            f"(ours {op['half_covered']['patches']}, coverage {op['half_covered']['coverage_px']}); "
            f"so it drops every patch that sits exactly at min_area.")
    if agree["only_ours_above_threshold"] or (strided and agree["only_ours"]):
        if strided:
            ok = stride["reference_coverage_px"] <= case.stride**2 and stride["patches_min_area_0_5"] == 0
            why.append(
                f"{'confirmed' if ok else 'NOT confirmed'} stride < patch measures the stride cell: "
                f"all {agree['only_ours']} patch(es) only in ours pass min_area ({agree['only_ours_at_threshold']} "
                f"exactly at it, the rest above). "
                f"The reference sizes its coverage windows by the stride, not the patch: on a fully covered 512^2 "
                f"image (patch 256, stride 128) it computes {stride['reference_coverage_px']} px for the top-left "
                f"patch (a 128^2 stride cell shrunk by the fudge; the 256^2 window has 65536 px), so min_area=0.5 "
                f"({agree['threshold_px']} px) can never pass: {stride['patches_min_area_0_5']} patches there "
                f"(ours {op['stride_cell']['min_area_0.5']['patches']}). At min_area=0.2 it returns "
                f"{stride['patches_min_area_0_2']} patches, {stride['outside_image_min_area_0_2']} of them "
                f"sticking out of the 512-pixel image (top-left 384 + 256 = 640); ours returns "
                f"{op['stride_cell']['min_area_0.2']['patches']}, "
                f"{op['stride_cell']['min_area_0.2']['outside_image']} outside.")
        else:
            why.append(f"UNEXPLAINED: {agree['only_ours_above_threshold']} patch(es) only in ours pass min_area "
                       f"by more than the threshold, e.g. {agree['examples_only_ours']}")
    if agree["only_reference_outside_image"]:
        why.append(f"{agree['only_reference_outside_image']} patch(es) only in the reference stick out of the "
                   f"image: it places floor(chunk extent / stride) top-lefts per chunk, ignoring the patch size.")
    if agree["only_reference_below_threshold"]:
        why.append(f"{agree['only_reference_below_threshold']} patch(es) only in the reference have exact "
                   f"coverage below min_area, e.g. {agree['examples_only_reference']}")
    if agree["only_reference_passing"]:
        why.append(f"OURS MISSES {agree['only_reference_passing']} patch(es) that pass min_area exactly: "
                   f"{agree['examples_only_reference']}")
    if ref.get("empty_chunks"):
        why.append(
            f"measured compute_chunks difference (no effect on the patch set): the reference keeps every chunk tile the mask "
            f"touches (rounded coverage >= 1 px), {ref['empty_chunks']} of its {ref['chunks']} tiles then give "
            f"no patch; ours returns only the {ours['chunks']} tiles that hold a samplable patch.")
    if agree["reference_unique"] != agree["reference_patches"]:
        why.append(f"the reference returns {agree['reference_patches'] - agree['reference_unique']} duplicate patches")
    return why


def explain_bluenoise(case: Case, agree: dict, probes: dict) -> list[str]:
    rp, op = probes["reference"], probes["ours"]
    pat = rp["bluenoise_pattern"]
    no, yes = pat["allow_overlap_False"], pat["allow_overlap_True"]
    offset, single = rp["bluenoise_offset"], rp["bluenoise_min_area"]
    why = []
    ok = no["seed_0"]["overlapping_pairs"] > 0 and no["min_distance_all_seeds"] >= case.patch
    ours_pat = op.get("bluenoise_pattern", {})
    why.append(
        f"{'confirmed' if ok else 'NOT confirmed'} radius sqrt(2) too small: without allow_overlap the "
        f"reference draws its Poisson-disk pattern with radius = patch side ({case.patch}); two {case.patch}^2 "
        f"windows are disjoint only when |dy| or |dx| >= {case.patch}, which needs radius {case.patch}*sqrt(2) "
        f"~ {case.patch * 2 ** 0.5:.0f}. Its seed-0 pattern for a 1024^2 tile has {no['seed_0']['overlapping_pairs']} "
        f"overlapping pairs (e.g. {no['seed_0']['example']}), {no['seeds_with_overlap']} of {no['seeds']} seeds "
        f"overlap; with allow_overlap=True it uses the larger radius (min distance {yes['min_distance_all_seeds']}, "
        f"{yes['seeds_with_overlap']} seeds overlap): the two settings are swapped. Ours on the same tile: "
        f"{ours_pat.get('overlapping_pairs')} overlapping pairs, min distance {ours_pat.get('min_distance')}; "
        f"in this case {agree['reference']['overlapping_pairs']} (reference) vs {agree['ours']['overlapping_pairs']} "
        f"(ours) overlapping pairs.")
    tiles16, tiles4 = offset["mask_1/16"]["per_tile"], offset["mask_1/4"]["per_tile"]
    ok = tiles16 == tiles4 and sum(map(sum, tiles16)) < offset["mask_1/16"]["pattern_points"] * 16
    why.append(
        f"{'confirmed' if ok else 'NOT confirmed'} chunk offset, not mask scale: the reference compares "
        f"chunk-relative pattern positions with absolute mask coordinates (its blue-noise _compute_valid_toplefts "
        f"never subtracts the chunk's top-left, unlike _compute_grid), so only tiles near the image origin get "
        f"patches. A fully covered 4096^2 image (4x4 tiles of 1024, {offset['mask_1/16']['pattern_points']}-point "
        f"pattern) gets per-tile counts {tiles16} with a 1/16 mask and {tiles4} with a 1/4 mask (ours "
        f"{op.get('bluenoise_offset', {}).get('per_tile')}). With the tissue mask, whose ellipses are centred in "
        f"the middle 60% of the image, that leaves {agree['reference']['patches']} patch(es) at {case.size}^2 "
        f"(ours {agree['ours']['patches']}); a mask with no tissue near the origin gets zero.")
    ok = single["patches"] > 0
    why.append(
        f"{'confirmed' if ok else 'NOT confirmed'} no min_area test: a position is kept when any mask-pixel "
        f"corner lies above-left of position + 1.5 patch (a one-sided 'dist < patch', no abs, min_area unused). "
        f"A 1024^2 image whose 64x64 mask has only pixel (0, 0) set (256 px) gets {single['patches']} patches "
        f"(ours {op.get('bluenoise_min_area', {}).get('patches')}); in this case "
        f"{agree['reference']['fraction_min_area']} of the reference's patches and "
        f"{agree['ours']['fraction_min_area']} of ours cover >= min_area exactly.")
    return why


def memory_why(case: Case, mask: np.ndarray, ref: dict) -> list[str]:
    """Ties the reference's MemoryError to the matrix its source builds."""
    corners = 4 * int(mask.sum())
    lines = case.size // case.chunk + 2  # -inf, one per chunk row, the end
    shape = re.search(r"shape \((\d+), (\d+)\)", ref.get("message", ""))
    ok = shape is not None and (int(shape[1]), int(shape[2])) == (corners, lines)
    return [
        f"{'confirmed' if ok else 'NOT confirmed'} MemoryError at {case.size}^2: the reference failed in "
        f"{ref['stage']} after {ref['seconds_until_error']} s (peak RSS {ref['peak_rss_mb']} MB, "
        f"address-space cap {ref['memory_limit_mb']} MB, set by compare.py to protect the machine): "
        f"'{ref['message']}'. Its _compute_overlap compares every corner of every set mask pixel "
        f"({corners} = 4 x {corners // 4}) with every chunk-grid line ({lines}) as one int64 matrix, "
        f"{corners * lines * 8 / 2**30:.1f} GiB per axis, and would then run a Python list.index per corner."
    ]


# -- orchestration ------------------------------------------------------------------------


def _run_json(cmd: list[str], timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "timeout_seconds": timeout, "seconds": round(time.perf_counter() - t0, 1)}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}", "stderr": proc.stderr[-2000:]}
    return json.loads(lines[-1])


def compare_case(name: str, args, probes: dict) -> dict:
    case = CASES[name]
    with tempfile.TemporaryDirectory(prefix="zarrsample-compare-") as tmp:
        ours_path, ref_path = f"{tmp}/ours.npy", f"{tmp}/reference.npy"
        ours = _run_json([sys.executable, "-B", __file__, "--ours", name, "--toplefts", ours_path], args.timeout)
        ref = _run_json([args.reference_python, "-B", str(RUNNER), "--case", name, "--toplefts", ref_path,
                         "--memory-limit-mb", str(args.reference_memory_limit_mb)], args.timeout)
        ours_t = np.load(ours_path) if "error" not in ours else None
        ref_t = np.load(ref_path) if "error" not in ref else None
    ref.pop("toplefts", None)
    for side in (ref, ours):
        side.pop("case", None)
        if side.get("stage_peak_rss_mb") is not None and side.get("rss_at_start_mb") is not None:
            side["stage_rss_growth_mb"] = round(side["stage_peak_rss_mb"] - side["rss_at_start_mb"], 1)
    mask = case.mask()
    line = dict(case=name, image_shape=list(case.image_shape), chunks=list(case.chunks),
                mask_shape=list(case.mask_shape), mask_fraction=round(float(mask.mean()), 4),
                sampler=case.sampler, patch=case.patch, stride=case.stride or case.patch,
                min_area=case.min_area, reference=ref, ours=ours)
    if "seconds" in ref and "compute_seconds" in ours:
        line["speedup"] = round(ref["seconds"] / max(ours["compute_seconds"], 1e-9), 1)
        line["speedup_plan"] = round(ref["seconds"] / max(ours["plan_seconds"], 1e-9), 1)
    if "peak_rss_mb" in ref and "peak_rss_mb" in ours:
        line["peak_rss_ratio"] = round(ref["peak_rss_mb"] / ours["peak_rss_mb"], 2)
    if ref.get("stage_rss_growth_mb") is not None and ours.get("stage_rss_growth_mb") is not None:
        line["stage_rss_growth_ratio"] = round(ref["stage_rss_growth_mb"] / max(ours["stage_rss_growth_mb"], 0.1), 1)
    if ours_t is None or ref_t is None:
        line["agreement"] = None
        line["why"] = memory_why(case, mask, ref) if ref.get("error") == "MemoryError" else [
            f"no comparison: reference {ref.get('error', 'ok')}, ours {ours.get('error', 'ok')}"]
        if ours_t is not None and case.sampler == "grid":
            agree = grid_agreement(case, mask, ours_t, np.zeros((0, 2), np.int64))
            line["ours_equals_exact"] = agree["ours_equals_exact"]
    elif case.sampler == "grid":
        line["agreement"] = agree = grid_agreement(case, mask, ours_t, ref_t)
        line["why"] = explain_grid(case, agree, ref, ours, probes)
    else:
        line["agreement"] = agree = bluenoise_agreement(case, mask, ours_t, ref_t)
        line["why"] = explain_bluenoise(case, agree, probes)
    return line


# -- reading throughput: orchestration ----------------------------------------------------

READ_ROUNDS = 5
#: Interleaved order of one round (reversed every other round): each library's
#: run of a case next to the other's, so a change in machine load hits both.
READ_ORDER = (
    ("reference", "read-limit"), ("ours", "read-limit"),
    ("reference", "sequential"), ("ours", "sequential"),
    ("reference", "sequential-batches"), ("ours", "sequential-batches"),
    ("reference", "shuffled"), ("ours", "chunk-shuffle"), ("ours", "window-shuffle"),
    ("reference", "shuffled-same-chunk"),
)


def content_agreement(ref: dict, ours: dict) -> dict:
    """Delivered patches of two epochs: counts, the (top-left, digest) sets, order.

    A digest (``reference_runner.patch_digest``) covers shape, dtype and bytes.
    """
    def keyed(d):
        return dict(zip(map(tuple, d["toplefts"].tolist()), d["digests"].tolist()))

    a, b = keyed(ref), keyed(ours)
    common = a.keys() & b.keys()
    differ = sorted(k for k in common if a[k] != b[k])
    only_ref, only_ours = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    return dict(
        reference_patch_shape=ref["shape"].tolist(), ours_patch_shape=ours["shape"].tolist(),
        reference_patches=len(ref["toplefts"]), ours_patches=len(ours["toplefts"]),
        count_equal=len(ref["toplefts"]) == len(ours["toplefts"]),
        reference_unique_positions=len(a), ours_unique_positions=len(b),
        positions_equal=not only_ref and not only_ours,
        content_equal=not only_ref and not only_ours and not differ
        and len(a) == len(ref["toplefts"]) and len(b) == len(ours["toplefts"]),
        common_positions=len(common), same_bytes=len(common) - len(differ), different_bytes=len(differ),
        only_reference=len(only_ref), only_ours=len(only_ours),
        order_equal=bool(np.array_equal(ref["toplefts"], ours["toplefts"])),
        examples=dict(different_bytes=differ[:EXAMPLES], only_reference=only_ref[:EXAMPLES],
                      only_ours=only_ours[:EXAMPLES]),
    )


def _read_command(side: str, name: str, path: str, hashes: str | None, args) -> list[str]:
    if side == "reference":
        cmd = [args.reference_python, "-B", str(RUNNER), "--read", name, "--path", path]
    else:
        cmd = [sys.executable, "-B", __file__, "--ours-read", name, "--path", path]
    return cmd + (["--hashes", hashes] if hashes else [])


def _merge_best(old: dict | None, new: dict) -> dict:
    """Best (fastest) run's fields; peak RSS the maximum over the runs."""
    if "error" in new or old is None or "error" in old:
        return new if old is None or "error" in old else old
    best = dict(old if old["seconds"] <= new["seconds"] else new)
    for key in ("peak_rss_mb", "stage_peak_rss_mb"):
        if old.get(key) is not None and new.get(key) is not None:
            best[key] = max(old[key], new[key])
    best["runs_patches_per_s"] = old["runs_patches_per_s"] + [new["patches_per_s"]]
    return best


def reading_comparison(args) -> list[dict]:
    """Patches/s, chunk reads and peak RSS of reading epochs through both
    libraries: one JSON line per case (read-limit, sequential, shuffled)."""
    t_start = time.perf_counter()
    best: dict[tuple[str, str], dict] = {}
    hashes: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="zarrsample-compare-read-") as tmp:
        path = str(Path(tmp, "smooth-v2.zarr"))  # zarrdataset opens a path as zarr only if it holds ".zarr"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-B", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import workloads;"
             " workloads.write_smooth_image(sys.argv[2], 2)", str(Path(__file__).parent), path],
            check=True,
        )
        write_seconds = time.perf_counter() - t0
        for r in range(READ_ROUNDS):
            for side, name in READ_ORDER if r % 2 == 0 else READ_ORDER[::-1]:
                out = None
                if r == 0 and name not in ("read-limit", "shuffled", "sequential-batches"):  # shuffled: ~3 s more
                    out = f"{tmp}/{side}-{name}.npz"
                fields = _run_json(_read_command(side, name, path, out, args), min(args.timeout, 600))
                fields.pop("case", None)
                if "error" not in fields:
                    fields["runs_patches_per_s"] = [fields["patches_per_s"]]
                    if out:
                        with np.load(out) as f:
                            hashes[side, name] = {k: f[k] for k in f.files}
                best[side, name] = _merge_best(best.get((side, name)), fields)
    image = dict(image_shape=list(READ_SHAPE), chunks=list(READ_CHUNKS), zarr_format=2, codec="zstd level 3",
                 content="workloads.write_smooth_image", patch=READ_PATCH, mask=None, rounds=READ_ROUNDS,
                 timing="best of the rounds; each run in its own subprocess, open + construct + full epoch")

    def side(key: tuple[str, str], limit: tuple[str, str] | None = None) -> dict:
        fields = dict(best[key])
        lim = best.get(limit) if limit else None
        if lim and "patches_per_s" in fields and "patches_per_s" in lim:
            fields["ratio_to_read_limit"] = round(fields["patches_per_s"] / lim["patches_per_s"], 3)
        return fields

    def ratio(a: dict, b: dict) -> float | None:
        if "patches_per_s" in a and "patches_per_s" in b:
            return round(a["patches_per_s"] / b["patches_per_s"], 3)
        return None

    ref_lim, our_lim = ("reference", "read-limit"), ("ours", "read-limit")
    lines = []
    lim_r, lim_o = side(ref_lim), side(our_lim)
    lines.append(dict(
        reading="read-limit", **image, reference=lim_r, ours=lim_o, ratio_ours_to_reference=ratio(lim_o, lim_r),
        note="every chunk region read once: zarr 2 array slicing (reference); our Image.read on zarr 3 "
             "(ours; zarr_array_patches_per_s: the bare zarr 3 array, same windows)",
        write_seconds=round(write_seconds, 2),
    ))
    seq_r, seq_o = side(("reference", "sequential"), ref_lim), side(("ours", "sequential"), our_lim)
    agree = None
    if ("reference", "sequential") in hashes and ("ours", "sequential") in hashes:
        agree = content_agreement(hashes["reference", "sequential"], hashes["ours", "sequential"])
    batch_o = side(("ours", "sequential-batches"), our_lim)
    batch_r = side(("reference", "sequential-batches"), ref_lim)
    lines.append(dict(
        reading="sequential", **image, reference=seq_r, ours=seq_o, ratio_ours_to_reference=ratio(seq_o, seq_r),
        reference_batches=batch_r, ours_batches=batch_o, batch_size=BATCH,
        ratio_ours_batches_to_reference=ratio(batch_o, seq_r),
        ratio_ours_batches_to_reference_batches=ratio(batch_o, batch_r),
        agreement=agree,
        note="reference: views of its cached chunk, no copy; reference_batches: the same patches stacked by "
             f"{BATCH} (numpy.stack, what a training loop's collate does); ours_batches: epoch.batches({BATCH}), "
             "each patch copied once into its slot",
    ))
    shuf_r = side(("reference", "shuffled"), ref_lim)
    same_r = side(("reference", "shuffled-same-chunk"), ref_lim)
    chunk_o, window_o = side(("ours", "chunk-shuffle"), our_lim), side(("ours", "window-shuffle"), our_lim)
    shuffled_agreement = {}
    if ("reference", "sequential") in hashes:
        for key in (("reference", "shuffled-same-chunk"), ("ours", "chunk-shuffle"), ("ours", "window-shuffle")):
            if key in hashes:
                a = content_agreement(hashes["reference", "sequential"], hashes[key])
                shuffled_agreement[f"{key[0]}_{key[1]}_vs_reference_sequential"] = {
                    k: a[k] for k in ("count_equal", "positions_equal", "content_equal", "different_bytes",
                                      "order_equal")}
    lines.append(dict(
        reading="shuffled", **image, reference=shuf_r, ours_chunk_shuffle=chunk_o, ours_window_shuffle=window_o,
        reference_draw_same_chunk=same_r,
        ratio_chunk_shuffle_to_reference=ratio(chunk_o, shuf_r),
        ratio_window_shuffle_to_reference=ratio(window_o, shuf_r),
        ratio_chunk_shuffle_to_reference_draw_same_chunk=ratio(chunk_o, same_r),
        agreement_as_sets=shuffled_agreement,
        note="reference shuffle=True draws a random chunk for every patch and caches one chunk; "
             "reference_draw_same_chunk is its shuffle=True, draw_same_chunk=True (extra, for comparison)",
    ))
    for line in lines:
        line["reading_wall_seconds"] = round(time.perf_counter() - t_start, 1)
    return lines


def reading_summary(lines: list[dict]) -> list[dict]:
    table = []
    for line in lines:
        sides = {k: v for k, v in line.items() if k.startswith(("reference", "ours")) and isinstance(v, dict)}
        table.append(dict(case=line["reading"], **{
            k: dict(patches_per_s=v.get("patches_per_s"), ratio_to_read_limit=v.get("ratio_to_read_limit"),
                    chunk_reads=v.get("chunk_reads"), peak_rss_mb=v.get("peak_rss_mb"), error=v.get("error"))
            for k, v in sides.items()}, **{k: v for k, v in line.items() if k.startswith("ratio_")}))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", help="python of the venv with zarrdataset 0.2.2 (.venv-ref)")
    parser.add_argument("--full", action="store_true", help="also the 32768^2 and 65536^2 cases (minutes)")
    parser.add_argument("--case", choices=sorted(CASES), help="run only this case")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--reference-memory-limit-mb", type=int, default=8192,
                        help="address-space cap of the reference subprocess (0 = none)")
    parser.add_argument("--no-reading", action="store_true", help="skip the reading-throughput comparison")
    parser.add_argument("--reading-only", action="store_true", help="only the reading-throughput comparison")
    parser.add_argument("--ours", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--toplefts", help=argparse.SUPPRESS)
    parser.add_argument("--ours-read", choices=sorted(OUR_READS), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--hashes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        run_ours(args.ours, args.toplefts)
        return
    if args.ours_read:
        run_ours_read(args.ours_read, args.path, args.hashes)
        return
    if not args.reference_python:
        parser.error("--reference-python is required (make bench-compare builds .venv-ref)")
    if not Path(args.reference_python).is_file():
        parser.error(f"--reference-python {args.reference_python!r} does not exist (run make bench-compare)")
    if args.reading_only:
        for line in reading_comparison(args):
            emit(**line)
        return
    names = [args.case] if args.case else [n for n, c in CASES.items() if args.full or not c.full]
    probes = {"reference": _run_json([args.reference_python, "-B", str(RUNNER), "--probes"], args.timeout)
              .get("probes"), "ours": our_probes()}
    lines = []
    for name in names:
        lines.append(compare_case(name, args, probes))
        emit(**lines[-1])
    reading = []
    if not args.no_reading and not args.case:
        reading = reading_comparison(args)
        for line in reading:
            emit(**line)
    emit(**summary(lines, probes), reading=reading_summary(reading))


def summary(lines: list[dict], probes: dict) -> dict:
    """One line: the speed table, the agreement flags, each explanation's label."""
    table = []
    for line in lines:
        ref, ours, agree = line["reference"], line["ours"], line.get("agreement") or {}
        table.append(dict(
            case=line["case"], reference_seconds=ref.get("seconds"), reference_error=ref.get("error"),
            ours_compute_seconds=ours.get("compute_seconds"), ours_plan_seconds=ours.get("plan_seconds"),
            speedup=line.get("speedup"), speedup_plan=line.get("speedup_plan"),
            reference_peak_rss_mb=ref.get("peak_rss_mb"), ours_peak_rss_mb=ours.get("peak_rss_mb"),
            reference_stage_rss_growth_mb=ref.get("stage_rss_growth_mb"),
            ours_stage_rss_growth_mb=ours.get("stage_rss_growth_mb"),
            patch_sets_equal=agree.get("equal"), reference_patches=ref.get("patches"),
            ours_patches=ours.get("patches"),
            ours_equals_exact=agree.get("ours_equals_exact", line.get("ours_equals_exact")),
        ))
    labels = {}
    for line in lines:
        for text in line.get("why", []):
            labels.setdefault(text.split(":")[0], line["case"])
    return dict(summary=True, cases=table, explanations=[f"{k} (see {v})" for k, v in labels.items()],
                probes=probes)


if __name__ == "__main__":
    main()
