"""Checks of what a Stitcher is given: options, positions, patches and their windows."""

from __future__ import annotations

from collections.abc import Sequence
from math import isfinite
from numbers import Integral, Real
from typing import Literal

import numpy as np

from .._checks import check_int
from .._errors import ZarrsampleError

__all__ = [
    "BLENDS",
    "Blend",
    "as_array",
    "as_positions",
    "check_arrivals",
    "check_blend",
    "check_crop",
    "check_patch",
    "check_sigma",
    "clip_windows",
    "crop_per_axis",
    "int_tuple",
]

Blend = Literal["mean", "gaussian", "max"]
BLENDS = ("mean", "gaussian", "max")


def int_tuple(value: object, name: str, minimum: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
    return tuple(check_int(v, f"{name}[{i}]", minimum) for i, v in enumerate(value))


def as_array(value: object, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be convertible by numpy.asarray (a CPU array), got "
                        f"{type(value).__name__}: {exc}") from exc


def as_positions(position: object, name: str, batched: bool | None = None) -> np.ndarray:
    """``position`` as ``(B, D, 2)`` int64 (a single ``(D, 2)`` window gets B = 1)."""
    pos = as_array(position, name)
    ndims = {None: (2, 3), True: (3,), False: (2,)}[batched]
    if pos.ndim not in ndims or pos.shape[-1] != 2 or pos.shape[-2] < 1 or not (
        np.issubdtype(pos.dtype, np.integer) or pos.size == 0
    ):
        rule = {None: "(D, 2) or a (B, D, 2) batch", True: "(n, D, 2)", False: "(D, 2)"}[batched]
        raise ZarrsampleError(
            f"{name} must be an integer array of [start, stop) per spatial axis, shape {rule}; "
            f"got shape {pos.shape} dtype {pos.dtype}"
        )
    pos = pos.astype(np.int64).reshape(-1, *pos.shape[-2:])
    if np.any(pos[..., 1] <= pos[..., 0]):
        bad = int(np.flatnonzero(np.any(pos[..., 1] <= pos[..., 0], axis=1))[0])
        raise ZarrsampleError(f"{name} must have stop > start on every axis, got {pos[bad].tolist()}")
    return pos


def check_blend(blend: str) -> str:
    """``blend`` if it is one of :data:`BLENDS`."""
    if blend not in BLENDS:
        raise ZarrsampleError(f"blend must be one of {', '.join(map(repr, BLENDS))}, got {blend!r}")
    return blend


def check_sigma(sigma: object) -> float:
    """``sigma`` as a float if it is a finite number > 0."""
    if isinstance(sigma, bool) or not isinstance(sigma, Real):
        raise TypeError(f"sigma must be a number, got {sigma!r}")
    if not isfinite(sigma) or sigma <= 0:
        raise ZarrsampleError(
            f"sigma must be a finite number > 0 (a fraction of the patch side), got {sigma!r}"
        )
    return float(sigma)


def check_crop(crop: object) -> int | tuple[int, ...]:
    """``crop`` as an int >= 0, or a tuple of them (one per spatial axis)."""
    return check_int(crop, "crop") if isinstance(crop, Integral) else int_tuple(crop, "crop", 0)


def crop_per_axis(crop: int | tuple[int, ...], d: int) -> tuple[int, ...]:
    """``crop`` as one margin per spatial axis (``d`` of them)."""
    per_axis = (crop,) * d if isinstance(crop, int) else crop
    if len(per_axis) != d:
        raise ZarrsampleError(
            f"crop must be an int or have one value per spatial axis ({d}), got {crop}"
        )
    return per_axis


def clip_windows(
    pos: np.ndarray, name: str, *, crop: int | tuple[int, ...], crop_d: np.ndarray,
    spatial: np.ndarray, shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Cropped windows clipped to the output, ``(lo, hi)`` each ``(B, D)``; errors if empty.

    ``crop`` is the margin as given (for messages), ``crop_d`` its ``(D,)``
    int64 form, ``spatial`` the output's spatial shape and ``shape`` its
    whole shape.
    """
    start, stop = pos[..., 0] + crop_d, pos[..., 1] - crop_d
    if np.any(stop <= start):
        i = int(np.flatnonzero(np.any(stop <= start, axis=1))[0])
        raise ZarrsampleError(
            f"crop={crop} must leave a non-empty window, but {name} has window "
            f"{(pos[i, :, 1] - pos[i, :, 0]).tolist()} at {pos[i].tolist()}"
        )
    lo, hi = np.maximum(start, 0), np.minimum(stop, spatial)
    if np.any(hi <= lo):
        i = int(np.flatnonzero(np.any(hi <= lo, axis=1))[0])
        where = name if len(pos) == 1 else f"{name}[{i}]"
        raise ZarrsampleError(
            f"{where}={pos[i].tolist()} lies wholly outside the output after crop={crop} "
            f"(spatial shape {tuple(spatial.tolist())}, output shape {shape})"
        )
    return lo, hi


def check_patch(
    data: np.ndarray, pos: np.ndarray, given: list, *, batched: bool, leading: tuple[int, ...],
    shape: tuple[int, ...],
) -> np.ndarray:
    """``data`` as ``(B, *leading, *window)`` once its shape and dtype fit ``pos``.

    ``given`` is the position as the caller passed it (for messages),
    ``leading`` the output's leading axes and ``shape`` its whole shape.
    """
    window = pos[0, :, 1] - pos[0, :, 0]
    expected = ((len(pos),) if batched else ()) + leading + tuple(window.tolist())
    if data.shape != expected or np.any(pos[:, :, 1] - pos[:, :, 0] != window):
        rule = "(B, *leading, *window)" if batched else "(*leading, *window)"
        raise ZarrsampleError(
            f"patch must have shape {rule} = {expected} for output shape {shape} "
            f"and position {given}, got {data.shape}"
        )
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool) or data.dtype.kind == "c":
        raise ZarrsampleError(f"patch must hold real numbers, got dtype {data.dtype}")
    return data.reshape(len(pos), *data.shape[int(batched):])


def check_arrivals(
    tasks: list[tuple[int, int, np.ndarray]], arrived: np.ndarray, expected: np.ndarray,
    grid: tuple[int, ...], given: list,
) -> None:
    """Refuse windows that touch an output block more often than the windows of ``positions`` do.

    ``tasks`` are :func:`._stitch_blocks.touched_blocks` of the new windows,
    ``arrived`` and ``expected`` the ``grid``-shaped counts so far and in all.
    """
    keys, extra = np.unique(np.array([t[1] for t in tasks], np.int64), return_counts=True)
    over = arrived.reshape(-1)[keys] + extra > expected.reshape(-1)[keys]
    if np.any(over):
        key = int(keys[np.argmax(over)])
        raise ZarrsampleError(
            f"position {given} touches output chunk "
            f"{tuple(int(i) for i in np.unravel_index(key, grid))} more often than the "
            "windows in positions do: "
            "every added window must be listed in positions, once"
        )
