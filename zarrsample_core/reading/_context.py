"""Context windows: a modality's own window size, centred on the patch centre.

HookNet-style target and context pairs: the patch is read from the
reference image, and a modality named in ``window`` (e.g. a coarser level
of the same slide) is read as a window of its own size in its own pixels,
centred where the patch is. Pure integer arithmetic over the
:class:`~..sources._placement.AxisMap` of each axis; the reader, the batch
and the sample spec all take their sizes from here.

The reference window ``[start, stop)`` (pad included) has its centre at the
modality edge ``c = ratio * (start + stop) / 2 + offset``. A window of ``w``
modality pixels starts at ``floor(c - w/2 + 1/2)``: of the windows of that
size, the one whose centre is nearest to ``c`` (ties to the right).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Union

import numpy as np

from .._errors import ZarrsampleError
from ..sources._axes import KNOWN_AXES
from ..sources._placement import AxisMap, map_window

if TYPE_CHECKING:
    from ..sources._collection import ImageCollection

__all__ = [
    "WindowSize",
    "centred_start",
    "check_collection_window",
    "check_window",
    "check_window_names",
    "covered_sizes",
    "modality_window",
    "window_positions",
]

#: One modality's size: an int (every spatial axis it has with extent > 1),
#: one int per axis of ``spatial_axes``, or ``{axis: int}``.
WindowSize = Union[int, tuple[int, ...], dict[str, int]]

_ACCEPTED = "an int, a sequence of ints (one per spatial axis) or a dict {axis: int}"


def _size(value: object, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{where} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ZarrsampleError(f"{where} must be >= 1, got {value}")
    return int(value)


def check_window(value: object) -> dict[str, WindowSize]:
    """``window`` checked and normalised: ``{modality: int | tuple of int | {axis: int}}``.

    Parameters
    ----------
    value : dict or None
        ``{modality name: size}``; a size is an int, a non-empty sequence of
        ints or a dict ``{axis letter: int}``; every int >= 1.

    Returns
    -------
    dict
        A new dict (empty for None): sequences as tuples, axis letters in
        upper case.

    Raises
    ------
    TypeError
        ``value`` is not a dict, a name is not a str, a size or one of its
        entries has the wrong type.
    ZarrsampleError
        A size below 1, an empty sequence or dict, an unknown or repeated
        axis letter.

    Examples
    --------
    >>> check_window({"context": 256, "labels": [1, 64, 64], "other": {"x": 8}})
    {'context': 256, 'labels': (1, 64, 64), 'other': {'X': 8}}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"window must be None or a dict {{modality: size}} such as {{'context': 256}}, got {value!r}"
        )
    out: dict[str, WindowSize] = {}
    for name, size in value.items():
        if not isinstance(name, str):
            raise TypeError(f"window keys must be modality names (str), got {name!r}")
        where = f"window[{name!r}]"
        if isinstance(size, Mapping):
            if not size:
                raise ZarrsampleError(f"{where} must name at least one axis, got {size!r}")
            axes: dict[str, int] = {}
            for axis, v in size.items():
                letter = axis.upper() if isinstance(axis, str) else axis
                if not isinstance(letter, str) or len(letter) != 1 or letter not in KNOWN_AXES:
                    raise ZarrsampleError(
                        f"{where} keys must be axis letters ({', '.join(KNOWN_AXES)}), got {axis!r}"
                    )
                if letter in axes:
                    raise ZarrsampleError(f"{where}={size!r} gives axis {letter!r} twice")
                axes[letter] = _size(v, f"{where}[{letter!r}]")
            out[name] = axes
        elif isinstance(size, Sequence) and not isinstance(size, (str, bytes)):
            if not size:
                raise ZarrsampleError(f"{where} must have one size per spatial axis, got {size!r}")
            out[name] = tuple(_size(v, f"{where}[{i}]") for i, v in enumerate(size))
        elif isinstance(size, Integral) and not isinstance(size, (bool, np.bool_)):
            out[name] = _size(size, where)
        else:
            raise TypeError(f"{where} must be {_ACCEPTED}, got {type(size).__name__} {size!r}")
    return out


def check_window_names(
    window: Mapping[str, WindowSize], names: Sequence[str], who: str, mask: str | None = None
) -> None:
    """Refuse ``window`` naming a modality outside ``names`` (those a read returns).

    Raises
    ------
    ZarrsampleError
        The message lists the modalities ``who`` (a collection) returns,
        and says so when the one named is ``mask``.
    """
    unknown = [n for n in window if n not in names]
    if unknown:
        why = f" ({mask!r} is the mask, which is never returned)" if mask in unknown else ""
        raise ZarrsampleError(
            f"window names modalities {unknown} that {who} does not return{why}; modalities: {list(names)}"
        )


