"""Axis strings and per-axis parameters, checked once at the public edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral

from .._errors import ParameterTypeError, ZarrsampleError

__all__ = ["KNOWN_AXES", "check_axes", "guess_axes", "per_axis"]

#: Axis letters zarrsample understands (OME-Zarr's time, channel, z, y, x).
KNOWN_AXES = "TCZYX"


#: A dimension this long or shorter is taken for channels by :func:`guess_axes`.
MAX_CHANNELS = 4


def guess_axes(shape: Sequence[int]) -> str:
    """A likely axes string for an array of ``shape``, for error messages that suggest one.

    The last two dimensions are ``YX``; a short dimension (``<= 4``) first,
    or last after two long ones (interleaved RGB), is ``C``; the others are
    ``Z``, then ``T``, in OME-Zarr's ``TCZYX`` order. Only a suggestion:
    the metadata, or the user, knows.

    Examples
    --------
    >>> [guess_axes(s) for s in [(3, 8192, 8192), (8192, 8192, 3), (40, 512, 512), (2, 40, 512, 512)]]
    ['CYX', 'YXC', 'ZYX', 'CZYX']
    >>> [guess_axes(s) for s in [(512,), (10, 3, 40, 512, 512), (10, 40, 512, 512)]]
    ['X', 'TCZYX', 'TZYX']
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    if ndim <= 2:
        return "YX"[-ndim:] if ndim else ""
    if ndim == 3 and shape[-1] <= MAX_CHANNELS < min(shape[:2]):
        return "YXC"
    lead = shape[:-2]
    if len(lead) >= 3:
        return KNOWN_AXES[-ndim:]
    channel = next((i for i, n in enumerate(lead) if n <= MAX_CHANNELS), None)
    letters = list("TZ"[-len(lead):]) if channel is None else [""] * len(lead)
    if channel is not None:
        letters[channel] = "C"
        others = [i for i in range(len(lead)) if i != channel]
        for i, letter in zip(others, "TZ"[-len(others):] if others else ""):
            letters[i] = letter
    return "".join(letters) + "YX"


def check_axes(axes: object, ndim: int | None = None, *, name: str = "axes") -> str:
    """Return ``axes`` as an upper-case string after checking it.

    Parameters
    ----------
    axes : str
        One letter per array dimension, each from ``KNOWN_AXES``, no repeats.
    ndim : int, optional
        The number of dimensions the string must describe.
    name : str
        The parameter name used in error messages.

    Raises
    ------
    TypeError
        ``axes`` is not a string.
    ZarrsampleError
        Unknown or repeated letters, or a length different from ``ndim``.
    """
    if not isinstance(axes, str):
        raise TypeError(f"{name} must be a string of axis letters such as 'CYX', got {axes!r}")
    upper = axes.upper()
    unknown = sorted({a for a in upper if a not in KNOWN_AXES})
    if unknown:
        raise ZarrsampleError(
            f"{name}={axes!r} has unknown axis letters {unknown}; "
            f"allowed letters are {', '.join(KNOWN_AXES)}"
        )
    repeated = sorted({a for a in upper if upper.count(a) > 1})
    if repeated:
        raise ZarrsampleError(f"{name}={axes!r} repeats axis letters {repeated}")
    if ndim is not None and len(upper) != ndim:
        raise ZarrsampleError(
            f"{name}={axes!r} has {len(upper)} letters but the array has {ndim} dimensions"
        )
    return upper


def per_axis(
    value: object,
    *,
    name: str,
    spatial_axes: str,
    default: int | None = None,
    minimum: int = 1,
) -> dict[str, int]:
    """Normalise an int / sequence / dict parameter to ``{axis: int}``.

    Parameters
    ----------
    value : int, sequence of int, dict or None
        An int applies to every axis; a sequence gives one value per letter of
        ``spatial_axes`` in that order; a dict maps axis letters to values
        (missing letters take ``default``, or 1 when ``default`` is None).
        None means ``default`` on every axis.
    name : str
        Parameter name for error messages.
    spatial_axes : str
        The axes the result is keyed by, in order.
    default : int, optional
        Value for ``None`` and for axes missing from a dict.
    minimum : int
        Smallest allowed value.

    Returns
    -------
    dict
        ``{axis: int}`` with one entry per letter of ``spatial_axes``.

    Raises
    ------
    ParameterTypeError, ZarrsampleError
        Wrong type (a ``TypeError`` that is also a ``ValueError``, as
        zarrdataset raises), wrong length, unknown axis keys, values below
        ``minimum``.
    """
    fill = 1 if default is None else default
    accepted = (
        f"an int, a sequence of {len(spatial_axes)} ints (one per axis of "
        f"{spatial_axes!r}) or a dict {{axis: int}}"
    )
    if value is None:
        if default is None:
            raise ParameterTypeError(f"{name} is required: {accepted}")
        out = {ax: default for ax in spatial_axes}
    elif isinstance(value, bool):
        raise ParameterTypeError(f"{name} must be {accepted}, got {value!r}")
    elif isinstance(value, Integral):
        out = {ax: int(value) for ax in spatial_axes}
    elif isinstance(value, Mapping):
        keys = {str(k).upper(): v for k, v in value.items()}
        unknown = sorted(set(keys) - set(spatial_axes))
        if unknown:
            raise ZarrsampleError(
                f"{name}={value!r} names axes {unknown} that are not in spatial_axes={spatial_axes!r}"
            )
        out = {ax: keys.get(ax, fill) for ax in spatial_axes}
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != len(spatial_axes):
            raise ZarrsampleError(
                f"{name}={value!r} has {len(value)} values but spatial_axes={spatial_axes!r} "
                f"has {len(spatial_axes)}; {name} must be {accepted}"
            )
        out = dict(zip(spatial_axes, value))
    else:
        raise ParameterTypeError(f"{name} must be {accepted}, got {value!r} of type {type(value).__name__}")
    for ax, v in out.items():
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise ParameterTypeError(f"{name}[{ax!r}] must be an int, got {v!r} of type {type(v).__name__}")
        if v < minimum:
            raise ZarrsampleError(f"{name}[{ax!r}] must be >= {minimum}, got {v}")
    return {ax: int(v) for ax, v in out.items()}
