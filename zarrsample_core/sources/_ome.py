"""Zarr metadata resolution: OME-Zarr multiscales (NGFF v0.1 to v0.5), axes.

Only what opening an image needs is parsed: the axis names and the path of
each pyramid level of the first multiscale. v0.4 and older keep the metadata
in the group attributes (``.zattrs`` for zarr v2); v0.5 keeps it under the
``"ome"`` key of the zarr v3 group attributes (``zarr.json``).
``resolve_node`` walks from an opened zarr node to the array to read
(``data_group``, pyramid ``level``); ``resolve_axes`` settles the axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zarr

from .._errors import ZarrsampleError, spelled
from ._axes import KNOWN_AXES, check_axes, guess_axes
from ._ome_transforms import multiscale_placement, system_axes, transform
from ._placement import Placement
from ._validate import check_multiscale

__all__ = [
    "Multiscale",
    "axis_letters",
    "join_path",
    "label_names",
    "read_multiscale",
    "resolve_axes",
    "resolve_node",
]

#: NGFF versions without an ``axes`` field: every image is 5D TCZYX.
_IMPLICIT_TCZYX_VERSIONS = ("0.1", "0.2")
_MAX_LISTED = 50


@dataclass(frozen=True)
class Multiscale:
    """The first multiscale of an OME-Zarr image group.

    Attributes
    ----------
    version : str or None
        The NGFF version string found in the metadata, if any.
    axis_names : tuple of str or None
        Axis names as written in the metadata (any case), or None when the
        metadata has no axes.
    paths : tuple of str
        Path of each pyramid level relative to the group, finest first.
    scales : tuple
        The ``scale`` coordinate transformation of each level as written
        (unchecked: see :func:`._validate.check_multiscale`), or None where
        a level has none.
    translations : tuple
        The ``translation`` of each level as written, or None where absent.
    units : tuple of (str or None), or None
        The ``unit`` of each axis as written, or None without axes.
    outer : tuple
        ``(scale, translation)`` of the multiscale's own
        ``coordinateTransformations`` (applied after each level's), each
        None where absent.
    """

    version: str | None
    axis_names: tuple[str, ...] | None
    paths: tuple[str, ...]
    scales: tuple[Any, ...] = ()
    translations: tuple[Any, ...] = ()
    units: tuple[str | None, ...] | None = None
    outer: tuple[Any, Any] = (None, None)


def _malformed(where: str, rule: str, value: object) -> ZarrsampleError:
    return ZarrsampleError(f"OME-Zarr metadata of {where} is malformed: {rule}, got {value!r}")


def read_multiscale(attrs: Mapping[str, Any], *, where: str) -> Multiscale | None:
    """Parse the first OME-Zarr multiscale of a group's attributes.

    Parameters
    ----------
    attrs : mapping
        The group attributes (``.zattrs`` content for zarr v2, the
        ``attributes`` of ``zarr.json`` for zarr v3).
    where : str
        The group's name, used in error messages.

    Returns
    -------
    Multiscale or None
        None when the attributes hold no ``multiscales`` entry (not an
        OME-Zarr image group).

    Raises
    ------
    ZarrsampleError
        A ``multiscales`` entry exists but does not follow the NGFF layout
        (no datasets, a dataset without a string path, bad axes).

    Examples
    --------
    >>> attrs = {"ome": {"version": "0.5", "multiscales": [
    ...     {"axes": [{"name": "y"}, {"name": "x"}],
    ...      "datasets": [{"path": "0"}, {"path": "1"}]}]}}
    >>> read_multiscale(attrs, where="img.zarr")  # doctest: +NORMALIZE_WHITESPACE
    Multiscale(version='0.5', axis_names=('y', 'x'), paths=('0', '1'), scales=(None, None),
               translations=(None, None), units=(None, None), outer=(None, None))
    """
    ome = attrs.get("ome")
    version: object = None
    if isinstance(ome, Mapping) and "multiscales" in ome:
        version = ome.get("version")
        multiscales = ome["multiscales"]
    elif "multiscales" in attrs:
        multiscales = attrs["multiscales"]
    else:
        return None
    if not isinstance(multiscales, Sequence) or isinstance(multiscales, str) or not multiscales:
        raise _malformed(where, "'multiscales' must be a non-empty list", multiscales)
    first = multiscales[0]
    if not isinstance(first, Mapping):
        raise _malformed(where, "'multiscales[0]' must be an object", first)
    if version is None:
        version = first.get("version")
    version = None if version is None else str(version)

    datasets = first.get("datasets")
    if not isinstance(datasets, Sequence) or isinstance(datasets, str) or not datasets:
        raise _malformed(where, "'multiscales[0].datasets' must be a non-empty list", datasets)
    paths, scales, translations = [], [], []
    for i, dataset in enumerate(datasets):
        path = dataset.get("path") if isinstance(dataset, Mapping) else None
        if not isinstance(path, str) or not path.strip("/"):
            raise _malformed(where, f"'multiscales[0].datasets[{i}].path' must be a string", dataset)
        paths.append(path.strip("/"))
        scales.append(transform(dataset, "scale"))
        translations.append(transform(dataset, "translation"))

    raw_axes = first.get("axes")
    if raw_axes is None:  # 0.6: the axes of the coordinate system the levels map into
        raw_axes = system_axes(first)
    axis_names: tuple[str, ...] | None
    units = None
    if raw_axes is None:
        axis_names = tuple("tczyx") if version in _IMPLICIT_TCZYX_VERSIONS else None
    elif isinstance(raw_axes, Sequence) and not isinstance(raw_axes, str):
        names = []
        for i, axis in enumerate(raw_axes):
            name = axis.get("name") if isinstance(axis, Mapping) else axis
            if not isinstance(name, str):
                raise _malformed(
                    where, f"'multiscales[0].axes[{i}]' must be a string or have a 'name'", axis
                )
            names.append(name)
        axis_names = tuple(names)
        units = tuple(
            axis.get("unit") if isinstance(axis, Mapping) and isinstance(axis.get("unit"), str) else None
            for axis in raw_axes
        )
    else:
        raise _malformed(where, "'multiscales[0].axes' must be a list", raw_axes)
    return Multiscale(
        version=version, axis_names=axis_names, paths=tuple(paths), scales=tuple(scales),
        translations=tuple(translations), units=units,
        outer=(transform(first, "scale"), transform(first, "translation")),
    )


def axis_letters(names: Sequence[str | None] | None, ndim: int) -> str | None:
    """Join axis names into an axes string if they are usable as one.

    Parameters
    ----------
    names : sequence of str or None, or None
        Axis names from metadata (OME-Zarr ``axes`` or zarr v3
        ``dimension_names``).
    ndim : int
        The number of dimensions of the array they describe.

    Returns
    -------
    str or None
        The upper-cased letters, or None when the names cannot describe the
        array: missing, a count different from ``ndim``, a name that is not a
        single letter from ``KNOWN_AXES``, or a repeated letter.

    Examples
    --------
    >>> axis_letters(["c", "y", "x"], 3)
    'CYX'
    >>> axis_letters(["channel", "y", "x"], 3) is None
    True
    """
    if names is None or len(names) != ndim:
        return None
    if not all(isinstance(n, str) and len(n) == 1 and n.upper() in KNOWN_AXES for n in names):
        return None
    letters = "".join(str(n).upper() for n in names)
    if len(set(letters)) != len(letters):
        return None
    return letters


def join_path(label: str, path: str) -> str:
    """``label/path`` without doubled or leading slashes (either may be empty)."""
    if not label:
        return path
    return f"{label.rstrip('/')}/{path}" if path else label


def _listing(group: zarr.Group, prefix: str) -> tuple[str, str | None]:
    """'arrays [...] and groups [...]' under ``group``, and its first array's path, for error messages."""
    try:
        members = sorted(group.members(max_depth=None), key=lambda m: m[0])
    except Exception as exc:  # noqa: BLE001 - only the message depends on listing
        return f"its members could not be listed ({type(exc).__name__}: {exc})", None
    found, first = {}, None
    for kind, cls in (("arrays", zarr.Array), ("groups", zarr.Group)):
        paths = [join_path(prefix, p) for p, node in members if isinstance(node, cls)]
        more = f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
        found[kind] = f"{paths[:_MAX_LISTED]}{more}"
        first = paths[0] if kind == "arrays" and paths else first
    return f"it holds arrays {found['arrays']} and groups {found['groups']}", first


Resolved = tuple[zarr.Array, int, tuple[tuple[int, ...], ...], Any, str, "tuple[Placement, ...] | None"]


def resolve_node(
    node: zarr.Array | zarr.Group, where: str, data_group: str | None, level: int | None
) -> Resolved:
    """Walk from an opened zarr node to the array to read.

    Parameters
    ----------
    node : zarr.Array or zarr.Group
        The opened source.
    where : str
        The node's name, for messages.
    data_group : str or None
        Path of an array or OME-Zarr image group inside ``node``.
    level : int or None
        OME-Zarr pyramid level; None means 0.

    Returns
    -------
    array : zarr.Array
    level : int
    levels : tuple of tuple of int
        Stored shape of every pyramid level (one entry for a plain array).
    axis_names : sequence of str or None
        OME-Zarr axis names or zarr v3 ``dimension_names``, as stored.
    names_where : str
        Which metadata the names come from, for messages.
    placement : tuple of Placement or None
        Each axis' pixel size and position from the OME-Zarr coordinate
        transformations of the level, or None without them.

    Raises
    ------
    KeyError
        ``data_group`` does not exist; the message lists the arrays and
        groups that do.
    ZarrsampleError
        A group that is neither OME-Zarr nor given a ``data_group`` (the
        message lists its arrays), ``level`` out of range, or OME-Zarr
        metadata pointing at missing arrays.
    """
    if data_group is not None:
        if not isinstance(node, zarr.Group):
            raise ZarrsampleError(
                f"data_group={data_group!r} needs a group source, but {where} is an array"
            )
        try:
            target = node[data_group]
        except KeyError:
            raise KeyError(
                f"data_group={data_group!r} does not exist in {where}; {_listing(node, '')[0]}"
            ) from None
        except ValueError as exc:  # zarr refuses '.'/'..' segments and the like
            raise ZarrsampleError(
                f"data_group={data_group!r} is not a valid path inside {where}: {exc}"
            ) from None
        parent_path, _, leaf = data_group.rpartition("/")
        parent = node[parent_path] if parent_path else node
        if isinstance(target, zarr.Array) and isinstance(parent, zarr.Group):
            parent_where = join_path(where, parent_path)
            multiscale = read_multiscale(parent.attrs.asdict(), where=parent_where)
            if multiscale is not None and leaf in multiscale.paths:
                index = multiscale.paths.index(leaf)
                if level is not None and level != index:
                    raise ZarrsampleError(
                        f"level={level} disagrees with data_group={data_group!r}, which is "
                        f"level {index} of the OME-Zarr image {parent_where}; give only one"
                    )
                return _pick_level(parent, multiscale, index, parent_where)
        node, where = target, join_path(where, data_group)
    if isinstance(node, zarr.Array):
        if level not in (None, 0):
            raise ZarrsampleError(
                f"level={level} is out of range for {where}: a single array, not an OME-Zarr "
                "multiscale image, has only level 0; available levels: [0]"
            )
        names = getattr(node.metadata, "dimension_names", None)
        return node, 0, (tuple(node.shape),), names, f"zarr dimension_names of {where}", None
    multiscale = read_multiscale(node.attrs.asdict(), where=where)
    if multiscale is None:
        what = f"data_group={data_group!r} is" if data_group else f"{where} is"
        listing, first = _listing(node, data_group or "")
        suggestion = f"pass e.g. {spelled('data_group', first)}, " if first is not None else "pass data_group="
        raise ZarrsampleError(
            f"{what} a zarr group without OME-Zarr multiscales metadata; {suggestion}the path of one of its "
            f"arrays: {listing}", hints=[] if first is None else [("data_group", first)],
        )
    index = 0 if level is None else int(level)
    if not 0 <= index < len(multiscale.paths):
        raise ZarrsampleError(
            f"level={level} is out of range for the OME-Zarr image {where}: available levels are "
            f"{list(range(len(multiscale.paths)))} (paths {list(multiscale.paths)})"
        )
    return _pick_level(node, multiscale, index, where)


def _pick_level(group: zarr.Group, multiscale: Multiscale, index: int, where: str) -> Resolved:
    arrays = []
    for path in multiscale.paths:
        try:
            array = group[path]
        except KeyError:
            array = None
        if not isinstance(array, zarr.Array):
            raise ZarrsampleError(
                f"the OME-Zarr metadata of {where} lists level path {path!r}, but there is no "
                f"array at {join_path(where, path)}"
            )
        arrays.append(array)
    levels = tuple(tuple(int(n) for n in a.shape) for a in arrays)
    check_multiscale(multiscale.scales, multiscale.axis_names, multiscale.paths, levels, where)
    placement = multiscale_placement(multiscale, index, len(levels[index]), where)
    return arrays[index], index, levels, multiscale.axis_names, f"OME-Zarr metadata of {where}", placement


def resolve_axes(
    axes: object, names: Any, names_where: str, shape: tuple[int, ...], name: str
) -> str:
    """The image's axes from an explicit value and/or axis names in metadata.

    Parameters
    ----------
    axes : str or None
        The value given by the user.
    names : sequence of str or None
        Axis names from metadata (used when single distinct axis letters).
    names_where : str
        Which metadata ``names`` come from, for messages.
    shape : tuple of int
        Shape of the array.
    name : str
        The array's name, for messages.

    Returns
    -------
    str
        Upper-case axis letters, one per dimension.

    Raises
    ------
    TypeError
        ``axes`` is not a string.
    ZarrsampleError
        ``axes`` is invalid for the array, disagrees with usable metadata, or
        is missing while the metadata gives no usable names.
    """
    ndim = len(shape)
    if ndim == 0:
        raise ZarrsampleError(f"{name} is 0-dimensional; an image needs at least one axis")
    names = None if names is None else tuple(names)
    found = axis_letters(names, ndim)
    if axes is not None:
        letters = check_axes(axes, ndim)
        if found is not None and found != letters:
            raise ZarrsampleError(
                f"axes={axes!r} disagrees with the {names_where}, which gives {found!r}; "
                f"omit axes or pass axes={found!r}"
            )
        return letters
    if found is not None:
        return found
    unusable = ""
    if names is not None and any(n is not None for n in names):
        unusable = (
            f"; the {names_where} are {list(names)}, not {ndim} distinct letters "
            f"from {KNOWN_AXES}"
        )
    likely = guess_axes(shape)
    raise ZarrsampleError(
        f"axes is required for {name}: it has ndim={ndim} (shape {shape}) and no usable axis "
        f"metadata{unusable}; pass e.g. {spelled('axes', likely)}", hints=[("axes", likely)],
    )


def label_names(attrs: Mapping[str, Any]) -> list[str]:
    """The names a ``labels`` group's attributes list (0.5 under ``ome``, 0.4 at the top level)."""
    ome = attrs.get("ome")
    holder = ome if isinstance(ome, Mapping) and "labels" in ome else attrs
    names = holder.get("labels", [])
    return [str(n) for n in names] if isinstance(names, list) else []
