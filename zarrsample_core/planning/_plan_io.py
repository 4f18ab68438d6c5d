"""PatchPlan files (``.npz`` or a zarr group): layout, reading, writing, checks.

Knows the file format only; :meth:`PatchPlan.save` and :meth:`PatchPlan.load`
(``_plan.py``) turn plans into headers and arrays and back.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_bool
from .._errors import ZarrsampleError
from ..sources._axes import check_axes

__all__ = [
    "PLAN_FORMAT", "PLAN_VERSION", "plan_fields", "plan_header", "read_plan_file", "unordered_rows",
    "write_plan_file",
]

#: Marker stored in every plan file.
PLAN_FORMAT = "zarrsample.PatchPlan"
#: Version of the file layout; :func:`load_plan` refuses any other.
PLAN_VERSION = 1

_ATTR = "zarrsample_plan"  # zarr group attribute holding the header
_TUPLES = ("image_shape", "patch_size", "stride", "pad", "tile_shape")
_MINIMUM = {"image_shape": 1, "patch_size": 1, "stride": 1, "pad": 0, "tile_shape": 1}


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or path.is_dir()


def plan_header(spatial_axes: str, fields: Mapping[str, tuple[int, ...]], n_patches: int) -> dict[str, Any]:
    """The JSON header of a plan file: format marker, version, axes, sizes, patch count."""
    header: dict[str, Any] = {"format": PLAN_FORMAT, "version": PLAN_VERSION}
    header["spatial_axes"] = spatial_axes
    header.update({k: [int(v) for v in fields[k]] for k in _TUPLES})
    header["n_patches"] = int(n_patches)
    return header


def write_plan_file(
    path: str | os.PathLike[str], header: Mapping[str, Any], toplefts: np.ndarray,
    coverage: np.ndarray, *, overwrite: bool = False,
) -> None:
    """Write a plan's header and arrays to ``path`` (see :meth:`PatchPlan.save`)."""
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
    if zarr_group:
        import zarr

        group = zarr.open_group(str(path), mode="w-")
        group.attrs[_ATTR] = dict(header)
        for name, array in (("toplefts", toplefts), ("coverage", coverage)):
            chunks = (max(1, min(len(array), 2**20)),) + array.shape[1:]
            group.create_array(name, data=array, chunks=chunks)
        return
    with open(path, "xb") as f:
        np.savez_compressed(f, header=np.array(json.dumps(dict(header))), toplefts=toplefts, coverage=coverage)


def read_plan_file(path: str | os.PathLike[str]) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(header, toplefts, coverage)`` as stored at ``path``, unchecked (see :func:`plan_fields`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no PatchPlan file at {path}")
    try:
        return _read_zarr(path) if path.is_dir() else _read_npz(path)
    except ZarrsampleError:
        raise
    except Exception as exc:  # any decoding failure of a damaged file
        raise ZarrsampleError(
            f"{path} is not a readable PatchPlan file ({type(exc).__name__}: {exc})"
        ) from exc


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


def plan_fields(header: Any, toplefts: np.ndarray, coverage: np.ndarray, where: str) -> dict[str, Any]:
    """The checked ``PatchPlan`` fields of a file's header and arrays (``where`` names it)."""
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
    bad = unordered_rows(toplefts, fields["tile_shape"], fields["image_shape"])
    if len(bad):
        raise ZarrsampleError(
            f"{where}: patches must be in chunk-tile order, each once; row {int(bad[0])} "
            f"({toplefts[bad[0]].tolist()}) does not follow row {int(bad[0]) - 1}"
        )
    return dict(spatial_axes=axes, toplefts=toplefts, coverage=coverage, **fields)


def unordered_rows(
    toplefts: np.ndarray, tile_shape: tuple[int, ...], image_shape: tuple[int, ...]
) -> np.ndarray:
    """Rows that do not strictly follow the previous one in (chunk tile, C order) order.

    Returns
    -------
    (k,) int64
        Empty for a well-formed plan (sorted by tile, C order inside a tile,
        no duplicates). O(n) time and memory.
    """
    if len(toplefts) < 2:
        return np.zeros(0, np.int64)
    grid = tuple(-(-n // t) for n, t in zip(image_shape, tile_shape))
    tiles = toplefts // np.asarray(tile_shape, np.int64)
    step = np.diff(np.ravel_multi_index(tuple(tiles.T), grid))
    diff = np.diff(toplefts, axis=0)
    moved = diff != 0
    first = np.argmax(moved, axis=1)
    forward = moved.any(axis=1) & (diff[np.arange(len(diff)), first] > 0)
    return np.flatnonzero(~((step > 0) | ((step == 0) & forward))) + 1
