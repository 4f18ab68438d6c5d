"""Regions of one TIFF page decoded tile by tile: the fast path for whole-slide levels.

A pyramid level of a whole-slide or microscope TIFF is usually one page:
``YX`` or ``YXS`` samples, tiled or stripped, samples interleaved. Such a
region is read here by decoding only the tiles (strips) it touches with
tifffile's own decoder for the page, the bytes read with ``os.pread`` on a
file descriptor of this process: no shared file position and no lock, so
several threads decode at once (imagecodecs releases the GIL), where
tifffile's zarr store decodes one chunk at a time under its file lock.
Other layouts (several pages per level, planar samples, tile depth) go
through tifffile's zarr store instead (:func:`._tiff.open_tiff_level`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["TileReader", "tile_reader"]


def tile_reader(tif: Any, path: str, series: int, level: int) -> TileReader | None:
    """A :class:`TileReader` for the level, or None when its layout needs the zarr store."""
    import tifffile

    pages = tif.series[series].levels[level].pages
    if len(pages) != 1 or not isinstance(pages[0], tifffile.TiffPage):  # frames: the zarr store
        return None
    page = pages[0]
    shape = tuple(int(n) for n in tif.series[series].levels[level].shape)
    samples = int(page.samplesperpixel)
    layout_ok = (
        getattr(page, "tiledepth", 1) == 1
        and (samples == 1 or int(page.planarconfig) == 1)
        and page.imagedepth == 1
        and shape in ((page.imagelength, page.imagewidth), (page.imagelength, page.imagewidth, samples))
    )
    if not layout_ok:
        return None
    return TileReader(path, page, shape, tif)


class TileReader:
    """Read regions ``[y0:y1, x0:x1(, :)]`` of one page, decoding only the tiles they touch.

    Thread-safe. Holds a file descriptor of the process that made it; an
    :class:`Image` makes one per process.
    """

    def __init__(self, path: str, page: Any, shape: tuple[int, ...], tif: Any) -> None:
        self.tif = tif  # kept open while its page's decoder is in use
        self.shape = shape
        self.dtype = np.dtype(page.dtype)
        self.samples = int(page.samplesperpixel)
        if page.is_tiled:
            self.tile = (int(page.tilelength), int(page.tilewidth))
        else:
            self.tile = (int(page.rowsperstrip), int(page.imagewidth))
        self.tile = (min(self.tile[0], shape[0]), self.tile[1])
        self.columns = -(-shape[1] // self.tile[1])
        self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self.counts = np.asarray(page.databytecounts, dtype=np.int64)
        self.jpegtables = page.jpegtables
        self.decode = page.decode  # tifffile's decoder for this page's compression and layout
        self.fd = os.open(path, os.O_RDONLY)

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.tile + self.shape[2:]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.tif.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def _tile(self, row: int, column: int) -> np.ndarray:
        """The decoded tile (strip) at grid position (row, column), shape (h, w, samples)."""
        index = row * self.columns + column
        count = int(self.counts[index])
        if count == 0:
            return np.zeros((*self.tile, self.samples), self.dtype)
        data = os.pread(self.fd, count, int(self.offsets[index]))
        if len(data) != count:
            raise OSError(f"short read: tile {index} has {count} bytes at {int(self.offsets[index])}, got {len(data)}")
        decoded, _, shape = self.decode(data, index, jpegtables=self.jpegtables)
        return np.asarray(decoded).reshape(shape[1], shape[2], shape[3])

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        (y0, y1), (x0, x1) = ((s.start, s.stop) for s in index[:2])
        rest = index[2:]
        th, tw = self.tile
        if y0 % th == 0 and x0 % tw == 0 and y1 <= y0 + th and x1 <= x0 + tw:  # within one tile: no copy
            out = self._tile(y0 // th, x0 // tw)[: y1 - y0, : x1 - x0]
        else:
            out = np.empty((y1 - y0, x1 - x0, self.samples), self.dtype)
            self._assemble(out, y0, y1, x0, x1)
        if len(self.shape) == 2:
            return out[..., 0]
        return out[(slice(None), slice(None), *rest)] if rest else out

    def _assemble(self, out: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> None:
        th, tw = self.tile
        for row in range(y0 // th, -(-y1 // th)):
            for column in range(x0 // tw, -(-x1 // tw)):
                tile = self._tile(row, column)
                ty, tx = row * th, column * tw
                a, b = max(y0, ty), min(y1, ty + th, ty + tile.shape[0])
                c, d = max(x0, tx), min(x1, tx + tw, tx + tile.shape[1])
                out[a - y0 : b - y0, c - x0 : d - x0] = tile[a - ty : b - ty, c - tx : d - tx]

    def read_many(self, indices: list[tuple[slice, ...]]) -> list[np.ndarray | Exception]:
        """Each region, or the error that region raised (the others still read)."""
        results: list[np.ndarray | Exception] = []
        for index in indices:
            try:
                results.append(self[index])
            except Exception as exc:  # noqa: BLE001 - returned to the caller
                results.append(exc)
        return results
