"""The memory a plan would need, checked before anything is allocated."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

from .._errors import ZarrsampleError

__all__ = ["check_max_bytes", "check_plan_budget", "plan_bytes"]


def check_max_bytes(value: object, name: str = "max_plan_bytes") -> int | None:
    """``value`` as an int >= 1, or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int or None, got {value!r}")
    if value < 1:
        raise ZarrsampleError(f"{name} must be >= 1 (bytes) or None, got {value}")
    return int(value)


def plan_bytes(counts: Sequence[int], *, masked: bool) -> int:
    """Upper estimate of the bytes planning a grid of ``counts`` positions allocates.

    Per grid position: 2 bytes of boolean grids, 8 of mask coverage (with a
    mask), and ``8 * (2 D + 2)`` for top-left, grid index, chunk id and
    coverage (every position counted as a patch). Exact integer arithmetic.

    Examples
    --------
    >>> plan_bytes([1024, 1024], masked=False)
    52428800
    """
    d = len(counts)
    return math.prod(int(c) for c in counts) * (2 + (8 if masked else 0) + 8 * (2 * d + 2))


def check_plan_budget(counts: Sequence[int], *, masked: bool, max_bytes: int | None, where: str) -> None:
    """Refuse to plan when :func:`plan_bytes` exceeds ``max_bytes``.

    Raises
    ------
    ZarrsampleError
        The estimate (and the grid) is over budget.
    """
    if max_bytes is None:
        return
    need = plan_bytes(counts, masked=masked)
    if need > max_bytes:
        raise ZarrsampleError(
            f"planning {where} would need about {need / 2**30:.3g} GiB ({need} bytes, a grid of "
            f"{' x '.join(str(int(c)) for c in counts)} positions), more than max_plan_bytes="
            f"{max_bytes}; use a larger stride or patch, a region of interest, or raise max_plan_bytes"
        )


