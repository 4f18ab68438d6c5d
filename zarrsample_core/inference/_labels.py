"""Labels of an existing OME-Zarr image: where a label goes, its levels, its registration.

A label is written as ``<image>/labels/<name>``: a multiscale image with the
image's axes and as many levels as the image (the OME-Zarr 0.4 and 0.5
specifications require it), ``image-label`` metadata pointing back to the
image (``source.image = "../../"``), and its name appended to the ``labels``
group's list (the group is created if absent). The label is written in the
image's version: 0.4 on zarr v2, 0.5 on zarr v3.

Nothing else of the image is written: the label's group and arrays are
opened at their own paths, so zarr writes no parent metadata. The one
exception is consolidated metadata (ngff-zarr writes it): a reader that
trusts it (zarr's default ``open_group``) would not see the label, so it is
updated (the root ``zarr.json`` for v3, ``.zmetadata`` for v2); the image's
attributes stay as they were.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import zarr
from zarr.errors import ContainsArrayError, NodeNotFoundError

from .._errors import ZarrsampleError
from ..sources._ome import label_names, read_multiscale
from ..sources._ome_transforms import transform_vector
from ._ome_write import (
    Pyramid,
    multiscale_metadata,
    ome_attributes,
    reduction,
    write_levels,
)

__all__ = [
    "LabelTarget",
    "check_label_shape",
    "create_label",
    "finish_label",
    "label_chunks",
    "label_pyramid",
    "label_target",
]

_SUPPORTED = ((3, "0.5"), (2, "0.4"))


@dataclass(frozen=True)
class LabelTarget:
    """An OME-Zarr image a label is added to, and what of it the label needs.

    Attributes
    ----------
    image : str
        The image group's path.
    name : str
        The label's name under ``labels``.
    zarr_format, version : int, str
        ``(3, "0.5")`` or ``(2, "0.4")``.
    axes : tuple of dict
        The image's axes as written.
    shapes : tuple of tuple of int
        The shape of each of the image's levels, finest first.
    chunks : tuple of int
        The chunk shape of the image's level 0.
    scales, translations : tuple of tuple of Fraction
        Each level's scale and translation (0 where none is written).
    outer : tuple of dict or None
        The multiscale's own ``coordinateTransformations``, as written.
    """

    image: str
    name: str
    zarr_format: Literal[2, 3]
    version: str
    axes: tuple[dict[str, Any], ...]
    shapes: tuple[tuple[int, ...], ...]
    chunks: tuple[int, ...]
    scales: tuple[tuple[Fraction, ...], ...]
    translations: tuple[tuple[Fraction, ...], ...]
    outer: tuple[dict[str, Any], ...] | None

    @property
    def path(self) -> str:
        """The label group's path, ``<image>/labels/<name>``."""
        return os.path.join(self.image, "labels", self.name)

    @property
    def spatial(self) -> tuple[bool, ...]:
        """Which axes are spatial (type ``"space"``, or named z, y or x without a type)."""
        return tuple(a.get("type", "space" if str(a.get("name")).lower() in "zyx" else None) == "space"
                     for a in self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(str(a.get("name")) for a in self.axes)


def _not_an_image(path: str, why: str) -> ZarrsampleError:
    return ZarrsampleError(f"label_of={path!r} must be an OME-Zarr image group (0.4 or 0.5), but {why}")


def _open(path: str) -> zarr.Group | None:
    try:  # use_consolidated=False: the members actually stored, not a stale consolidated copy
        return zarr.open_group(store=path, mode="r", use_consolidated=False)
    except (FileNotFoundError, NodeNotFoundError):
        return None


def label_target(label_of: Any, name: Any) -> LabelTarget:
    """Check ``label_of`` (an OME-Zarr image group) and ``name`` (a new label), and describe them.

    Raises
    ------
    TypeError
        ``label_of`` is not a path or ``name`` not a string.
    ZarrsampleError
        ``label_of`` is not an OME-Zarr 0.4 (zarr v2) or 0.5 (zarr v3) image
        group, or ``name`` is not one path segment.
    FileExistsError
        ``name`` is listed in the image's ``labels`` or its path exists.
    """
    if not isinstance(label_of, (str, os.PathLike)):
        raise TypeError(f"label_of must be the path of an OME-Zarr image group, got {type(label_of).__name__}")
    path = os.fspath(label_of)
    if not isinstance(name, str):
        raise TypeError(f"name must be a string (the label's name under labels/), got {name!r}")
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ZarrsampleError(f"name must be one path segment (the label's name under labels/), got {name!r}")
    try:
        group = _open(path)
    except ContainsArrayError:
        raise _not_an_image(path, "it is an array: pass the group whose multiscales list it") from None
    if group is None:
        raise _not_an_image(path, "there is no zarr group there")
    attrs: dict[str, Any] = dict(group.attrs.asdict())
    multiscale = read_multiscale(attrs, where=path)
    if multiscale is None:
        raise _not_an_image(path, f"its attributes have no 'multiscales' (keys: {sorted(attrs)})")
    fmt: Literal[2, 3] = 3 if group.metadata.zarr_format == 3 else 2
    if (fmt, multiscale.version) not in _SUPPORTED:
        raise _not_an_image(path, f"it is OME-Zarr {multiscale.version} on zarr v{fmt} (0.4 on v2 or 0.5 on v3)")
    raw = attrs["ome"]["multiscales"][0] if fmt == 3 else attrs["multiscales"][0]
    axes = tuple(dict(a) if isinstance(a, Mapping) else {"name": str(a)} for a in raw.get("axes", ()))
    found = [group.get(p) for p in multiscale.paths]
    arrays = [a for a in found if isinstance(a, zarr.Array)]
    if len(arrays) < len(found) or not axes:
        missing = [p for p, a in zip(multiscale.paths, found) if not isinstance(a, zarr.Array)]
        raise _not_an_image(path, f"its multiscale lacks axes or the arrays {missing}")
    shapes = tuple(tuple(int(n) for n in a.shape) for a in arrays)
    if any(len(s) != len(axes) for s in shapes):
        names = [a.get("name") for a in axes]
        raise _not_an_image(path, f"its levels {shapes} do not have the {len(axes)} axes {names}")
    scales, shifts = [], []
    n = len(axes)
    for k, (scale, shift) in enumerate(zip(multiscale.scales, multiscale.translations)):
        shift = [0] * n if shift is None else shift
        try:
            exact_scale = transform_vector(scale, n, f"the scale of level {k}", path, positive=True)
            exact_shift = transform_vector(shift, n, f"the translation of level {k}", path, positive=False)
        except ZarrsampleError:
            exact_scale = None
        if exact_scale is None or exact_shift is None:
            raise _not_an_image(path, f"level {k}'s scale {scale!r} and translation {shift!r} are not "
                                f"{n} numbers each (scales positive)")
        scales.append(tuple(exact_scale))
        shifts.append(tuple(exact_shift))
    outer = raw.get("coordinateTransformations")
    target = LabelTarget(
        path, name, fmt, str(multiscale.version), axes, shapes, tuple(arrays[0].chunks),
        tuple(scales), tuple(shifts), tuple(dict(t) for t in outer) if outer else None,
    )
    labels = _open(os.path.join(path, "labels"))
    listed = [] if labels is None else label_names(labels.attrs.asdict())
    if name in listed:
        raise FileExistsError(
            f"name={name!r} is already a label of {path} (labels lists {listed}); "
            "Stitcher never overwrites: choose another name"
        )
    if os.path.lexists(target.path):
        raise FileExistsError(
            f"name={name!r}: {target.path} already exists (labels lists {listed}); "
            "Stitcher never overwrites: remove it or choose another name"
        )
    return target


def check_label_shape(target: LabelTarget, shape: tuple[int, ...]) -> None:
    """A label has the image's axes: spatial sizes those of level 0, other sizes the image's or 1."""
    image = target.shapes[0]
    ok = len(shape) == len(image) and all(
        n == m or (not sp and n == 1) for n, m, sp in zip(shape, image, target.spatial)
    )
    if not ok:
        raise ZarrsampleError(
            f"shape={shape} must fit label_of's image, axes {list(target.axis_names)} of shape {image}: "
            "spatial sizes equal, other sizes equal or 1"
        )


def label_chunks(target: LabelTarget, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Default chunks of a label: the image's on spatial axes, whole on the others."""
    return tuple(min(c, n) if sp else n for c, n, sp in zip(target.chunks, shape, target.spatial))


def label_pyramid(target: LabelTarget, shape: tuple[int, ...]) -> Pyramid:
    """The label's levels: as many as the image's, each reduced like the image's own levels.

    Level ``k``'s factor on a spatial axis is the image's scale ratio
    ``scale_k / scale_0`` rounded to a power of two (never less than the
    level before's), so the label of an image halved with floor sizes
    (ngff-zarr) gets the image's transforms exactly, with ceil sizes.
    """
    base, factors = target.scales[0], [tuple(1 for _ in shape)]
    for scale in target.scales[1:]:
        factors.append(tuple(
            max(p, 2 ** max(0, round(math.log2(s / b)))) if sp else 1
            for s, b, p, sp in zip(scale, base, factors[-1], target.spatial)
        ))
    return Pyramid(target.axes, shape, tuple(factors), target.scales[0], target.translations[0], target.outer)


def _label_attributes(target: LabelTarget, pyramid: Pyramid, dtype: np.dtype) -> dict[str, Any]:
    entries = {
        "multiscales": [multiscale_metadata(target.name, pyramid, reduction(dtype), target.version)],
        "image-label": {"version": target.version, "source": {"image": "../../"}},
    }
    return ome_attributes(target.version, entries)


def create_label(
    target: LabelTarget, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype
) -> tuple[zarr.Group, Any]:
    """Create the label group (one level in its metadata) and its level-0 array ``"0"``."""
    pyramid = label_pyramid(target, shape)
    one = Pyramid(pyramid.axes, shape, pyramid.factors[:1], pyramid.scale, pyramid.translation, pyramid.outer)
    group = zarr.create_group(store=target.path, zarr_format=target.zarr_format,
                              attributes=_label_attributes(target, one, dtype))
    kwargs: dict[str, Any] = dict(shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    if target.zarr_format == 3:
        kwargs["dimension_names"] = target.axis_names
    else:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    return group, group.create_array("0", **kwargs)


def finish_label(target: LabelTarget, group: zarr.Group, level0: Any) -> None:
    """Write the label's reduced levels and metadata, then register it in ``labels``.

    Registration comes last, so a failure before leaves no listed,
    half-written label. Then consolidated metadata, if the image has some,
    is updated.
    """
    dtype = np.dtype(level0.dtype)
    pyramid = label_pyramid(target, tuple(level0.shape))
    write_levels(group, level0, pyramid, reduction(dtype))
    group.attrs.put(_label_attributes(target, pyramid, dtype))
    labels_path = os.path.join(target.image, "labels")
    labels = _open(labels_path)
    if labels is None:
        labels = zarr.create_group(store=labels_path, zarr_format=target.zarr_format)
    else:
        labels = zarr.open_group(store=labels_path, mode="r+", use_consolidated=False)
    old = labels.attrs.asdict()
    listed = label_names(old)
    if target.name in listed:
        raise FileExistsError(
            f"name={target.name!r} was registered in {labels_path} meanwhile (labels lists {listed})"
        )
    labels.attrs.put(ome_attributes(target.version, {"labels": [*listed, target.name]}, old))
    _update_consolidated(target, pyramid)


def _update_consolidated(target: LabelTarget, pyramid: Pyramid) -> None:
    """Add the label to the image's consolidated metadata, if it has some."""
    if target.zarr_format == 3:
        with open(os.path.join(target.image, "zarr.json")) as fh:
            if json.load(fh).get("consolidated_metadata") is None:
                return
        with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec"
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(target.image, zarr_format=3)
        return
    # v2: zarr.consolidate_metadata would also rewrite the root's .zattrs and .zgroup, so edit
    # .zmetadata: add the metadata documents of the labels group and of the new label.
    consolidated = os.path.join(target.image, ".zmetadata")
    if not os.path.exists(consolidated):
        return
    with open(consolidated) as fh:
        doc = json.load(fh)
    keys = ["labels/.zgroup", "labels/.zattrs"] + [
        f"labels/{target.name}/{p}" for p in _v2_documents(len(pyramid.factors))
    ]
    for key in keys:
        file = os.path.join(target.image, *key.split("/"))
        if os.path.exists(file):
            with open(file) as fh:
                doc.setdefault("metadata", {})[key] = json.load(fh)
    tmp = consolidated + ".zarrsample-tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=4, sort_keys=True)
    os.replace(tmp, consolidated)


def _v2_documents(levels: int) -> Sequence[str]:
    return [".zgroup", ".zattrs"] + [f"{k}/{name}" for k in range(levels) for name in (".zarray", ".zattrs")]
