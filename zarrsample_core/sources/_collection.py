"""ImageCollection: the modalities of one sample (image, mask, labels, ...)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from typing import Any, Protocol, cast

import numpy as np

from .._errors import ChunkReadError, ZarrsampleError
from ._axes import check_axes
from ._chunk_errors import chunk_read_error, failed_chunk
from ._collection_checks import (
    MASK_KEY,
    check_aspect,
    check_mask_values,
    check_modality_names,
    stored_extent,
)
from ._placement import AxisMap, axis_map, axis_placement

__all__ = ["BlockReader", "ImageCollection", "ImageLike"]

#: Reads mask rows ``[lo, hi)`` along the first spatial axis, all of every other
#: spatial axis, as an array with one dimension per spatial axis.
BlockReader = Callable[[int, int], np.ndarray]


class ImageLike(Protocol):
    """What :class:`ImageCollection` and :class:`~zarrsample_core.PatchReader` use of an image.

    :class:`~zarrsample_core.Image` (see :func:`~zarrsample_core.open_image`)
    satisfies it. The members are read-only; ``read`` takes one slice per axis
    (``axes`` order, ROI-relative coordinates, step None or 1) and returns a
    new array of shape ``stop - start`` per axis and dtype ``dtype``.
    """

    @property
    def name(self) -> str: ...
    @property
    def axes(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def chunks(self) -> tuple[int, ...]: ...
    @property
    def origin(self) -> tuple[int, ...]: ...
    @property
    def backend(self) -> str: ...

    def read(self, selection: tuple[slice, ...]) -> np.ndarray: ...


class ImageCollection:
    """The aligned modalities of one image: reference, optional mask, others.

    Parameters
    ----------
    modalities : mapping of str to Image
        Modality name to :class:`Image` (see :func:`open_image`). The first key
        is the reference (usually ``"images"``): patch positions are in its
        pixels. The key ``"masks"``, if present, is the sampling mask: a mask
        pixel covers its footprint where it is non-zero, whatever the dtype
        (a float 0.3 covers as fully as 1: threshold probability maps
        first). Other keys (``"labels"``, ...) are read alongside.
    spatial_axes : str
        The axes patches are taken along (default ``"ZYX"``). Axes missing
        from a modality count as size 1.

    Raises
    ------
    TypeError
        ``modalities`` is not a non-empty mapping of names to images.
    ZarrsampleError
        A modality has a spatial axis that the reference lacks, or the mask
        has a non-spatial axis longer than 1.

    Warns
    -----
    ZarrsampleWarning
        No key is ``"masks"`` but one looks meant to be (``"mask"``,
        ``"tissue_mask"``, ``"msks"``: zarrdataset takes the first key
        containing ``"mask"``); a modality has another aspect ratio than the
        reference (e.g. a 77 x 33 mask on a 3000 x 2000 image, or a
        transposed one: no single downsampling factor gives its shape, and
        no placement metadata says so); a float mask holds values other than
        0 and 1 (when planning reads it).

    Notes
    -----
    A reference window is mapped to each modality through both images'
    placements (:attr:`Image.placement`: OME-Zarr ``scale`` and
    ``translation``, TIFF pixel sizes), exactly (:meth:`window_maps`): level
    1 of an odd-sized pyramid (1001 px at scale 1 -> 500 px at scale 2,
    translation 0.5) gets window 64 for reference window 128, where the
    ratio of shapes would say 63. When either image has no placement, or
    their units cannot be compared, or their physical extents disagree by
    more than two pixels (metadata that contradicts the shapes), the ratio
    of shapes is used with corners aligned, and a warning says why in the
    last case. Mask coverage (planning) uses the ratio of shapes, exactly:
    a 1/16 tissue mask, a 2x finer mask, or a non-integer ratio (image
    1000 px, mask 333 px) are all allowed.

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, open_image
    >>> coll = ImageCollection({
    ...     "images": open_image(np.zeros((3, 64, 48), np.uint8), axes="CYX"),
    ...     "masks": open_image(np.ones((4, 3), bool), axes="YX"),
    ... }, spatial_axes="YX")
    >>> coll.spatial_shape
    (64, 48)
    >>> coll.scale("masks")
    (Fraction(1, 16), Fraction(1, 16))
    """

    def __init__(self, modalities: Mapping[str, ImageLike], spatial_axes: str = "ZYX") -> None:
        if not isinstance(modalities, Mapping) or not modalities:
            raise TypeError(
                f"modalities must be a non-empty mapping of names to images, got {modalities!r}"
            )
        for key, image in modalities.items():
            if not isinstance(key, str):
                raise TypeError(f"modality names must be strings, got {key!r}")
            if not all(hasattr(image, a) for a in ("shape", "axes", "chunks", "read")):
                raise TypeError(
                    f"modality {key!r} must be an Image (see open_image), got {type(image).__name__}"
                )
        self.spatial_axes: str = check_axes(spatial_axes, name="spatial_axes")
        self._modalities: dict[str, ImageLike] = dict(modalities)
        self._maps: dict[tuple[str, str], tuple[AxisMap, ...]] = {}
        self.reference_name: str = next(iter(self._modalities))
        ref_axes = self.reference.axes
        for key, image in self._modalities.items():
            extra = [
                a for a in image.axes
                if a in self.spatial_axes and a not in ref_axes and self._extent(image, a) > 1
            ]
            if extra:
                raise ZarrsampleError(
                    f"modality {key!r} (axes {image.axes!r}) has spatial axes {extra} that the "
                    f"reference {self.reference_name!r} (axes {ref_axes!r}) lacks"
                )
        mask = self.mask
        if mask is not None:
            wide = {a: s for a, s in zip(mask.axes, mask.shape) if a not in self.spatial_axes and s > 1}
            if wide:
                raise ZarrsampleError(
                    f"the mask must have size 1 on non-spatial axes, got {wide} "
                    f"(mask axes {mask.axes!r}, spatial_axes {self.spatial_axes!r})"
                )
        check_modality_names(list(self._modalities))
        reference_extent = self.spatial_shape
        for key, image in self._modalities.items():
            if key != self.reference_name:
                check_aspect(key, self.reference, image, self.spatial_axes, reference_extent,
                             self.spatial_extent(key))

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_maps", {})  # pickled before window maps existed
        self.__dict__.update(state)

    @staticmethod
    def _extent(image: ImageLike, axis: str) -> int:
        return int(image.shape[image.axes.index(axis)]) if axis in image.axes else 1

    def __getitem__(self, name: str) -> ImageLike:
        return self._modalities[name]

    def __contains__(self, name: object) -> bool:
        return name in self._modalities

    def __iter__(self) -> Iterator[str]:
        return iter(self._modalities)

    def __len__(self) -> int:
        return len(self._modalities)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {v.axes} {tuple(v.shape)}" for k, v in self._modalities.items())
        return f"ImageCollection({{{parts}}}, spatial_axes={self.spatial_axes!r})"

    @property
    def modalities(self) -> dict[str, ImageLike]:
        """A copy of the ``{name: Image}`` mapping."""
        return dict(self._modalities)

    @property
    def reference(self) -> ImageLike:
        """The reference image (first modality)."""
        return self._modalities[self.reference_name]

    @property
    def mask_name(self) -> str | None:
        """``"masks"`` when a mask is present, else None."""
        return MASK_KEY if MASK_KEY in self._modalities and MASK_KEY != self.reference_name else None

    @property
    def mask(self) -> ImageLike | None:
        """The sampling mask image, or None (every position samplable)."""
        name = self.mask_name
        return None if name is None else self._modalities[name]

    def spatial_extent(self, name: str, axes: str | None = None) -> tuple[int, ...]:
        """Extent of modality ``name`` per spatial axis (1 where absent).

        ``axes`` overrides the collection's ``spatial_axes`` (a sampler's own).
        """
        image = self._modalities[name]
        return tuple(self._extent(image, a) for a in (axes or self.spatial_axes))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Reference extent per spatial axis (1 where absent)."""
        return self.spatial_extent(self.reference_name)

    def spatial_chunks(self, axes: str | None = None) -> tuple[int, ...]:
        """Reference storage chunk per spatial axis (1 where absent)."""
        ref = self.reference
        return tuple(
            int(ref.chunks[ref.axes.index(a)]) if a in ref.axes else 1
            for a in (axes or self.spatial_axes)
        )

    def scale(self, name: str) -> tuple[Fraction, ...]:
        """Exact size ratio modality / reference per spatial axis."""
        return tuple(
            Fraction(m, n) for m, n in zip(self.spatial_extent(name), self.spatial_shape)
        )

    def window_maps(self, name: str, axes: str | None = None) -> tuple[AxisMap, ...]:
        """How reference windows map to modality ``name``, one :class:`AxisMap` per spatial axis.

        Use with :func:`map_window`. ``axes`` overrides the collection's
        ``spatial_axes``. Computed once per modality and axes (see Notes of
        the class for the rules).

        Examples
        --------
        >>> import numpy as np
        >>> from zarrsample_core import ImageCollection, open_image
        >>> from zarrsample_core.sources._placement import map_window
        >>> coll = ImageCollection({
        ...     "images": open_image(np.zeros((64, 48), np.uint8), axes="YX"),
        ...     "labels": open_image(np.zeros((32, 24), np.uint8), axes="YX"),
        ... }, spatial_axes="YX")
        >>> [map_window(16, 48, m) for m in coll.window_maps("labels")]
        [(8, 16), (8, 16)]
        """
        axes = axes or self.spatial_axes
        key = (name, axes)
        maps = self._maps.get(key)
        if maps is None:
            maps = self._maps[key] = self._window_maps(name, axes)
        return maps

    def _window_maps(self, name: str, axes: str) -> tuple[AxisMap, ...]:
        reference, image = self.reference, self._modalities[name]
        maps, reasons = [], []
        extents = zip(axes, self.spatial_extent(self.reference_name, axes), self.spatial_extent(name, axes))
        for axis, n, m in extents:
            stored = (stored_extent(reference, axis, n), stored_extent(image, axis, m))
            amap, why = axis_map(axis_placement(reference, axis), axis_placement(image, axis), n, m, stored)
            maps.append(amap)
            if why is not None:
                reasons.append(f"{axis}: {why}")
        if reasons:
            warnings.warn(
                f"modality {name!r} ({image.name}) is aligned to the reference "
                f"({reference.name}) by the ratio of shapes, not by their coordinate "
                f"transformations: {'; '.join(reasons)}",
                stacklevel=3,
            )
        return tuple(maps)

    def mask_reader(self, axes: str | None = None) -> BlockReader:
        """A ``read_block(lo, hi)`` over the mask in spatial-axes order.

        Returns mask rows ``[lo, hi)`` along the first spatial axis and all of
        the others, as an array with one dimension per spatial axis (size 1
        for axes the mask lacks); non-spatial axes (size 1) are dropped. A
        read that fails (a corrupt or missing chunk, a server error) raises a
        :class:`~zarrsample_core.ChunkReadError` naming the mask and the
        first chunk of the strip that fails.
        """
        if self.mask is None:
            raise ZarrsampleError("this collection has no 'masks' modality")
        return self.block_reader(cast(str, self.mask_name), axes, purpose="the sampling mask")

    def block_reader(self, name: str, axes: str | None = None, *, purpose: str | None = None) -> BlockReader:
        """A ``read_block(lo, hi)`` over modality ``name`` in spatial-axes order.

        As :meth:`mask_reader` (which is this for the mask), for any modality
        whose non-spatial axes have size 1 (e.g. a label image);
        ``purpose`` says in error messages what the modality is read for.

        Raises
        ------
        KeyError
            No modality ``name``.
        ZarrsampleError
            A non-spatial axis of size > 1.
        """
        if name not in self._modalities:
            raise KeyError(f"no modality {name!r} in this collection; modalities: {list(self._modalities)}")
        image = self._modalities[name]
        axes = axes or self.spatial_axes
        is_mask = name == self.mask_name
        wide = {a: int(n) for a, n in zip(image.axes, image.shape) if a not in axes and n > 1}
        if wide and not is_mask:  # a mask's first channel is its value (as before)
            raise ZarrsampleError(
                f"modality {name!r} ({image.name}) has axes {wide} besides the spatial axes {axes!r}; "
                "it must have one value per pixel"
            )
        first = axes[0]
        present = [a for a in image.axes if a in axes]
        order = [present.index(a) for a in axes if a in present]
        expand = [i for i, a in enumerate(axes) if a not in present]
        drop = tuple(i for i, a in enumerate(image.axes) if a not in axes)
        values_checked = not is_mask

        def read_block(lo: int, hi: int) -> np.ndarray:
            nonlocal values_checked
            selection = tuple(
                slice(lo, hi) if a == first else (slice(None) if a in axes else slice(0, 1))
                for a in image.axes
            )
            try:
                block = np.asarray(image.read(selection))
            except ZarrsampleError:
                raise
            except Exception as exc:
                raise _mask_error(name, image, selection, axes, exc, purpose) from exc
            if not values_checked:
                values_checked = check_mask_values(name, image, block)
            block = block.reshape([s for i, s in enumerate(block.shape) if i not in drop])
            block = np.transpose(block, order)
            return np.expand_dims(block, expand) if expand else block

        return read_block


def _mask_error(
    name: str, mask: ImageLike, selection: tuple[slice, ...], axes: str, error: BaseException,
    purpose: str | None = None,
) -> ChunkReadError:
    """The one-line error of a failed mask read: the first bad chunk when it can be found."""
    found = failed_chunk(mask, selection)
    first = tuple((o + (s.start or 0)) // c for s, c, o in zip(selection, mask.chunks, mask.origin))
    index, cause = found if found is not None else (first, error)
    rows = ", ".join(
        f"{a} {s.start or 0}:{mask.shape[i] if s.stop is None else s.stop}"
        for i, (a, s) in enumerate(zip(mask.axes, selection)) if a in axes
    )
    what = purpose or f"modality {name!r}"
    return chunk_read_error(name, mask, index, None, axes, cause, 1, purpose=f"{what} ({rows})")
