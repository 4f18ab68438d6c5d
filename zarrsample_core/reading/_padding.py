"""Window geometry for the patch reader: scaled windows, padding index maps.

Pure integer arithmetic on one axis at a time; :mod:`._reader` combines the
axes. Every padding mode has :func:`numpy.pad`'s meaning relative to the
whole image, however far a window sticks out of it.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Literal
from typing import cast as typing_cast  # ``cast`` is a local name below

import numpy as np

from .._errors import ZarrsampleError

__all__ = [
    "PADDING_MODES",
    "PaddingMode",
    "check_pad_value",
    "check_padding_mode",
    "read_range",
    "scaled_window",
    "source_indices",
]

PaddingMode = Literal["constant", "edge", "reflect", "symmetric", "wrap"]
#: Allowed ``padding_mode`` values (``numpy.pad`` modes).
PADDING_MODES: tuple[str, ...] = ("constant", "edge", "reflect", "symmetric", "wrap")


def check_padding_mode(mode: object) -> str:
    """Return ``mode`` after checking that it is one of :data:`PADDING_MODES`.

    Raises
    ------
    ZarrsampleError
        ``mode`` is not an allowed mode (the message lists them).
    """
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        raise ZarrsampleError(
            f"padding_mode must be one of {list(PADDING_MODES)}, got {mode!r}"
        )
    return mode


def check_pad_value(value: object, dtype: np.dtype, *, where: str = "") -> object:
    """Return ``value`` as a scalar of ``dtype``, checking it is exact.

    Parameters
    ----------
    value : int, float, bool or numpy scalar
        The constant used for out-of-image pixels.
    dtype : numpy.dtype
        The dtype of the array being padded.
    where : str
        Context for the error message (e.g. the modality name).

    Returns
    -------
    numpy.generic
        ``value`` converted to ``dtype``.

    Raises
    ------
    TypeError
        ``value`` is not a real number or bool.
    ZarrsampleError
        ``value`` is not exactly representable in an integer or bool dtype
        (out of range, fractional, NaN), or overflows a float dtype (float
        values are rounded to the nearest representable one).

    Examples
    --------
    >>> check_pad_value(255, np.dtype("uint8"))
    np.uint8(255)
    """
    if not isinstance(value, (Real, np.bool_)):
        raise TypeError(
            f"pad_value must be a real number or bool, got {value!r} of type {type(value).__name__}"
        )
    dtype = np.dtype(dtype)
    rule = f"pad_value must be representable in dtype {dtype}{where}, got {value!r}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cast = np.array(value, dtype=dtype)
            if dtype.kind in "fc":  # rounding is fine, overflow to inf is not
                exact = bool(np.isfinite(cast)) or not np.isfinite(typing_cast(float, value))
            else:
                exact = cast.item() == value
    except (OverflowError, ValueError, TypeError):
        raise ZarrsampleError(rule) from None
    if not exact:
        raise ZarrsampleError(rule)
    return cast[()]


def scaled_window(start: int, stop: int, reference_extent: int, extent: int) -> tuple[int, int]:
    """The window of a modality matching a reference window on one axis.

    Parameters
    ----------
    start, stop : int
        Window in reference pixels, ``stop > start``; may leave the image.
    reference_extent, extent : int
        Reference extent ``n`` and modality extent ``m`` on this axis.

    Returns
    -------
    start_m, size_m : int
        ``floor(start * m / n)`` and ``max(1, round_half_up((stop - start) * m / n))``,
        exact integer arithmetic: every window of the same size maps to the
        same ``size_m``.

    Examples
    --------
    >>> scaled_window(10, 42, 64, 32)
    (5, 16)
    >>> scaled_window(-5, 15, 70, 30)
    (-3, 9)
    """
    n, m = int(reference_extent), int(extent)
    size = int(stop) - int(start)
    return (int(start) * m) // n, max(1, (2 * size * m + n) // (2 * n))


def source_indices(start: int, size: int, extent: int, mode: str) -> np.ndarray:
    """Image index read for each position of a window, per ``numpy.pad`` mode.

    Parameters
    ----------
    start, size : int
        Window ``[start, start + size)`` in image pixels on one axis.
    extent : int
        Image extent ``m`` on the axis.
    mode : str
        One of :data:`PADDING_MODES`.

    Returns
    -------
    (size,) int64
        Index into ``[0, m)`` of the pixel each window position shows, or
        -1 for positions filled with the constant (``mode="constant"``).
        ``np.pad(a, (before, after), mode)[start + before:][:size]`` equals
        ``a[idx]`` where ``idx >= 0``.

    Raises
    ------
    ZarrsampleError
        ``extent`` is 0 with a mode that copies image pixels.

    Examples
    --------
    >>> source_indices(-3, 8, 3, "reflect")
    array([1, 2, 1, 0, 1, 2, 1, 0])
    """
    i = np.arange(start, start + size, dtype=np.int64)
    m = int(extent)
    if mode == "constant":
        return np.where((i >= 0) & (i < m), i, -1)
    if m == 0:
        raise ZarrsampleError(f"padding_mode={mode!r} cannot pad an axis of extent 0")
    if mode == "edge":
        return np.clip(i, 0, m - 1)
    if mode == "wrap":
        return i % m
    if mode == "symmetric":
        j = i % (2 * m)
        return np.where(j < m, j, 2 * m - 1 - j)
    if mode == "reflect":
        if m == 1:
            return np.zeros_like(i)
        period = 2 * (m - 1)
        j = i % period
        return np.where(j < m, j, period - j)
    raise ZarrsampleError(f"padding_mode must be one of {list(PADDING_MODES)}, got {mode!r}")


def read_range(
    start: int, size: int, extent: int, mode: str
) -> tuple[int, int, slice, np.ndarray | None, bool]:
    """Image range ``[lo, hi)`` a window ``[start, start + size)`` reads on one axis.

    Returns
    -------
    lo, hi : int
        The image pixels the window shows (empty when a ``"constant"``
        window lies outside the image).
    dst : slice
        Where ``[lo, hi)`` lands in the window when copied as is.
    gather : (size,) int64 or None
        Indices into ``[lo, hi)`` for each window position when the range
        does not map one to one (padding by copying pixels), else None.
    padded : bool
        Whether part of the window lies outside the image.

    Examples
    --------
    >>> read_range(-2, 5, 10, "constant")
    (0, 3, slice(2, 5, None), None, True)
    >>> read_range(-2, 5, 10, "edge")[:2], read_range(-2, 5, 10, "edge")[3]
    ((0, 3), array([0, 0, 0, 1, 2]))
    """
    inner_lo, inner_hi = min(max(start, 0), extent), min(max(start + size, 0), extent)
    padded = inner_hi - inner_lo < size
    if mode == "constant" or not padded:
        return inner_lo, inner_hi, slice(inner_lo - start, inner_hi - start), None, padded
    idx = source_indices(start, size, extent, mode)
    first = int(idx.min())
    return first, int(idx.max()) + 1, slice(0, size), idx - first, padded


def is_integer(value: object) -> bool:
    """True for Python / numpy integers (bool excluded)."""
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))
