"""Small argument checks shared by the core and the adapters."""

from __future__ import annotations

from numbers import Integral
from typing import cast

import numpy as np

from ._errors import ZarrsampleError

__all__ = ["check_bool", "check_int", "check_seed"]


def check_int(value: object, name: str, minimum: int = 0) -> int:
    """``value`` as a Python int >= ``minimum``; bools are refused.

    Raises
    ------
    TypeError
        ``value`` is not an integer (``True`` and ``np.bool_`` included).
    ZarrsampleError
        ``value < minimum``.

    Examples
    --------
    >>> check_int(np.int64(3), "epoch")
    3
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ZarrsampleError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a bool, else a ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_seed(seed: object) -> int:
    """A sampler's ``seed`` as an int >= 0; None draws one from the operating system.

    Raises
    ------
    ZarrsampleError
        Not a non-negative int or None (the message names ``seed``).
    """
    if seed is None:
        return int(cast(int, np.random.SeedSequence().entropy))  # an int when drawn from the OS
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ZarrsampleError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)
