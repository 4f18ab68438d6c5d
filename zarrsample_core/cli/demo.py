"""The zarrsample demo: ``zarrsample demo`` (or ``python -m zarrsample_core demo``).

On generated data, end to end: writes a synthetic whole-slide image as an
OME-Zarr v0.5 (zarr v3) pyramid with a ``labels`` image, computes its tissue
mask, plans patches with both samplers, runs one epoch through the PyTorch
adapter (a DataLoader with two workers; the core's own iterator when torch
is missing) alone, then again stitching the output of an identity model back
into a zarr array (the loader's and the stitching's rates are reported
apart), checks it against the slide, and writes a preview PNG.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .._checks import check_int
from .._errors import ZarrsampleError
from .._progress import progress
from ..epochs._dataset import PatchDataset
from ..inference._tissue import tissue_mask
from ..planning._bluenoise_sampler import BlueNoisePatchSampler
from ..planning._plan import PatchPlan
from ..planning._sampler import PatchSampler
from ..sources._collection import ImageCollection
from ..sources._image import Image
from ..sources._io import open_image

__all__ = ["load_epoch", "run_demo", "stitch_epoch", "write_synthetic_slide"]

#: Pyramid levels of the synthetic slide (each half the size of the previous).
LEVELS = 3
#: Storage chunk side of every level.
CHUNK = 512
PATCH, STRIDE, BATCH = 256, 224, 16


def _blobs(low: int, rng: np.random.Generator, count: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Tissue density (``low``-squared float) and the index of the strongest blob per pixel."""
    yy, xx = np.mgrid[0:low, 0:low] / low
    fields = np.empty((count, low, low))
    for i in range(count):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        ry, rx = rng.uniform(0.06, 0.18, 2)
        fields[i] = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
    return fields.sum(axis=0), fields.argmax(axis=0)