def check_collection_window(
    collection: ImageCollection, window: Mapping[str, WindowSize], spatial_axes: str, who: str, *,
    positions: bool = False,
) -> None:
    """Check ``window`` against a collection before any read (what :meth:`PatchReader.read` would refuse).

    With ``positions``, also refuse a ``"<name>_position"`` key that is a
    modality's name.

    Raises
    ------
    ZarrsampleError
        ``window`` names a modality ``who`` does not return, sizes that do
        not fit ``spatial_axes`` (:func:`covered_sizes`), or a position key
        that would hide a modality.
    """
    names = [n for n in collection if n != collection.mask_name]
    check_window_names(window, names, who, collection.mask_name)
    for name, size in window.items():
        image = collection[name]
        covered_sizes(name, size, image.axes, image.shape, spatial_axes)
        if positions and f"{name}_position" in names:
            raise ZarrsampleError(
                f"window[{name!r}] with return_positions adds the key {name + '_position'!r}, which is "
                f"a modality of {who}; rename that modality"
            )


def covered_sizes(
    name: str, size: WindowSize, axes: str, shape: Sequence[int], spatial_axes: str
) -> dict[str, int]:
    """The axes ``size`` sets for a modality of ``axes`` and ``shape``, ``{axis: pixels}``.

    An int covers every axis of ``spatial_axes`` that the modality has with
    extent > 1; a sequence (one value per axis of ``spatial_axes``) and a
    dict cover the axes they give that the modality has. Other axes keep the
    mapped patch window.

    Raises
    ------
    ZarrsampleError
        A sequence of another length than ``spatial_axes``, a dict naming an
        axis outside ``spatial_axes``.

    Examples
    --------
    >>> covered_sizes("context", 64, "CZYX", (3, 1, 100, 100), "ZYX")
    {'Y': 64, 'X': 64}
    >>> covered_sizes("context", (5, 64, 32), "YX", (100, 100), "ZYX")
    {'Y': 64, 'X': 32}
    """
    if isinstance(size, int):
        return {a: size for a in spatial_axes if a in axes and shape[axes.index(a)] > 1}
    if isinstance(size, tuple):
        if len(size) != len(spatial_axes):
            raise ZarrsampleError(
                f"window[{name!r}]={size!r} has {len(size)} values but spatial_axes={spatial_axes!r} "
                f"has {len(spatial_axes)}"
            )
        return {a: s for a, s in zip(spatial_axes, size) if a in axes}
    outside = sorted(set(size) - set(spatial_axes))
    if outside:
        raise ZarrsampleError(
            f"window[{name!r}]={size!r} names axes {outside} that are not in spatial_axes={spatial_axes!r}"
        )
    return {a: size[a] for a in spatial_axes if a in size and a in axes}


def centred_start(start: int, stop: int, amap: AxisMap, size: int) -> int:
    """First pixel of the ``size``-pixel modality window centred on the reference window ``[start, stop)``.

    ``floor(c - size/2 + 1/2)`` with ``c = ratio * (start + stop) / 2 + offset``
    (the window centre in modality edges), in exact integer arithmetic.

    Examples
    --------
    >>> from fractions import Fraction
    >>> centred_start(0, 256, AxisMap(Fraction(1, 4)), 256)  # centre 32
    -96
    >>> centred_start(0, 3, AxisMap(Fraction(1)), 2)  # centre 1.5: [1, 3) and [0, 2) tie
    1
    """
    r, o, d = amap.integers
    return (r * (int(start) + int(stop)) + 2 * o - d * size + d) // (2 * d)


def modality_window(
    collection: ImageCollection, name: str, start: Sequence[int] | np.ndarray, stop: Sequence[int] | np.ndarray,
    spatial_axes: str, size: WindowSize | None,
) -> dict[str, tuple[int, int]]:
    """``{axis: (start, size)}`` of modality ``name``'s window along the spatial axes it has.

    Axes covered by ``size`` (see :func:`covered_sizes`) get the centred
    window; the others the patch window mapped through the placement
    (:func:`~..sources._placement.map_window`).
    """
    image = collection[name]
    own = {} if size is None else covered_sizes(name, size, image.axes, image.shape, spatial_axes)
    maps = collection.window_maps(name, spatial_axes)
    out = {}
    for axis, s, e, amap in zip(spatial_axes, start, stop, maps):
        if axis not in image.axes:
            continue
        w = own.get(axis)
        out[axis] = map_window(s, e, amap) if w is None else (centred_start(s, e, amap, w), w)
    return out


def window_positions(
    collection: ImageCollection, start: Sequence[int] | np.ndarray, stop: Sequence[int] | np.ndarray,
    spatial_axes: str, window: Mapping[str, WindowSize],
) -> dict[str, np.ndarray]:
    """``{f"{name}_position": (D, 2) int64}``: each windowed modality's ``[start, stop)`` in its pixels.

    One row per axis of ``spatial_axes``; ``[0, 1)`` on an axis the modality
    lacks.
    """
    out = {}
    for name, size in window.items():
        per_axis = modality_window(collection, name, start, stop, spatial_axes, size)
        rows = [per_axis.get(a, (0, 1)) for a in spatial_axes]
        out[f"{name}_position"] = np.array([[s, s + w] for s, w in rows], np.int64).reshape(-1, 2)
    return out
