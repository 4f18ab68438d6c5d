"""Naming a storage chunk that failed: its grid index, storage key and array path.

Shared by the reader (patch windows) and the planner (mask strips), so both
raise the same one-line :class:`~zarrsample_core.ChunkReadError`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .._errors import ChunkReadError, ZarrsampleError, is_transient
from ._tensorstore import tensorstore_message

__all__ = ["array_path", "chunk_key", "chunk_read_error", "failed_chunk"]


def chunk_key(image: Any, index: Sequence[int]) -> str | None:
    """The storage key of the chunk (or shard) holding inner chunk ``index``, if known."""
    try:
        handle = image._array()
        meta = handle.metadata.to_dict() if hasattr(handle, "metadata") else handle.spec().to_json()["metadata"]
        if meta.get("zarr_format") == 2 or "chunks" in meta:
            outer, sep, prefix = meta["chunks"], meta.get("dimension_separator") or ".", None
        else:
            outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
            encoding = meta.get("chunk_key_encoding") or {"name": "default"}
            default = encoding.get("name") == "default"
            sep = (encoding.get("configuration") or {}).get("separator", "/" if default else ".")
            prefix = "c" if default else None
        coords = [str(int(i) * int(c) // int(o)) for i, c, o in zip(index, image.chunks, outer)]
        parts = ([prefix] if prefix else []) + (coords or ([] if prefix else ["0"]))
        return str(sep).join(parts)
    except Exception:  # noqa: BLE001 - a message must not fail while being written
        return None


def array_path(image: Any) -> str | None:
    """Path of the array inside its zarr store, if known."""
    spec = getattr(image, "_spec", None)
    if spec is not None and spec[0] == "zarr":
        return str(spec[3])
    if spec is not None and spec[0] == "tiff":  # a TIFF level has no path inside a store
        return None
    if spec is not None and len(spec) > 2:
        return str(spec[2])
    return getattr(getattr(image, "_cache", {}).get("handle"), "path", None)


def chunk_read_error(
    modality: str, image: Any, index: tuple[int, ...], window: tuple[tuple[int, ...], tuple[int, ...]] | None,
    spatial_axes: str, error: BaseException, attempts: int, *, purpose: str | None = None,
) -> ChunkReadError:
    """The :class:`ChunkReadError` of one failed chunk (one line).

    ``purpose`` says what the read was for when it was not a patch window
    (``window`` None), e.g. ``"planning mask rows 0:512"``.
    """
    key = chunk_key(image, index)
    path = array_path(image)
    name = str(getattr(image, "name", image))
    where = f" at {name.rstrip('/')}/{key}" if key is not None else ""
    transient = is_transient(error)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if type(error) is ValueError and str(error).split(":", 1)[0].isupper():  # tensorstore's status: no spec
        text = f"ValueError: {tensorstore_message(error)}"
    message = (
        f"could not read chunk {tuple(index)} (key {key!r}{where}) of modality {modality!r}, image "
        f"{name} (array path {path!r}), "
        + (f"for {purpose}" if window is None else
           f"for the patch window start={list(window[0])} stop={list(window[1])} along {spatial_axes!r}")
        + f"{tries}: {text}"
    )
    return ChunkReadError(
        message, image=name, array_path=path, chunk_index=tuple(index), chunk_key=key,
        window=window, attempts=attempts, transient=transient,
    )


def failed_chunk(image: Any, selection: Sequence[slice]) -> tuple[tuple[int, ...], BaseException] | None:
    """The first storage chunk inside ``selection`` whose read fails, with its error.

    Reads ``selection`` (image coordinates, one slice per axis) one storage
    chunk at a time, in C order, up to the first failure; None when every
    chunk reads. For the message of a read that failed as a whole: it costs
    a read per chunk up to the bad one, so call it only after a failure.
    """
    per_axis = []
    for s, c, o, m in zip(selection, image.chunks, image.origin, image.shape):
        lo, hi = s.start or 0, m if s.stop is None else s.stop
        if hi <= lo:
            return None
        per_axis.append([(k, max(k * c - o, lo), min((k + 1) * c - o, hi))
                         for k in range((lo + o) // c, (hi - 1 + o) // c + 1)])
    for combo in itertools.product(*per_axis):
        try:
            image.read(tuple(slice(a, b) for _, a, b in combo))
        except ZarrsampleError:
            raise
        except Exception as exc:  # noqa: BLE001 - the one to report
            return tuple(k for k, _, _ in combo), exc
    return None
