"""Checks of PatchReader arguments: spatial axes, window vectors, counts, output axes."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from .._errors import ZarrsampleError
from ..sources._axes import check_axes
from ._padding import is_integer

__all__ = ["check_output_axes", "check_spatial_axes", "check_window_vector"]


@lru_cache(maxsize=64)
def _checked_axes(axes: str) -> str:
    return check_axes(axes, name="spatial_axes")


def check_spatial_axes(axes: object) -> str:
    return _checked_axes(axes) if isinstance(axes, str) else check_axes(axes, name="spatial_axes")


def check_window_vector(value: Any, name: str, spatial_axes: str) -> list[int]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.shape == (len(spatial_axes),):
        return value.tolist()
    array = np.asarray(value)
    if array.ndim != 1 or len(array) != len(spatial_axes):
        raise ZarrsampleError(
            f"{name} must have one int per axis of spatial_axes={spatial_axes!r} "
            f"({len(spatial_axes)} values), got {value!r}"
        )
    if array.dtype.kind not in "iu" and not all(is_integer(v) for v in array.tolist()):
        raise TypeError(f"{name} must be integers, got {value!r} (dtype {array.dtype})")
    return [int(v) for v in array.tolist()]


def check_output_axes(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"output_axes must be None or a dict {{modality: axes}} such as "
            f"{{'images': 'CYX'}}, got {value!r}"
        )
    out = {}
    for name, axes in value.items():
        if not isinstance(name, str):
            raise TypeError(f"output_axes keys must be modality names (str), got {name!r}")
        out[name] = check_axes(axes, name=f"output_axes[{name!r}]")
    return out
