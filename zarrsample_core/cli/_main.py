"""The ``zarrsample`` command line: ``info``, ``plan`` and ``demo``.

Errors the user can fix (a missing path, a directory that is not zarr,
wrong axes, a level out of range) print one line, ``zarrsample: error:
...``, on stderr and exit with 1; bad arguments exit with 2 (argparse).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ZarrsampleError, ZarrsampleWarning
from .._progress import progress
from .._version import package_version
from ..planning._sampler import PatchSampler
from ..sources._collection import ImageCollection
from ..sources._image import Image
from ..sources._io import open_image
from ..sources._thumbnail import spatial_letters
from ._describe import describe, format_info
from ._options import (
    MASK_FLAGS,
    area,
    for_cli,
    json_object,
    micrometres,
    non_negative,
    png_path,
    positive,
    sizes,
)
from ._samplers import add_sampler_options, make_sampler, plan_of

__all__ = ["build_parser", "main"]

PROG = "zarrsample"

INFO_EXAMPLES = """examples:
  zarrsample info slide.ome.zarr
  zarrsample info https://example.org/data/image.zarr --json
  zarrsample info volume.zarr/labels/cells
"""

PLAN_EXAMPLES = """examples:
  zarrsample plan slide.ome.zarr --tissue --patch-size 256 --min-area 0.5 --preview plan.png
  zarrsample plan slide.ome.zarr --mask slide.ome.zarr/mask --sampler bluenoise --seed 1
  zarrsample plan array.zarr --axes CYX --patch-size 512,256 --stride 256 --json
  zarrsample plan volume.zarr --level 1 --spatial-axes ZYX --patch-size 64 --allow-incomplete
  zarrsample plan slides/*.ome.zarr --tissue --json
  zarrsample plan slide.ome.zarr --tissue --sampler random --num-patches 2000 --epoch 3 --preview crops.png
  zarrsample plan slide.ome.zarr --sampler balanced --labels slide.ome.zarr/labels/classes/2 \\
      --class-ratios '{"0": 0.2, "1": 0.4, "2": 0.4}' --min-class-area 0.1
"""

DEMO_EXAMPLES = """examples:
  zarrsample demo                    # everything in a temporary directory
  zarrsample demo --out demo-output  # keep the slide, the stitched output and preview.png
  zarrsample demo --size 2048 --quiet
"""


# -- info --------------------------------------------------------------------------------------


def _run_info(args: argparse.Namespace) -> int:
    info = describe(args.path, storage_options=_url_options(args.path, args.storage_options))
    print(json.dumps(info, default=str) if args.json else format_info(info))
    return 0


# -- plan --------------------------------------------------------------------------------------


def _url_options(path: str, options: dict[str, Any] | None) -> dict[str, Any] | None:
    """--storage-options for a URL; None for a local path (they apply to URLs only)."""
    return options if "://" in path and not path.startswith("file://") else None


def _open_mask(
    path: str, spatial: str, axes: str | None, options: dict[str, Any] | None, flag: str = "--mask"
) -> Image:
    try:
        try:
            return open_image(path, axes=axes, storage_options=_url_options(path, options))
        except ZarrsampleError:
            if axes is not None:
                raise
            try:  # a plain array without axis metadata: one axis per spatial axis
                return open_image(path, axes=spatial, storage_options=_url_options(path, options))
            except ZarrsampleError:
                pass
            raise
    except ZarrsampleError as exc:  # its axes are --mask-axes
        raise ZarrsampleError(f"{flag} {path}: {for_cli(str(exc), exc.hints, MASK_FLAGS)}") from exc


def _image_options(args: argparse.Namespace, path: str) -> dict[str, Any]:
    """open_image options of the plan command: axes, level or resolution, series, storage options."""
    if args.level is not None and args.resolution is not None:
        raise ZarrsampleError(f"give --level or --resolution, not both (got {args.level} and {args.resolution})")
    return {"axes": args.axes, "level": args.level, "resolution": args.resolution, "series": args.series,
            "data_group": args.data_group, "storage_options": _url_options(path, args.storage_options)}


def _plan_one(
    path: str, args: argparse.Namespace, sampler: PatchSampler, stream: int = 0
) -> tuple[dict[str, Any], Any]:
    t0 = time.perf_counter()
    image = open_image(path, **_image_options(args, path))
    spatial = sampler.spatial_axes
    t1 = time.perf_counter()
    mask = None
    if args.mask:
        mask = _open_mask(args.mask, spatial, args.mask_axes, args.storage_options)
    elif args.tissue:
        from ..inference._tissue import tissue_mask

        mask = tissue_mask(image, progress=not args.quiet)
    t2 = time.perf_counter()
    modalities: dict[str, Any] = {"images": image}
    if mask is not None:
        modalities["masks"] = mask
    if args.labels:
        modalities["labels"] = _open_mask(args.labels, spatial, None, args.storage_options, "--labels")
    coll = ImageCollection(modalities, spatial_axes=spatial)
    with warnings.catch_warnings():  # no patch fits: an error here, with the option that helps
        warnings.filterwarnings("error", "the patch is larger than the image", ZarrsampleWarning)
        try:
            plan = plan_of(sampler, coll, args, stream)
        except ZarrsampleWarning as exc:
            raise ZarrsampleError(str(exc), hints=exc.hints) from None
    t3 = time.perf_counter()
    _, per_tile = np.unique(plan.chunk_ids, return_counts=True)
    result = {
        "path": path, "level": image.level, "axes": image.axes, "shape": list(image.shape),
        "chunks": list(image.chunks), "spatial_axes": spatial,
        "mask": None if mask is None else {
            "source": "tissue" if args.tissue else args.mask, "axes": mask.axes, "shape": list(mask.shape)},
        "patches": len(plan), "chunk_tiles": len(per_tile),
        "patches_per_tile": None if not len(per_tile) else {
            "min": int(per_tile.min()), "median": float(np.median(per_tile)), "max": int(per_tile.max())},
        "seconds": {"open": t1 - t0, "mask": t2 - t1, "plan": t3 - t2},
    }
    return result, (image, mask, plan)


def _run_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.preview and len(args.paths) > 1:
        parser.error(f"--preview needs a single PATH, got {len(args.paths)}")
    first = open_image(args.paths[0], **_image_options(args, args.paths[0]))
    usual = spatial_letters(first.axes)
    if not usual:
        raise ZarrsampleError(
            f"{args.paths[0]} has axes {first.axes!r} and no spatial axis (Z, Y or X) to take patches along"
        )
    spatial = usual if args.spatial_axes is None else args.spatial_axes.upper()
    if any(a not in "ZYX" for a in spatial) or not any(a in first.axes for a in spatial):
        raise ZarrsampleError(
            f"--spatial-axes {args.spatial_axes}: patches are taken along spatial axes (Z, Y, X) of the "
            f"image, and {args.paths[0]} has axes {first.axes!r}: give --spatial-axes {usual}, or leave it out"
        )
    sampler = make_sampler(args, spatial)
    results: list[dict[str, Any]] = []
    last: Any = None
    quiet = args.quiet or len(args.paths) == 1
    paths = progress(args.paths, total=len(args.paths), desc="planning", unit="image", quiet=quiet)
    for stream, path in enumerate(paths):
        result, last = _plan_one(path, args, sampler, stream)
        results.append(result)
    summary = {
        "sampler": repr(sampler), "patches": sum(r["patches"] for r in results),
        "chunk_tiles": sum(r["chunk_tiles"] for r in results), "images": results, "preview": None,
    }
    if not args.json:  # the plan first: a preview of a large image takes a while to read
        _print_plan(summary)
    if args.preview:
        from ._preview import write_preview

        image, mask, plan = last
        width, height = write_preview(args.preview, image, plan=plan, mask=mask, size=args.preview_size,
                                      progress=not args.quiet)
        summary["preview"] = {"path": args.preview, "width": width, "height": height}
        if not args.json:
            print(f"preview: {args.preview} ({width} x {height})")
    if args.json:
        print(json.dumps(summary))
    return 0


def _print_plan(summary: dict[str, Any]) -> None:
    """The plan report of ``zarrsample plan`` as text, flushed."""
    results = summary["images"]
    print(f"sampler: {summary['sampler']}")
    for r in results:
        print(f"{r['path']}: level {r['level']}, axes {r['axes']}, shape {tuple(r['shape'])}, "
              f"chunks {tuple(r['chunks'])}")
        if r["mask"] is not None:
            print(f"  mask: {r['mask']['source']} ({r['mask']['axes']} {tuple(r['mask']['shape'])})")
        tiles = r["patches_per_tile"]
        spread = "" if tiles is None else (
            f" (per tile: min {tiles['min']}, median {tiles['median']:g}, max {tiles['max']})")
        print(f"  patches: {r['patches']} in {r['chunk_tiles']} chunk tiles{spread}")
        s = r["seconds"]
        print(f"  time: open {s['open'] * 1e3:.1f} ms, mask {s['mask'] * 1e3:.1f} ms, "
              f"plan {s['plan'] * 1e3:.1f} ms")
    if len(results) > 1:
        print(f"total: {summary['patches']} patches in {summary['chunk_tiles']} chunk tiles of "
              f"{len(results)} images")
    sys.stdout.flush()


# -- demo --------------------------------------------------------------------------------------


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, size=args.size, quiet=args.quiet)


# -- parser and entry point --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``zarrsample`` argument parser (subcommands ``info``, ``plan``, ``demo``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect zarr / OME-Zarr images and plan patches over them.",
        epilog="run 'zarrsample COMMAND --help' for the options and examples of a command",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    info = sub.add_parser("info", help="shape, axes, chunks, codecs and pyramid levels of a zarr image",
                          description="Print the metadata of a zarr v2/v3 array or group, or of an "
                          "OME-Zarr image (v0.4 and v0.5): shape, dtype, axes, chunks, codecs, "
                          "pyramid levels with their scales, labels.", epilog=INFO_EXAMPLES,
                          formatter_class=raw)
    info.add_argument("path", help="local path or http(s) URL of a zarr array or group, or a TIFF/SVS file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--storage-options", type=json_object, metavar="JSON",
                      help='fsspec options for a URL, e.g. \'{"anon": true}\' for a public s3:// bucket')

    plan = sub.add_parser("plan", help="plan patches and report their counts (and draw them)",
                          description="Plan the patches of one or more images with PatchSampler, "
                          "BlueNoisePatchSampler, RandomPatchSampler or ClassBalancedPatchSampler and report "
                          "counts per chunk tile and timings.",
                          epilog=PLAN_EXAMPLES, formatter_class=raw)
    plan.add_argument("paths", nargs="+", metavar="PATH", help="image path(s) or URL(s)")
    plan.add_argument("--level", type=non_negative, help="pyramid level (OME-Zarr or TIFF; default 0)")
    plan.add_argument("--resolution", type=micrometres,
                      help="pick the pyramid level at this pixel size, in micrometres per pixel")
    plan.add_argument("--series", type=non_negative, help="series of a TIFF file with several (default 0)")
    plan.add_argument("--axes", help="axes of the image, e.g. CYX, when its metadata has none")
    plan.add_argument("--data-group", metavar="PATH",
                      help="the array to read inside a zarr group without OME-Zarr metadata, e.g. raw/0")
    plan.add_argument("--storage-options", type=json_object, metavar="JSON",
                      help='fsspec options for URLs, e.g. \'{"anon": true}\' for a public s3:// bucket')
    plan.add_argument("--spatial-axes", help="axes patches are taken along (default: Z, Y, X of the image)")
    plan.add_argument("--patch-size", type=sizes(1), default=256,
                      help="patch size: an int or one per spatial axis, e.g. 256,128 (default 256)")
    plan.add_argument("--stride", type=sizes(1), help="grid step (default: the patch size)")
    plan.add_argument("--pad", type=sizes(0), help="context pixels around each patch (default 0)")
    add_sampler_options(plan)
    masks = plan.add_mutually_exclusive_group()
    masks.add_argument("--mask", metavar="PATH", help="a sampling mask image at any scale")
    masks.add_argument("--tissue", action="store_true", help="compute a tissue mask (Otsu) from a low level")
    plan.add_argument("--mask-axes", help="axes of the --mask array when its metadata has none")
    plan.add_argument("--min-area", type=area, default=1,
                      help="mask coverage needed: a fraction in [0, 1) of the patch area, or a count "
                      ">= 1 of image pixels (default 1: one pixel, as PatchSampler's min_area)")
    plan.add_argument("--allow-incomplete", action="store_true", help="keep patches crossing the border")
    plan.add_argument("--preview", metavar="PNG", type=png_path,
                      help="write a PNG of the image, mask and patches (after the plan is printed): patch "
                      "outlines where a patch is at least 4 preview pixels wide, a translucent density "
                      "map of the patch area where patches are smaller")
    plan.add_argument("--preview-size", type=positive, default=1024,
                      help="longest side of the preview, pixels (default 1024)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="the end-to-end demo on a generated slide",
                          description="Write a synthetic OME-Zarr slide, compute its tissue mask, plan "
                          "patches with both samplers, run one epoch through PyTorch (2 workers), "
                          "stitch an identity model's output and write a preview PNG.",
                          epilog=DEMO_EXAMPLES, formatter_class=raw)
    demo.add_argument("--out", type=Path, help="directory to keep the outputs in (default: a temporary one)")
    demo.add_argument("--size", type=positive, default=4096, help="slide side in pixels (default 4096)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return for_cli(str(exc) or type(exc).__name__, getattr(exc, "hints", ()))


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """zarrsample's warnings as one ``zarrsample: warning: ...`` line, in the command's own spelling."""
    if isinstance(message, ZarrsampleWarning):
        print(f"{PROG}: warning: {for_cli(str(message), message.hints)}", file=sys.stderr)
    else:
        _default_show(message, category, *args, **kwargs)


_default_show = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Run ``zarrsample`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success, 1 bad data (missing path, not zarr, wrong axes,
    level out of range, ...), 2 bad arguments, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if args.command == "info":
                return _run_info(args)
            if args.command == "plan":
                return _run_plan(args, parser)
            return _run_demo(args)
    except SystemExit as exc:  # parser.error from a command
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`zarrsample info ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at interpreter exit
        return 128 + signal.SIGPIPE
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        sys.unraisablehook = _quiet_coroutines(sys.unraisablehook)
        return 1


def _quiet_coroutines(hook: Any) -> Any:
    """``hook`` minus the errors of coroutines closed at interpreter exit.

    After a failed request to an object store, zarr's event loop still holds
    the requests that were running beside it; closing them at exit makes
    aiobotocore raise in a context it did not start in, which Python would
    print as tracebacks below the one-line error already given.
    """
    def quiet(unraisable: Any) -> None:
        if not inspect.iscoroutine(unraisable.object):
            hook(unraisable)

    return quiet


if __name__ == "__main__":
    raise SystemExit(main())
