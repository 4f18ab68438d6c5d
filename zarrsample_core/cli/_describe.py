"""What ``zarrsample info`` reports: zarr, OME-Zarr and TIFF metadata as plain JSON data.

Reads metadata only (zarr.json, .zarray, .zgroup, .zattrs; TIFF tags), never pixels.
"""

from __future__ import annotations

from typing import Any, cast

import zarr

from .._errors import ZarrsampleError
from ..sources._io import open_image
from ..sources._locations import open_path
from ..sources._ome import axis_letters, label_names, read_multiscale
from ..sources._tiff import is_tiff_file, tiff_file
from ..sources._validate import check_array_metadata

__all__ = ["describe", "format_info"]


def _codec(codec: Any) -> dict[str, Any]:
    if hasattr(codec, "to_dict"):
        d = dict(codec.to_dict())
        return {"name": d.get("name"), "configuration": d.get("configuration", {})}
    if hasattr(codec, "get_config"):
        config = dict(codec.get_config())
        return {"name": config.pop("id", type(codec).__name__), "configuration": config}
    return {"name": type(codec).__name__, "configuration": {}}


def _array_info(array: zarr.Array) -> dict[str, Any]:
    fill = array.fill_value
    serializer = getattr(array, "serializer", None)
    shards = getattr(array, "shards", None)
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": None if shards is None else list(shards),
        "filters": [_codec(c) for c in array.filters],
        "serializer": None if serializer is None else _codec(serializer),
        "compressors": [_codec(c) for c in array.compressors],
        "fill_value": fill.item() if hasattr(fill, "item") else fill,
        "dimension_names": list(getattr(array.metadata, "dimension_names", None) or []) or None,
    }


def _labels(group: zarr.Group) -> list[str]:
    try:
        node = group["labels"]
    except KeyError:
        return []
    if not isinstance(node, zarr.Group):
        return []
    return label_names(node.attrs.asdict())


