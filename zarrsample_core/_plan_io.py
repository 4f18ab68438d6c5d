"""PatchPlan files (``.npz`` or a zarr group) and the check that a plan fits an image."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ._axes import check_axes
from ._checks import check_bool
from ._collection import ImageCollection
from ._errors import ZarrsampleError
from ._grid import chunk_tile_shape
from ._plan import PatchPlan

__all__ = ["PLAN_FORMAT", "PLAN_VERSION", "check_plan_fits", "load_plan", "save_plan"]

#: Marker stored in every plan file.
PLAN_FORMAT = "zarrsample.PatchPlan"
#: Version of the file layout; :func:`load_plan` refuses any other.
PLAN_VERSION = 1

_ATTR = "zarrsample_plan"  # zarr group attribute holding the header
_TUPLES = ("image_shape", "patch_size", "stride", "pad", "tile_shape")
_MINIMUM = {"image_shape": 1, "patch_size": 1, "stride": 1, "pad": 0, "tile_shape": 1}


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or path.is_dir()


def _header(plan: PatchPlan) -> dict[str, Any]:
    header: dict[str, Any] = {"format": PLAN_FORMAT, "version": PLAN_VERSION}
    header["spatial_axes"] = plan.spatial_axes
    header.update({k: [int(v) for v in getattr(plan, k)] for k in _TUPLES})
    header["n_patches"] = len(plan)
    return header


def save_plan(plan: PatchPlan, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write ``plan`` to ``path`` (see :meth:`PatchPlan.save`)."""
    if not isinstance(plan, PatchPlan):
        raise TypeError(f"plan must be a PatchPlan, got {type(plan).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    check_bool(overwrite, "overwrite")
    path = Path(path)
    zarr_group = _is_zarr(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    header = _header(plan)
    if zarr_group:
        import zarr

        group = zarr.open_group(str(path), mode="w-")
        group.attrs[_ATTR] = header
        for name in ("toplefts", "coverage"):
            array = getattr(plan, name)
            chunks = (max(1, min(len(array), 2**20)),) + array.shape[1:]
            group.create_array(name, data=array, chunks=chunks)
        return
    with open(path, "xb") as f:
        np.savez_compressed(
            f, header=np.array(json.dumps(header)), toplefts=plan.toplefts, coverage=plan.coverage
        )


def load_plan(
    path: str | os.PathLike[str], *, collection: ImageCollection | None = None
) -> PatchPlan:
    """Read and check a plan file (see :meth:`PatchPlan.load`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if collection is not None and not isinstance(collection, ImageCollection):
        raise TypeError(
            f"collection must be an ImageCollection or None, got {type(collection).__name__}"
        )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no PatchPlan file at {path}")
    try:
        header, toplefts, coverage = _read_zarr(path) if path.is_dir() else _read_npz(path)
    except ZarrsampleError:
        raise
    except Exception as exc:  # any decoding failure of a damaged file
        raise ZarrsampleError(
            f"{path} is not a readable PatchPlan file ({type(exc).__name__}: {exc})"
        ) from exc
    plan = _build(header, toplefts, coverage, str(path))
    if collection is not None:
        check_plan_fits(plan, collection, name=f"the plan in {path}")
    return plan


def _read_npz(path: Path) -> tuple[Any, np.ndarray, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ZarrsampleError(f"{path} is not a PatchPlan file: a single .npy array, not an .npz archive")
    with data:
        missing = [k for k in ("header", "toplefts", "coverage") if k not in data]
        if missing:
            raise ZarrsampleError(f"{path} is not a complete PatchPlan file: missing entries {missing}")
        header = data["header"]
        if header.dtype.kind != "U" or header.ndim != 0:
            raise ZarrsampleError(
                f"{path}: 'header' must be a JSON string, got {header.dtype} {header.shape}"
            )
        return json.loads(str(header)), data["toplefts"], data["coverage"]


def _read_zarr(path: Path) -> tuple[Any, np.ndarray, np.ndarray]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    if _ATTR not in group.attrs:
        raise ZarrsampleError(f"{path} is not a PatchPlan group: no {_ATTR!r} attribute")
    arrays = {k: group.get(k) for k in ("toplefts", "coverage")}
    missing = [k for k, a in arrays.items() if not isinstance(a, zarr.Array)]
    if missing:
        raise ZarrsampleError(f"{path} is not a complete PatchPlan group: missing arrays {missing}")
    toplefts, coverage = (np.asarray(a[...]) for a in arrays.values() if isinstance(a, zarr.Array))
    return group.attrs[_ATTR], toplefts, coverage


def _build(header: Any, toplefts: np.ndarray, coverage: np.ndarray, where: str) -> PatchPlan:
    """The checked plan from a file's header and arrays."""
    if not isinstance(header, dict) or header.get("format") != PLAN_FORMAT:
        raise ZarrsampleError(f"{where} is not a PatchPlan file (format marker {PLAN_FORMAT!r} missing)")
    version = header.get("version")
    if version != PLAN_VERSION or isinstance(version, bool):
        raise ZarrsampleError(
            f"{where} has PatchPlan format version {version!r}; this zarrsample reads version "
            f"{PLAN_VERSION} only (plan the images again with this version)"
        )
    axes = check_axes(header.get("spatial_axes"), name=f"{where}: spatial_axes")
    d = len(axes)
    fields: dict[str, tuple[int, ...]] = {}
    for key in _TUPLES:
        value = header.get(key)
        if (
            not isinstance(value, list) or len(value) != d
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or min(value, default=0) < _MINIMUM[key]
        ):
            raise ZarrsampleError(
                f"{where}: {key} must be a list of {d} ints >= {_MINIMUM[key]} (one per axis of "
                f"{axes!r}), got {value!r}"
            )
        fields[key] = tuple(value)
    n = header.get("n_patches")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ZarrsampleError(f"{where}: n_patches must be an int >= 0, got {n!r}")
    if toplefts.dtype.kind not in "iu" or toplefts.shape != (n, d):
        raise ZarrsampleError(
            f"{where}: toplefts must be ({n}, {d}) integers, got {toplefts.dtype} {toplefts.shape}"
        )
    if coverage.dtype.kind != "f" or coverage.shape != (n,):
        raise ZarrsampleError(
            f"{where}: coverage must be ({n},) floats, got {coverage.dtype} {coverage.shape}"
        )
    if n and not (np.isfinite(coverage).all() and coverage.min() >= 0):
        raise ZarrsampleError(f"{where}: coverage must be finite and >= 0")
    shape = np.asarray(fields["image_shape"], np.int64)
    if n and ((toplefts < 0).any() or (toplefts >= shape).any()):
        raise ZarrsampleError(f"{where}: toplefts must lie in [0, image_shape={fields['image_shape']})")
    plan = PatchPlan(spatial_axes=axes, toplefts=toplefts, coverage=coverage, **fields)
    bad = unordered_rows(plan)
    if len(bad):
        raise ZarrsampleError(
            f"{where}: patches must be in chunk-tile order, each once; row {int(bad[0])} "
            f"({plan.toplefts[bad[0]].tolist()}) does not follow row {int(bad[0]) - 1}"
        )
    return plan


def unordered_rows(plan: PatchPlan) -> np.ndarray:
    """Rows that do not strictly follow the previous one in (chunk tile, C order) order.

    Returns
    -------
    (k,) int64
        Empty for a well-formed plan (sorted by tile, C order inside a tile,
        no duplicates). O(n) time and memory.
    """
    if len(plan) < 2:
        return np.zeros(0, np.int64)
    step = np.diff(plan.chunk_ids)
    diff = np.diff(plan.toplefts, axis=0)
    moved = diff != 0
    first = np.argmax(moved, axis=1)
    forward = moved.any(axis=1) & (diff[np.arange(len(diff)), first] > 0)
    return np.flatnonzero(~((step > 0) | ((step == 0) & forward))) + 1


def check_plan_fits(plan: PatchPlan, collection: ImageCollection, *, name: str = "plan") -> None:
    """Raise unless ``plan`` was made for ``collection``'s reference image.

    Parameters
    ----------
    plan : PatchPlan
    collection : ImageCollection
    name : str
        How messages call the plan (e.g. ``"plans[3]"``).

    Raises
    ------
    TypeError
        ``collection`` is not an ImageCollection.
    ZarrsampleError
        The reference image lacks an axis the plan samples along, its extents
        differ, or the plan's chunk tile is not the reference's storage chunk
        rounded up to the stride (the tile a sampler would use), which would
        break chunk-by-chunk reading. The message says what differs.

    Examples
    --------
    >>> from zarrsample_core import ImageCollection, PatchSampler, open_image
    >>> coll = ImageCollection({"images": open_image(np.zeros((8, 8)), axes="YX")}, spatial_axes="YX")
    >>> plan = PatchSampler(4, spatial_axes="YX").plan(coll)
    >>> check_plan_fits(plan, coll)
    >>> other = ImageCollection({"images": open_image(np.zeros((8, 9)), axes="YX")}, spatial_axes="YX")
    >>> check_plan_fits(plan, other)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zarrsample_core._errors.ZarrsampleError: plan was made for an image of shape (8, 8) along 'YX', ...
    """
    if not isinstance(collection, ImageCollection):
        raise TypeError(f"collection must be an ImageCollection, got {type(collection).__name__}")
    axes = plan.spatial_axes
    ref = collection.reference
    missing = [a for a, n in zip(axes, plan.image_shape) if n > 1 and a not in ref.axes]
    if missing:
        raise ZarrsampleError(
            f"{name} samples along axes {missing} that the reference image {ref.name!r} "
            f"(axes {ref.axes!r}) lacks"
        )
    shape = collection.spatial_extent(collection.reference_name, axes)
    if tuple(shape) != tuple(plan.image_shape):
        raise ZarrsampleError(
            f"{name} was made for an image of shape {plan.image_shape} along {axes!r}, but the "
            f"reference image {ref.name!r} has {tuple(shape)}"
        )
    real = np.asarray(plan.image_shape) > 1
    expected = chunk_tile_shape(np.asarray(collection.spatial_chunks(axes)), np.asarray(plan.stride))
    if not np.array_equal(np.asarray(plan.tile_shape)[real], expected[real]):
        raise ZarrsampleError(
            f"{name} has chunk tile {plan.tile_shape} along {axes!r}, but the reference image "
            f"{ref.name!r} has storage chunks {collection.spatial_chunks(axes)}, i.e. tile "
            f"{tuple(expected.tolist())} for stride {plan.stride}: the plan was made for "
            f"another chunking"
        )
