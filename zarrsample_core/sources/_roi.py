"""Regions of interest and read selections: slices checked against a shape."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from .._errors import ZarrsampleError

__all__ = ["parse_roi", "selection_bounds"]


def _index(value: object, *, name: str, what: str) -> int:
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name}: the {what} must be an int or None, got {value!r} of type {type(value).__name__}"
        ) from None


def selection_bounds(
    selection: object, shape: tuple[int, ...], *, name: str = "selection"
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check a tuple of slices against ``shape`` and return its bounds.

    Parameters
    ----------
    selection : tuple of slice or None
        One slice per axis. ``start``/``stop`` are None or ints in
        ``[0, shape[i]]`` with ``start <= stop``; ``step`` is None or 1.
        None selects everything.
    shape : tuple of int
        The shape the slices index.
    name : str
        Parameter name for error messages.

    Returns
    -------
    start, stop : tuple of int
        Absolute, non-negative bounds, one per axis (``start <= stop``).

    Raises
    ------
    TypeError
        ``selection`` is not a tuple or list of slices, or a bound is not an int.
    ZarrsampleError
        Wrong number of slices, a step other than 1, a negative bound, a
        bound beyond the shape, or ``start > stop``.

    Notes
    -----
    O(ndim); negative indices are refused rather than wrapped, so that a
    patch read near the border can never silently come from the other side.

    Examples
    --------
    >>> selection_bounds((slice(1, 3), slice(None)), (4, 5))
    ((1, 0), (3, 5))
    """
    ndim = len(shape)
    if selection is None:
        return (0,) * ndim, tuple(shape)
    if not isinstance(selection, (tuple, list)):
        raise TypeError(
            f"{name} must be a tuple of {ndim} slices (one per axis) or None, "
            f"got {selection!r} of type {type(selection).__name__}"
        )
    if len(selection) != ndim:
        raise ZarrsampleError(
            f"{name} must have one slice per axis ({ndim}), got {len(selection)}: {selection!r}"
        )
    starts, stops = [], []
    for axis, (item, size) in enumerate(zip(selection, shape)):
        if not isinstance(item, slice):
            raise TypeError(
                f"{name}[{axis}] must be a slice, got {item!r} of type {type(item).__name__}"
            )
        if item.step is not None and _index(item.step, name=f"{name}[{axis}]", what="step") != 1:
            raise ZarrsampleError(f"{name}[{axis}] must have step None or 1, got {item!r}")
        start = 0 if item.start is None else _index(item.start, name=f"{name}[{axis}]", what="start")
        stop = size if item.stop is None else _index(item.stop, name=f"{name}[{axis}]", what="stop")
        if not 0 <= start <= stop <= size:
            raise ZarrsampleError(
                f"{name}[{axis}]={item!r} must satisfy 0 <= start <= stop <= {size} "
                f"(the extent of axis {axis}); got start={start}, stop={stop}"
            )
        starts.append(start)
        stops.append(stop)
    return tuple(starts), tuple(stops)


def _parse_roi_string(roi: str, axes: str) -> tuple[slice, ...]:
    """zarrdataset's ``"(start_0,...):(length_0,...)"`` format, as slices."""
    ndim = len(axes)
    form = f"'(start_0,...,start_{ndim - 1}):(length_0,...,length_{ndim - 1})'"
    parts = roi.split(":")
    if len(parts) != 2:
        raise ZarrsampleError(f"roi={roi!r} must have the form {form} with one ':', axes {axes!r}")
    try:
        starts, lengths = (
            [int(v.strip(" \t\r\n()")) for v in part.strip(" \t\r\n()").split(",")]
            for part in parts
        )
    except ValueError:
        raise ZarrsampleError(
            f"roi={roi!r} must have the form {form} with integers, axes {axes!r}"
        ) from None
    if len(starts) != ndim or len(lengths) != ndim:
        raise ZarrsampleError(
            f"roi={roi!r} must give one start and one length per image axis {axes!r} "
            f"({ndim}), got {len(starts)} starts and {len(lengths)} lengths"
        )
    # zarrdataset: a length <= 0 means "to the end of the axis".
    return tuple(
        slice(c, c + n) if n > 0 else slice(c, None) if c > 0 else slice(None)
        for c, n in zip(starts, lengths)
    )


def parse_roi(
    roi: object, shape: tuple[int, ...], axes: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bounds of a region of interest inside an array of ``shape``.

    Parameters
    ----------
    roi : tuple of slice, str or None
        One slice per axis of ``axes`` (step None or 1), or zarrdataset's
        string ``"(start_0,start_1,...):(length_0,length_1,...)"`` where a
        length <= 0 means "to the end". None (or a bare ``slice(None)``, as
        zarrdataset accepts) is the whole array.
    shape : tuple of int
        Shape of the stored array.
    axes : str
        Axis letters of the array, for the string form and error messages.

    Returns
    -------
    start, stop : tuple of int
        The ROI's bounds in stored-array coordinates; every axis non-empty.

    Raises
    ------
    TypeError
        ``roi`` is neither None, a string nor a tuple/list of slices.
    ZarrsampleError
        A malformed string, a wrong number of entries, a step other than 1,
        bounds outside the array, or an empty axis.

    Examples
    --------
    >>> parse_roi("(0,2):(2,-1)", (4, 5), "YX")
    ((0, 2), (2, 5))
    >>> parse_roi((slice(1, 3), slice(None)), (4, 5), "YX")
    ((1, 0), (3, 5))
    >>> parse_roi(slice(None), (4, 5), "YX")  # the whole image, as in zarrdataset
    ((0, 0), (4, 5))
    """
    if roi is None or (isinstance(roi, slice) and roi == slice(None)):  # zarrdataset's "the whole image"
        return (0,) * len(shape), tuple(shape)
    if isinstance(roi, str):
        roi_slices: object = _parse_roi_string(roi, axes)
    elif isinstance(roi, Sequence):
        roi_slices = tuple(roi)
    else:
        raise TypeError(
            f"roi must be a tuple of slices (one per axis of {axes!r}), a string "
            f"'(start_0,...):(length_0,...)' or None, got {roi!r} of type {type(roi).__name__}"
        )
    try:
        start, stop = selection_bounds(roi_slices, shape, name="roi")
    except ZarrsampleError as exc:
        raise ZarrsampleError(
            f"{exc} (roi={roi!r}, axes {axes!r}, array shape {tuple(shape)})"
        ) from None
    empty = [axes[i] for i in range(len(shape)) if start[i] == stop[i]]
    if empty:
        raise ZarrsampleError(
            f"roi={roi!r} is empty along axes {empty} (array shape {tuple(shape)}, axes {axes!r}); "
            "every axis of a region of interest needs at least one pixel"
        )
    return start, stop