def _ome_attrs(name: str, levels: int, axes: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    datasets = [
        {"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * (len(axes) - 2) + [2.0**k, 2.0**k]}]}
        for k in range(levels)
    ]
    return {"ome": {"version": "0.5", "multiscales": [
        {"name": name, "axes": axes, "datasets": datasets}], **extra}}


def write_synthetic_slide(path: Path, *, size: int = 4096, seed: int = 0) -> Path:
    """Write a synthetic bright-field slide as an OME-Zarr v0.5 image group.

    Parameters
    ----------
    path : Path
        Directory of the group to create (must not exist).
    size : int
        Side of level 0 in pixels, a multiple of 64, >= 256.
    seed : int
        Seed of the tissue layout and the noise.

    Returns
    -------
    Path
        ``path``, holding levels ``"0"``, ``"1"``, ``"2"`` (``(3, size / 2**k,
        size / 2**k)`` uint8, axes ``cyx``, chunks 512) of pale background
        with pink-purple tissue blobs, and ``labels/tissue`` (``(1, ...)``
        uint8, the blob id of each tissue pixel, 0 outside).

    Notes
    -----
    Written one band of chunk rows at a time: memory is a few bands.
    """
    import zarr

    size = check_int(size, "size", minimum=256)
    if size % 64:
        raise ZarrsampleError(f"size must be a multiple of 64, got {size}")
    rng = np.random.default_rng(seed)
    density, strongest = _blobs(size // 16, rng)
    labels_low = np.where(density > 0.5, strongest + 1, 0).astype(np.uint8)
    cyx = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    root.attrs.update(_ome_attrs("slide", LEVELS, cyx))
    labels = root.create_group("labels")
    labels.attrs.update({"ome": {"version": "0.5", "labels": ["tissue"]}})
    tissue = labels.create_group("tissue")
    tissue.attrs.update(_ome_attrs("tissue", LEVELS, cyx, **{"image-label": {"source": {"image": "../../"}}}))
    images, masks = [], []
    for k in range(LEVELS):
        side = size >> k
        chunks = (3, min(CHUNK, side), min(CHUNK, side))
        images.append(root.create_array(str(k), shape=(3, side, side), chunks=chunks, dtype="uint8",
                                        dimension_names=["c", "y", "x"]))
        masks.append(tissue.create_array(str(k), shape=(1, side, side), chunks=(1, *chunks[1:]),
                                         dtype="uint8", dimension_names=["c", "y", "x"]))
    for y in range(0, size, CHUNK):
        rows = slice(y // 16, (y + CHUNK) // 16)
        t = np.kron(np.clip(density[rows], 0, 1.5) / 1.5, np.ones((16, 16), np.float32))
        rgb = np.stack([235 - 60 * t, 235 - 140 * t, 240 - 70 * t])
        rgb += 4 * rng.standard_normal(rgb.shape, dtype=np.float32)
        band = np.clip(rgb, 0, 255)
        label = np.kron(labels_low[rows], np.ones((16, 16), np.uint8))[None]
        for k in range(LEVELS):
            f = 2**k
            lo, hi = y // f, y // f + band.shape[1] // f
            pooled = band.reshape(3, band.shape[1] // f, f, band.shape[2] // f, f).mean(axis=(2, 4))
            images[k][:, lo:hi, :] = np.rint(pooled).astype(np.uint8)
            masks[k][:, lo:hi, :] = label[:, ::f, ::f]
    return path


def _tiles(plan: PatchPlan) -> int:
    return len(np.unique(plan.chunk_ids))


def _batches(dataset: PatchDataset) -> tuple[Iterator[dict[str, Any]], str]:
    """Batches of numpy arrays from a torch DataLoader with 2 workers (or the core epoch), and which."""
    try:
        import torch  # noqa: F401
        from torch.utils.data import DataLoader

        from zarrsample_torch import PatchIterableDataset
    except ImportError:
        samples = dataset.epoch(0)

        def core() -> Iterator[dict[str, Any]]:
            while batch := [s for _, s in zip(range(BATCH), samples)]:
                yield {key: np.stack([s[key] for s in batch]) for key in batch[0]}

        return core(), "the core's epoch iterator; torch is not installed"
    loader = DataLoader(PatchIterableDataset(dataset, epoch=0), batch_size=BATCH, num_workers=2)
    batches = ({k: v.numpy() for k, v in batch.items()} for batch in loader)
    return batches, "PyTorch DataLoader, 2 workers"


def stitch_epoch(
    dataset: PatchDataset, out: Path, *, shape: tuple[int, ...], quiet: bool = True
) -> dict[str, Any]:
    """One epoch of ``dataset`` through an identity model, stitched into ``out``.

    Parameters
    ----------
    dataset : PatchDataset
        Of one image, with ``return_positions=True``, modalities ``"images"``
        and ``"labels"``.
    out : Path
        Where the stitched zarr v3 array is created (must not exist).
    shape : tuple of int
        Output shape, the reference image's (leading axes then ``Y``, ``X``).
    quiet : bool
        No progress bar.

    Returns
    -------
    dict
        ``patches``, ``patches_per_s`` and ``mb_per_s`` (after the first
        batch), ``seconds`` (the epoch and the stitching, from the
        first batch requested to the last chunk written), ``startup`` (until
        the first batch arrived: worker start-up), ``bytes`` (image and
        label bytes delivered), ``loader`` (what delivered them),
        ``stitching`` (seconds spent in the model, :meth:`Stitcher.add` and
        :meth:`Stitcher.finalize`), ``stitched_per_s`` (patches over those
        seconds) and ``output`` (the stitched zarr array, float32 in
        ``[0, 1]``).
    """
    from ..inference._stitch import Stitcher

    batches, loader = _batches(dataset)
    total = -(-len(dataset) // BATCH)
    start, patches, delivered = time.perf_counter(), 0, 0
    startup, first_patches, first_bytes = 0.0, 0, 0
    if len(dataset.plans) != 1:
        raise ZarrsampleError(f"stitch_epoch stitches one image, got a dataset of {len(dataset.plans)}")
    # Every window of the epoch (one image, one rank: no repeats), so chunks are written once complete.
    windows = dataset.plans[0].windows()
    with Stitcher(out, shape=shape, chunks=(shape[0], CHUNK, CHUNK), dtype="float32", blend="mean",
                  positions=windows) as stitcher:
        stitching = 0.0
        for batch in progress(batches, total=total, desc="epoch", unit="batch", quiet=quiet):
            images = batch["images"]
            if not patches:  # rates count what came after the first batch
                startup, first_patches, first_bytes = (
                    time.perf_counter() - start, len(images), images.nbytes + batch["labels"].nbytes)
            delivered += images.nbytes + batch["labels"].nbytes
            t0 = time.perf_counter()
            prediction = images.astype(np.float32) / 255  # the identity "model" on normalised input
            stitcher.add(prediction, batch["position"])
            stitching += time.perf_counter() - t0
            patches += len(images)
        t0 = time.perf_counter()
        output = stitcher.finalize()
        stitching += time.perf_counter() - t0
    seconds = time.perf_counter() - start
    steady = max(seconds - startup, 1e-9)
    return {"patches": patches, "seconds": seconds, "startup": startup, "bytes": delivered,
            "patches_per_s": (patches - first_patches) / steady,
            "mb_per_s": (delivered - first_bytes) / 2**20 / steady, "loader": loader, "output": output,
            "stitching": stitching, "stitched_per_s": patches / max(stitching, 1e-9)}


def load_epoch(dataset: PatchDataset, *, quiet: bool = True) -> dict[str, Any]:
    """One epoch of ``dataset`` through the loader alone (nothing done with the batches).

    Returns
    -------
    dict
        ``patches``, ``seconds``, ``startup``, ``bytes``, ``patches_per_s``,
        ``mb_per_s`` and ``loader`` as :func:`stitch_epoch` gives them.
    """
    batches, loader = _batches(dataset)
    total = -(-len(dataset) // BATCH)
    start, patches, delivered = time.perf_counter(), 0, 0
    startup, first_patches, first_bytes = 0.0, 0, 0
    for batch in progress(batches, total=total, desc="epoch", unit="batch", quiet=quiet):
        size = sum(v.nbytes for k, v in batch.items() if k in ("images", "labels"))
        if not patches:
            startup, first_patches, first_bytes = time.perf_counter() - start, len(batch["images"]), size
        delivered += size
        patches += len(batch["images"])
    seconds = time.perf_counter() - start
    steady = max(seconds - startup, 1e-9)
    return {"patches": patches, "seconds": seconds, "startup": startup, "bytes": delivered,
            "patches_per_s": (patches - first_patches) / steady,
            "mb_per_s": (delivered - first_bytes) / 2**20 / steady, "loader": loader}


def _covered_error(output: Any, image: Image, plan: PatchPlan) -> float:
    """Max |output - image / 255| over pixels some patch covers, band by band."""
    first = plan.toplefts - np.asarray(plan.pad)
    last = plan.toplefts + np.asarray(plan.patch_size) + np.asarray(plan.pad)
    height, width = plan.image_shape
    worst = 0.0
    for y in range(0, height, CHUNK):
        stop = min(y + CHUNK, height)
        hit = (first[:, 0] < stop) & (last[:, 0] > y)
        y0, y1 = np.clip(first[hit, 0] - y, 0, stop - y), np.clip(last[hit, 0] - y, 0, stop - y)
        x0, x1 = np.clip(first[hit, 1], 0, width), np.clip(last[hit, 1], 0, width)
        corners = np.zeros((stop - y + 1, width + 1), np.int64)
        for ys, xs, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
            np.add.at(corners, (ys, xs), sign)
        covered = np.cumsum(np.cumsum(corners, axis=0), axis=1)[:-1, :-1] > 0
        if covered.any():
            band = np.asarray(output[:, y:stop, :], np.float64)
            truth = image.read((slice(None), slice(y, stop), slice(None))) / 255.0
            worst = max(worst, float(np.abs(band - truth)[:, covered].max()))
    return worst


def _peak_mb() -> tuple[float, float]:
    scale = 1024 if sys.platform != "darwin" else 2**20
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return own, children


def run_demo(*, out: Path | None = None, size: int = 4096, quiet: bool = False, stream: TextIO | None = None) -> int:
    """Run the demo; print its report to ``stream`` (default stdout).

    Parameters
    ----------
    out : Path, optional
        Directory for ``slide.ome.zarr``, ``stitched.zarr`` and
        ``preview.png`` (created if missing; existing files are never
        overwritten). Default: a temporary directory, removed at the end.
    size : int
        Side of the slide's level 0, pixels (a multiple of 64, >= 256).
    quiet : bool
        No progress bars.

    Returns
    -------
    int
        0.

    Raises
    ------
    FileExistsError
        One of the demo's outputs exists in ``out``.
    """
    size = check_int(size, "size", minimum=256)
    if size % 64:
        raise ZarrsampleError(f"size must be a multiple of 64, got {size}")
    stream = stream or sys.stdout
    say = lambda text: print(text, file=stream, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="zarrsample-demo-") as tmp:
        folder = Path(tmp) if out is None else Path(out)
        paths = {name: folder / name for name in ("slide.ome.zarr", "stitched.zarr", "preview.png")}
        taken = [str(p) for p in paths.values() if p.exists()]
        if taken:
            raise FileExistsError(f"the demo never overwrites: {', '.join(taken)} exist; choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_synthetic_slide(paths["slide.ome.zarr"], size=size)
        say(f"slide: {paths['slide.ome.zarr']} ({size} x {size} RGB uint8, {LEVELS} levels, "
            f"OME-Zarr 0.5 / zarr v3, labels/tissue) written in {time.perf_counter() - t0:.2f} s")

        image = open_image(paths["slide.ome.zarr"])
        labels = open_image(paths["slide.ome.zarr"], data_group="labels/tissue")
        t0 = time.perf_counter()
        mask = tissue_mask(image, progress=not quiet)
        say(f"tissue mask: {mask.shape[0]} x {mask.shape[1]} (1/{size // mask.shape[0]} scale), "
            f"{mask.read().mean():.1%} tissue, Otsu threshold, {time.perf_counter() - t0:.2f} s")
        coll = ImageCollection({"images": image, "labels": labels, "masks": mask}, spatial_axes="YX")
        samplers = {
            f"grid, stride {STRIDE}": PatchSampler(PATCH, stride=STRIDE, min_area=0.5, spatial_axes="YX"),
            "blue noise": BlueNoisePatchSampler(PATCH, min_area=0.5, seed=0, spatial_axes="YX"),
        }
        plans = {}
        for name, sampler in samplers.items():
            t0 = time.perf_counter()
            plans[name] = plan = sampler.plan(coll)
            say(f"plan ({name}): {len(plan):5d} patches of {PATCH} px in {_tiles(plan):3d} chunk tiles, "
                f"{(time.perf_counter() - t0) * 1e3:.1f} ms")
        grid = plans[f"grid, stride {STRIDE}"]
        if not len(grid):
            raise ZarrsampleError(f"the tissue mask of the {size} px slide holds no {PATCH} px patch; use a larger --size")

        dataset = PatchDataset(coll, samplers[f"grid, stride {STRIDE}"], shuffle=True, seed=0, draw_same_chunk=True,
                               return_positions=True)
        alone = load_epoch(dataset, quiet=quiet)
        say(f"epoch ({alone['loader']}): {alone['patches']} patches in {alone['seconds']:.2f} s, "
            f"{alone['patches_per_s']:.0f} patches/s, {alone['mb_per_s']:.1f} MB/s (the loader alone, after "
            f"the first batch: {alone['startup']:.2f} s of worker start-up)")
        run = stitch_epoch(dataset, paths["stitched.zarr"], shape=image.shape, quiet=quiet)
        error = _covered_error(run["output"], image, grid)
        say(f"stitching: identity model, blend 'mean', stride {STRIDE} (overlap {PATCH - STRIDE} px) -> "
            f"{paths['stitched.zarr']}: {run['patches']} patches stitched in {run['stitching']:.2f} s, "
            f"{run['stitched_per_s']:.0f} patches/s (adds and writes, main process); the epoch again with "
            f"stitching: {run['seconds']:.2f} s; max abs error {error:.2g}")

        from ._preview import write_preview

        width, height = write_preview(paths["preview.png"], image, plan=grid, mask=mask, size=1024)
        own, children = _peak_mb()
        say(f"peak memory: {own:.0f} MB (main process), {children:.0f} MB (largest worker)")
        if out is None:
            say(f"preview: {width} x {height} PNG (removed with the temporary directory; keep it with --out DIR)")
        else:
            say(f"preview: {paths['preview.png']} ({width} x {height} PNG)")
    return 0