def describe(path: str, *, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metadata of the zarr array or group at ``path``, as plain JSON data.

    Parameters
    ----------
    path : str
        Local path or URL of a zarr v2/v3 array or group, or a TIFF file.
    storage_options : dict, optional
        fsspec's options for a URL (see :func:`open_image`).

    Returns
    -------
    dict
        ``kind`` (``"array"``, ``"group"`` or ``"ome-zarr"``), ``path`` and
        ``zarr_format``. Arrays and OME-Zarr images (their level 0) add
        ``shape``, ``dtype``, ``chunks``, ``shards``, ``filters``,
        ``serializer``, ``compressors`` (``{"name", "configuration"}``
        each), ``fill_value`` and ``dimension_names``; OME-Zarr images also
        ``ome_version``, ``axes``, ``axis_names``, ``levels`` (``level``,
        ``path``, ``shape``, ``chunks``, ``scale``) and ``labels``; other
        groups ``arrays`` (every array below them).

    Raises
    ------
    FileNotFoundError, KeyError, ZarrsampleError
        As :func:`open_image`: a missing path, one that is not zarr, or
        malformed OME-Zarr metadata.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/a.zarr"
    >>> _ = zarr.create_array(store=path, shape=(4, 6), chunks=(2, 3), dtype="uint8", zarr_format=2)
    >>> info = describe(path)
    >>> info["kind"], info["zarr_format"], info["shape"], info["chunks"]
    ('array', 2, [4, 6], [2, 3])
    """
    if is_tiff_file(path):
        return _describe_tiff(path)
    node = open_path(path, storage_options)
    fmt = node.metadata.zarr_format
    if isinstance(node, zarr.Array):
        # What open_image would refuse (a 0 chunk, more elements than int64 indexes) is refused here too.
        check_array_metadata(tuple(int(n) for n in node.shape), node.chunks, node.dtype, path)
        return {"path": path, "kind": "array", "zarr_format": fmt, **_array_info(node)}
    attrs = node.attrs.asdict()
    multiscale = read_multiscale(attrs, where=path)
    if multiscale is None:
        members = sorted(node.members(max_depth=None), key=lambda m: m[0])
        arrays = [
            {"path": p, "shape": list(a.shape), "dtype": str(a.dtype), "chunks": list(a.chunks)}
            for p, a in members if isinstance(a, zarr.Array)
        ]
        return {"path": path, "kind": "group", "zarr_format": fmt, "arrays": arrays}
    image = open_image(node)  # resolves the levels and axes, as planning does
    levels = []
    nodes = {p: node[p] for p in multiscale.paths}  # all arrays: open_image checked them
    for index, (level_path, scale) in enumerate(zip(multiscale.paths, multiscale.scales)):
        array = cast(zarr.Array, nodes[level_path])
        levels.append({"level": index, "path": level_path, "shape": list(array.shape),
                       "chunks": list(array.chunks), "scale": None if scale is None else [float(s) for s in scale]})
    first = cast(zarr.Array, nodes[multiscale.paths[0]])
    return {
        "path": path, "kind": "ome-zarr", "zarr_format": fmt, "ome_version": multiscale.version,
        "axes": image.axes if axis_letters(multiscale.axis_names, image.ndim) else None,
        "axis_names": list(multiscale.axis_names or []), **_array_info(first),
        "levels": levels, "labels": _labels(node),
    }


def _describe_tiff(path: str) -> dict[str, Any]:
    """Series, levels, tiles, compression and pixel sizes of a TIFF file."""
    with tiff_file(path) as tif:
        flavour = next((f for f in ("ome", "svs", "ndpi", "scn", "imagej", "qpi", "bif") if getattr(tif, f"is_{f}", False)), None)
        pages = [  # (name, [(compression, tiled) per level]) of every series
            (s.name or s.kind, [(getattr(lv.keyframe.compression, "name", str(lv.keyframe.compression)),
                                 bool(lv.keyframe.is_tiled)) for lv in s.levels])
            for s in tif.series
        ]
    series = []
    for index, (name, levels) in enumerate(pages):
        entries: list[dict[str, Any]] = []
        first = None
        for level, (compression, tiled) in enumerate(levels):
            try:
                image = open_image(path, series=index, level=level)
            except ZarrsampleError as exc:  # e.g. axes tifffile cannot name: say so, go on
                entries.append({"level": level, "error": str(exc)})
                continue
            first = first or image
            entries.append({
                "level": level, "shape": list(image.shape), "chunks": list(image.chunks),
                "tiled": tiled, "compression": compression, "pixel_size": image.pixel_size,
            })
        series.append({"series": index, "name": name, "axes": first.axes if first else None,
                       "dtype": str(first.dtype) if first else None, "levels": entries})
    return {"path": path, "kind": "tiff", "flavour": flavour, "series": series}


def _codec_text(codecs: list[dict[str, Any]]) -> str:
    parts = []
    for c in codecs:
        config = ", ".join(f"{k}={v}" for k, v in (c.get("configuration") or {}).items())
        parts.append(f"{c['name']}({config})" if config else str(c["name"]))
    return ", ".join(parts) or "none"


def format_info(info: dict[str, Any]) -> str:
    """The text ``zarrsample info`` prints for :func:`describe`'s result."""
    lines: list[str] = []
    if info["kind"] == "tiff":
        lines.append(f"path:        {info['path']}")
        lines.append(f"type:        TIFF ({info['flavour'] or 'generic'}), {len(info['series'])} series")
        for s in info["series"]:
            lines.append(f"series {s['series']}:    {s['name']!r}, axes {s['axes']}, {s['dtype']}")
            for lv in s["levels"]:
                if "error" in lv:
                    lines.append(f"  level {lv['level']}: {lv['error']}")
                    continue
                unit = "tiles" if lv["tiled"] else "strips"
                sizes = lv["pixel_size"]
                size = (
                    "pixel size unknown" if any(v is None for v in sizes.values())
                    else "pixel size " + " x ".join(f"{v:.4g}" for v in sizes.values()) + " um"
                )
                lines.append(f"  level {lv['level']}: shape {tuple(lv['shape'])}, {unit} {tuple(lv['chunks'])}, "
                             f"{lv['compression']}, {size}")
        return "\n".join(lines)
    kind = {"array": "zarr array", "group": "zarr group (no OME-Zarr multiscales)",
            "ome-zarr": f"OME-Zarr image (NGFF {info.get('ome_version')})"}[info["kind"]]
    lines.append(f"path:        {info['path']}")
    lines.append(f"type:        {kind}, zarr v{info['zarr_format']}")
    if info["kind"] == "group":
        lines.append(f"arrays:      {len(info['arrays'])}")
        for a in info["arrays"]:
            lines.append(f"  {a['path']}: shape {tuple(a['shape'])}, {a['dtype']}, chunks {tuple(a['chunks'])}")
        return "\n".join(lines)
    if info["kind"] == "ome-zarr":
        lines.append(f"axes:        {info['axes'] or ''.join(info['axis_names'])}")
    elif info.get("dimension_names"):
        lines.append(f"dimensions:  {info['dimension_names']}")
    lines.append(f"shape:       {tuple(info['shape'])}")
    lines.append(f"dtype:       {info['dtype']}")
    lines.append(f"chunks:      {tuple(info['chunks'])}")
    if info["shards"]:
        lines.append(f"shards:      {tuple(info['shards'])}")
    serializer = [info["serializer"]] if info["serializer"] else []
    lines.append(f"codecs:      {_codec_text(info['filters'] + serializer + info['compressors'])}")
    lines.append(f"fill value:  {info['fill_value']}")
    if info["kind"] == "ome-zarr":
        lines.append(f"levels:      {len(info['levels'])}")
        for lv in info["levels"]:
            scale = "" if lv["scale"] is None else f", scale {lv['scale']}"
            lines.append(f"  {lv['level']}: path {lv['path']!r}, shape {tuple(lv['shape'])}, "
                  f"chunks {tuple(lv['chunks'])}{scale}")
        lines.append(f"labels:      {', '.join(info['labels']) or 'none'}")
    return "\n".join(lines)
