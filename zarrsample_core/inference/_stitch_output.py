"""Where a Stitcher writes: a given array, a new zarr array, a new OME-Zarr image or a label.

:class:`StitchOutput` checks the output arguments of a Stitcher once,
creates the level-0 array when the Stitcher knows its chunks, and, once
every chunk is written, builds an OME-Zarr output's pyramid, writes its
metadata and registers a label (:meth:`StitchOutput.finish`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from .._checks import check_int
from .._errors import ZarrsampleError
from ..sources._axes import KNOWN_AXES, check_axes
from ..sources._image import Image
from ._labels import (
    LabelTarget,
    check_label_shape,
    create_label,
    finish_label,
    label_chunks,
    label_target,
)
from ._ome_write import (
    AXIS_TYPES,
    Pyramid,
    auto_levels,
    halving_factors,
    max_levels,
    multiscale_metadata,
    ome_attributes,
    output_pyramid,
    reduction,
    write_levels,
)
from ._stitch_checks import int_tuple

__all__ = ["Levels", "StitchOutput", "check_levels", "ome_axes", "resolve_output"]

Levels = int | Literal["auto"] | None


def ome_axes(axes: str | None, ndim: int) -> str:
    """The axes of an OME-Zarr output: ``axes`` checked, or the last letters of "TCZYX".

    OME-Zarr 0.4 and 0.5 want them in the order of "TCZYX", with 2 or 3 of
    ``Z``, ``Y``, ``X``.
    """
    if axes is None:
        if ndim > len(KNOWN_AXES):
            raise ZarrsampleError(
                f"axes: an OME-Zarr output has at most {len(KNOWN_AXES)} dimensions, got shape of {ndim}"
            )
        axes = KNOWN_AXES[-ndim:]
    axes = check_axes(axes, ndim)
    if list(axes) != sorted(axes, key=KNOWN_AXES.index) or not 2 <= sum(a in "ZYX" for a in axes) <= 3:
        raise ZarrsampleError(
            f"axes={axes!r}: an OME-Zarr output has its axes in the order of 'TCZYX' with 2 or 3 of "
            "Z, Y, X (OME-Zarr 0.4/0.5 rules); transpose the output"
        )
    return axes


def check_levels(levels: object) -> Levels:
    """``levels`` if it is None, ``"auto"`` or an int >= 1."""
    if levels is None:
        return None
    if isinstance(levels, str):
        if levels != "auto":
            raise ZarrsampleError(f"levels must be 'auto' or an int >= 1, got {levels!r}")
        return "auto"
    return check_int(levels, "levels", 1)


def resolve_output(
    out: Any, *, shape: tuple[int, ...], chunks: object, dtype: Any, ome: bool, axes: str | None
) -> tuple[str | None, Any, tuple[int, ...] | None, np.dtype, str | None]:
    """Check a Stitcher's ``out``: ``(path, array, chunks, dtype, axes)``.

    A path gives ``array=None`` (created later); a ``zarr.Array`` or
    writeable numpy array of shape ``shape`` gives ``path=None`` and its own
    dtype.
    """
    if isinstance(out, (str, os.PathLike)):
        path = os.fspath(out)
        if Path(path).exists():
            raise FileExistsError(
                f"out={path!r} already exists; Stitcher never overwrites: remove it or choose a new path"
            )
        chunk_shape = None if chunks is None else int_tuple(chunks, "chunks", 1)
        if chunk_shape is not None and len(chunk_shape) != len(shape):
            raise ZarrsampleError(f"chunks must have one entry per axis of shape={shape}, got {chunk_shape}")
        if ome:
            axes = ome_axes(axes, len(shape))
        elif axes is not None:
            axes = check_axes(axes, len(shape))
        return path, None, chunk_shape, np.dtype(dtype), axes
    if isinstance(out, np.ndarray):
        if not out.flags.writeable:
            raise ZarrsampleError("out must be a writeable numpy array, got a read-only one")
    elif not isinstance(out, zarr.Array):
        raise TypeError(f"out must be a path, a zarr.Array or a numpy array, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ZarrsampleError(f"out must have shape={shape}, got an array of shape {tuple(out.shape)}")
    for name, value in (("chunks", chunks), ("axes", axes)):
        if value is not None:
            raise ZarrsampleError(f"{name} applies to a created array only (out a path), got {value!r}")
    if ome:
        raise ZarrsampleError("ome=True needs out to be a path (a new OME-Zarr group), got an array")
    return None, out, None, np.dtype(out.dtype), None


class StitchOutput:
    """The output of a Stitcher, from its arguments (see :class:`._stitch.Stitcher`).

    Attributes
    ----------
    path : str or None
        Where the output is created (a label: ``<label_of>/labels/<name>``);
        None for a given array.
    array : zarr.Array, numpy.ndarray or None
        The level-0 array (None until :meth:`create`).
    chunks : tuple of int or None
        Chunk shape of a created array, if known before the first patch.
    dtype : numpy.dtype
        Element type of the output.
    """

    def __init__(
        self, out: Any, *, shape: tuple[int, ...], chunks: object, dtype: Any, ome: bool, axes: str | None,
        like: Any, levels: object, label_of: Any, name: Any,
    ) -> None:
        self.shape = shape
        self._levels = check_levels(levels)
        self._like: Image | None = None
        self._label: LabelTarget | None = None
        self._group: zarr.Group | None = None
        self._pyramid: Pyramid | None = None
        if label_of is not None:
            self._resolve_label(out, chunks=chunks, dtype=dtype, axes=axes, like=like, label_of=label_of, name=name)
            return
        if name is not None:
            raise ZarrsampleError(f"name names a label of label_of; pass label_of= too, got name={name!r}")
        if like is not None:
            if not isinstance(like, Image):
                raise TypeError(f"like must be a zarrsample Image (from open_image), got {type(like).__name__}")
            if not ome:
                raise ZarrsampleError("like places an OME-Zarr output: pass ome=True with like=, got ome=False")
            if axes is None and like.ndim == len(shape):
                axes = like.axes
        if self._levels is not None and not ome:
            raise ZarrsampleError(f"levels applies to OME-Zarr outputs (ome=True or label_of), got levels={levels!r}")
        self._like, self._ome = like, ome
        self.path, self.array, self.chunks, self.dtype, self.axes = resolve_output(
            out, shape=shape, chunks=chunks, dtype=dtype, ome=ome, axes=axes
        )
        if isinstance(self._levels, int) and self.axes is not None:
            most = max_levels(shape, self._spatial())
            if self._levels > most:
                raise ZarrsampleError(
                    f"levels={self._levels} is more than the {most} levels of shape={shape} (axes "
                    f"{self.axes!r}) halved until its spatial axes are one pixel"
                )

    def _resolve_label(
        self, out: Any, *, chunks: object, dtype: Any, axes: str | None, like: Any, label_of: Any, name: Any
    ) -> None:
        if out is not None:
            raise ZarrsampleError(
                f"out: a label is written to <label_of>/labels/<name>; pass no out with label_of, got {out!r}"
            )
        if like is not None:
            raise ZarrsampleError("like: a label takes the placement of label_of's image; pass like or label_of")
        target = self._label = label_target(label_of, name)
        if axes is not None and str(axes).lower() != "".join(target.axis_names).lower():
            raise ZarrsampleError(
                f"axes={axes!r}: a label has the axes of label_of's image, {list(target.axis_names)}"
            )
        check_label_shape(target, self.shape)
        n = len(target.shapes)
        if isinstance(self._levels, int) and self._levels != n:
            raise ZarrsampleError(
                f"levels={self._levels}: a label has as many levels as its image ({n} in {target.image})"
            )
        chunk_shape = label_chunks(target, self.shape) if chunks is None else int_tuple(chunks, "chunks", 1)
        if len(chunk_shape) != len(self.shape):
            raise ZarrsampleError(f"chunks must have one entry per axis of shape={self.shape}, got {chunk_shape}")
        self._ome = True
        self.path, self.array, self.chunks, self.dtype, self.axes = (
            target.path, None, chunk_shape, np.dtype(dtype), None
        )

    def _spatial(self) -> tuple[bool, ...]:
        return tuple(AXIS_TYPES[a] == "space" for a in self.axes or "")

    def create(self, chunks: tuple[int, ...]) -> Any:
        """Create the level-0 array at :attr:`path` (a group around it for OME-Zarr) and return it."""
        assert self.path is not None
        if self._label is not None:
            self._group, self.array = create_label(self._label, self.shape, chunks, self.dtype)
            return self.array
        names = None if self.axes is None else tuple(self.axes.lower())
        kwargs: dict[str, Any] = dict(
            shape=self.shape, chunks=chunks, dtype=self.dtype, fill_value=0, dimension_names=names
        )
        if not self._ome:
            self.array = zarr.create_array(store=self.path, zarr_format=3, **kwargs)
            return self.array
        assert self.axes is not None
        spatial = self._spatial()
        count = auto_levels(self.shape, chunks, spatial) if self._levels == "auto" else (self._levels or 1)
        self._pyramid = output_pyramid(self._like, self.axes, self.shape, halving_factors(self.shape, spatial, count))
        self._group = zarr.create_group(store=self.path, zarr_format=3, attributes=self._attributes(levels=1))
        self.array = self._group.create_array("0", **kwargs)
        return self.array

    def _attributes(self, *, levels: int) -> dict[str, Any]:
        assert self._pyramid is not None and self.path is not None
        p = self._pyramid
        first = Pyramid(p.axes, p.shape, p.factors[:levels], p.scale, p.translation, p.outer)
        entry = multiscale_metadata(Path(self.path).name, first, reduction(self.dtype), "0.5")
        return ome_attributes("0.5", {"multiscales": [entry]})

    def finish(self) -> None:
        """Once level 0 is written: reduced levels, full metadata, the label's registration."""
        if self._group is None:
            return
        if self._label is not None:
            finish_label(self._label, self._group, self.array)
            return
        assert self._pyramid is not None
        if len(self._pyramid.factors) > 1:
            write_levels(self._group, self.array, self._pyramid, reduction(self.dtype))
            self._group.attrs.put(self._attributes(levels=len(self._pyramid.factors)))
