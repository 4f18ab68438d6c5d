"""Samples of the core (dicts of numpy arrays and ints) as torch tensors."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Number
from typing import Any

import numpy as np
import torch

__all__ = ["to_tensors"]

#: numpy kinds ``torch.from_numpy`` accepts (bool, signed, unsigned, float, complex).
_KINDS = "biufc"


def _array_tensor(array: np.ndarray, where: str) -> torch.Tensor:
    """``array`` as a tensor sharing its memory when torch allows it."""
    if array.dtype.kind not in _KINDS:
        raise TypeError(
            f"{where} must be a bool, int, unsigned int, float or complex array to become a tensor, "
            f"got dtype {array.dtype}"
        )
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.writeable or any(s < 0 for s in array.strides):
        array = np.array(array, order="C")  # torch refuses negative strides, warns on read-only
    try:
        return torch.from_numpy(array)
    except TypeError as exc:  # e.g. float128, which torch has no type for
        raise TypeError(f"{where} has dtype {array.dtype}, which torch does not support") from exc


def to_tensors(value: Any, where: str = "sample") -> Any:
    """Numpy arrays and numbers in ``value`` as tensors, containers kept.

    Parameters
    ----------
    value : dict, list, tuple, numpy.ndarray, number or other
        A sample of the core (or whatever its ``transform`` returned).
    where : str
        Name of ``value`` in error messages.

    Returns
    -------
    Same structure as ``value``
        Arrays become tensors of the same dtype and shape that share the
        array's memory (no copy; byte-swapped, read-only and negatively
        strided arrays are copied first). Python and numpy numbers become
        0-d tensors (``int`` -> int64, ``float`` -> float64, ``bool`` ->
        bool) so that ``default_collate`` stacks them. Tensors, strings and
        ``None`` are returned as they are.

    Raises
    ------
    TypeError
        An array whose dtype torch has no type for (strings, objects,
        datetimes, ``float128``); the message names its key.
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return _array_tensor(value, where)
    if isinstance(value, (np.generic, Number)) and not isinstance(value, (str, bytes)):
        return _array_tensor(np.asarray(value), where)
    if isinstance(value, Mapping):
        return {key: to_tensors(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_tensors(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value
