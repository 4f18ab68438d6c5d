"""TIFF files written by tifffile (with imagecodecs), the way slide and microscope software writes them."""

from __future__ import annotations

import numpy as np


def smooth_rgb(height, width, seed=0):
    """An RGB image with structure (JPEG keeps it recognisable) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), (x + y) % 256], axis=-1)
    noise = rng.integers(0, 40, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_pyramid(path, data, *, tile, compression, levels=3, photometric=None, resolution_um=None,
                  description=None, ome=False, metadata=None):
    """A tiled pyramid: level 0 then ``levels - 1`` halved levels as SubIFDs (floor sizes).

    Returns the levels as written (before any lossy compression).
    """
    import tifffile

    pyramid = [data]
    for _ in range(levels - 1):
        pyramid.append(pyramid[-1][::2, ::2].copy() if pyramid[-1].shape[0] % 2 == 0 else pyramid[-1][:-1:2, ::2].copy())
    options = {"tile": tile, "compression": compression, "photometric": photometric}
    extra = {}
    if resolution_um is not None:
        extra = {"resolution": (1e4 / resolution_um, 1e4 / resolution_um), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path, bigtiff=False, ome=ome) as tif:
        tif.write(pyramid[0], subifds=levels - 1, description=description, metadata=metadata, **extra, **options)
        for level in pyramid[1:]:
            tif.write(level, subfiletype=1, **options)
    return pyramid


def write_files(root):
    """The test files: name -> path."""
    import tifffile

    rgb = smooth_rgb(1000, 1300)
    gray = (np.arange(777 * 1031, dtype=np.uint32).reshape(777, 1031) * 2654435761 % 65521).astype(np.uint16)
    files = {
        "jpeg": root / "jpeg_pyramid.tif",
        "zlib": root / "zlib_pyramid.tif",
        "ome": root / "subifds.ome.tif",
        "svs": root / "aperio.svs",
        "two_series": root / "two_series.tif",
        "stripped": root / "stripped.tif",
        "planar": root / "planar.tif",
        "zstack": root / "zstack.ome.tif",
    }
    write_pyramid(files["jpeg"], rgb, tile=(128, 128), compression="jpeg", photometric="rgb", resolution_um=0.25)
    write_pyramid(files["zlib"], gray, tile=(128, 256), compression="zlib", levels=3)
    write_pyramid(
        files["ome"], rgb[:512, :768], tile=(128, 128), compression="zlib", photometric="rgb", ome=True,
        metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                  "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"},
    )
    header = "Aperio Image Library v12.0.15 \r\n"
    jpeg = {"photometric": "rgb", "compression": "jpeg", "metadata": None}
    with tifffile.TiffWriter(files["svs"]) as tif:  # baseline, thumbnail, a 4x level, label, macro
        tif.write(rgb, tile=(128, 128), **jpeg, description=(
            f"{header}1300x1000 [0,0 1300x1000] (128x128) JPEG/RGB Q=75|AppMag = 20|MPP = 0.4990"))
        tif.write(rgb[::8, ::8], rowsperstrip=16, **jpeg, description=f"{header}1300x1000 -> 163x125 - |AppMag = 20")
        tif.write(rgb[::4, ::4], tile=(128, 128), **jpeg, description=(
            f"{header}1300x1000 [0,0 1300x1000] (128x128) -> 325x250 JPEG/RGB Q=75"))
        tif.write(rgb[:100, :120], subfiletype=1, photometric="rgb", compression="lzw", metadata=None,
                  description=f"{header}label 120x100")
        tif.write(rgb[:200, :300], subfiletype=9, **jpeg, description=f"{header}macro 300x200")
    with tifffile.TiffWriter(files["two_series"]) as tif:
        tif.write(rgb[:300, :400], tile=(64, 64), compression="zlib", photometric="rgb", metadata=None)
        tif.write(gray[:200, :256], tile=(64, 64), compression="zlib", metadata=None)
    tifffile.imwrite(files["stripped"], gray, rowsperstrip=50, compression="zlib", metadata=None)
    # Layouts read through tifffile's zarr store: separate colour planes, a Z stack of pages.
    tifffile.imwrite(files["planar"], np.moveaxis(rgb[:300, :400], -1, 0), tile=(64, 64), compression="zlib",
                     photometric="rgb", planarconfig="separate", metadata=None)
    tifffile.imwrite(files["zstack"], gray[:160, :200].reshape(1, 160, 200) + np.arange(5, dtype=np.uint16)[:, None, None],
                     tile=(64, 64), compression="zlib", ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.5})
    return files
