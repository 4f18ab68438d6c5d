"""The zarrsample command line (its main() in this process, or a subprocess): info, plan, previews, demo, errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from numcodecs import Zstd
from PIL import Image as PILImage

from zarrsample_core import (
    BlueNoisePatchSampler,
    ImageCollection,
    PatchSampler,
    open_image,
)
from zarrsample_core.cli._preview import (
    MASK_ALPHA,
    MASK_COLOUR,
    OUTLINE_ALPHA,
    PATCH_COLOUR,
    patch_outlines,
    render_preview,
)
from zarrsample_core.cli.demo import write_synthetic_slide
from zarrsample_core.inference._tissue import tissue_mask

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2"}


def cli(*args, python_prelude=None):
    """Run ``zarrsample ARGS``; returns a CompletedProcess (exit code, stdout, stderr).

    In this process (``main(argv)`` with stdout and stderr captured and Python
    warnings ignored, as ``ENV`` does for a child), which saves an interpreter
    start per call; with ``python_prelude`` (code run first, e.g. hiding a
    module) in a fresh interpreter. Tests of what only a process shows (exit
    at a closed pipe, the console script) run their own subprocess.
    """
    if python_prelude is None:
        from zarrsample_core.cli._main import main

        out, err, hook = io.StringIO(), io.StringIO(), sys.unraisablehook
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main([str(a) for a in args])
            finally:
                sys.unraisablehook = hook
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    script = f"{python_prelude}\nimport sys\nfrom zarrsample_core.cli._main import main\nsys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", script, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=ENV)


def one_error_line(result, code, pattern):
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[-1]), lines
    return lines[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    slide = write_synthetic_slide(root / "slide.ome.zarr", size=1024)
    plain = zarr.create_array(store=str(root / "plain.zarr"), shape=(3, 300, 200), chunks=(3, 100, 128),
                              dtype="uint16", zarr_format=2, compressors=Zstd(level=3))
    plain[...] = np.arange(3 * 300 * 200, dtype=np.uint16).reshape(3, 300, 200)
    group = zarr.open_group(root / "group.zarr", mode="w-", zarr_format=3)
    group.create_array("a", shape=(10, 12), chunks=(5, 6), dtype="float32")
    (root / "empty").mkdir()
    (root / "file.txt").write_text("not zarr")
    return {"root": root, "slide": slide, "plain": root / "plain.zarr", "group": root / "group.zarr"}


# -- info -------------------------------------------------------------------------------------


def test_info_ome_zarr_text_and_json(data):
    text = cli("info", data["slide"])
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "type:        OME-Zarr image (NGFF 0.5), zarr v3" in out
    assert "axes:        CYX" in out and "dtype:       uint8" in out
    assert "chunks:      (3, 512, 512)" in out and "zstd" in out
    assert "1: path '1', shape (3, 512, 512), chunks (3, 512, 512), scale [1.0, 2.0, 2.0]" in out
    assert "labels:      tissue" in out
    info = json.loads(cli("info", data["slide"], "--json").stdout)
    assert (info["kind"], info["zarr_format"], info["ome_version"], info["axes"]) == ("ome-zarr", 3, "0.5", "CYX")
    assert [lv["shape"] for lv in info["levels"]] == [[3, 1024, 1024], [3, 512, 512], [3, 256, 256]]
    assert [lv["scale"] for lv in info["levels"]] == [[1, 1, 1], [1, 2, 2], [1, 4, 4]]
    assert [c["name"] for c in info["compressors"]] == ["zstd"] and info["serializer"]["name"] == "bytes"
    assert info["labels"] == ["tissue"] and info["dtype"] == "uint8"


def test_info_plain_v2_array_and_group(data):
    text = cli("info", data["plain"])
    assert text.returncode == 0, text.stderr
    assert "type:        zarr array, zarr v2" in text.stdout
    assert "shape:       (3, 300, 200)" in text.stdout and "dtype:       uint16" in text.stdout
    assert "zstd(level=3" in text.stdout
    info = json.loads(cli("info", data["plain"], "--json").stdout)
    assert (info["kind"], info["zarr_format"], info["chunks"], info["shards"]) == ("array", 2, [3, 100, 128], None)
    assert info["compressors"][0]["name"] == "zstd" and info["compressors"][0]["configuration"]["level"] == 3
    group = json.loads(cli("info", data["group"], "--json").stdout)
    assert group["kind"] == "group" and group["arrays"] == [
        {"path": "a", "shape": [10, 12], "dtype": "float32", "chunks": [5, 6]}]


def test_console_script_is_installed(data):
    script = Path(sys.executable).parent / "zarrsample"
    assert script.exists(), "pip install -e . creates the zarrsample console script"
    result = subprocess.run([str(script), "info", str(data["plain"]), "--json"], capture_output=True,
                            text=True, timeout=60, env=ENV)
    assert result.returncode == 0 and json.loads(result.stdout)["shape"] == [3, 300, 200]


# -- plan -------------------------------------------------------------------------------------


def test_plan_counts_equal_the_library(data):
    slide = data["slide"]
    image = open_image(slide)
    tissue = ImageCollection({"images": image, "masks": tissue_mask(image)}, spatial_axes="YX")
    labels = ImageCollection({"images": image, "masks": open_image(slide, data_group="labels/tissue")},
                             spatial_axes="YX")
    plain = ImageCollection({"images": open_image(data["plain"], axes="CYX")}, spatial_axes="YX")
    cases = [
        (["--tissue", "--patch-size", "128", "--min-area", "0.5"], tissue,
         PatchSampler(128, min_area=0.5, spatial_axes="YX")),
        (["--tissue", "--sampler", "bluenoise", "--seed", "3", "--patch-size", "64", "--min-area", "0.9"],
         tissue, BlueNoisePatchSampler(64, seed=3, min_area=0.9, spatial_axes="YX")),
        (["--mask", slide / "labels" / "tissue", "--patch-size", "100,60", "--stride", "50", "--pad", "4",
          "--min-area", "0.5"],
         labels, PatchSampler((100, 60), stride=50, pad=4, min_area=0.5, spatial_axes="YX")),
    ]
    for options, coll, sampler in cases:
        result = cli("plan", slide, *options, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        plan = sampler.plan(coll)
        _, per_tile = np.unique(plan.chunk_ids, return_counts=True)
        assert report["patches"] == len(plan) > 0, options
        (one,) = report["images"]
        assert one["chunk_tiles"] == len(per_tile)
        assert one["patches_per_tile"] == {"min": per_tile.min(), "median": np.median(per_tile),
                                           "max": per_tile.max()}
    result = cli("plan", data["plain"], "--axes", "CYX", "--patch-size", "64", "--allow-incomplete")
    assert result.returncode == 0, result.stderr
    expected = PatchSampler(64, spatial_axes="YX", allow_incomplete_patches=True).plan(plain)
    assert len(expected) == 5 * 4
    _, per_tile = np.unique(expected.chunk_ids, return_counts=True)
    assert (f"patches: {len(expected)} in {len(per_tile)} chunk tiles (per tile: min {per_tile.min()}, "
            f"median {np.median(per_tile):g}, max {per_tile.max()})") in result.stdout
    assert re.search(r"time: open [\d.]+ ms, mask [\d.]+ ms, plan [\d.]+ ms", result.stdout)


def test_plan_defaults_are_the_library_defaults(data):
    """Without --min-area the command plans what PatchSampler(...) plans with its own default."""
    slide = data["slide"]
    image = open_image(slide)
    for mask, coll in (
        (["--tissue"], ImageCollection({"images": image, "masks": tissue_mask(image)}, spatial_axes="YX")),
        (["--mask", slide / "labels" / "tissue"],
         ImageCollection({"images": image, "masks": open_image(slide, data_group="labels/tissue")},
                         spatial_axes="YX")),
    ):
        for options, sampler in ((["--patch-size", "96"], PatchSampler(96, spatial_axes="YX")),
                                 (["--patch-size", "96", "--sampler", "bluenoise"],
                                  BlueNoisePatchSampler(96, seed=0, spatial_axes="YX"))):
            report = json.loads(cli("plan", slide, *mask, *options, "--json").stdout)
            assert report["patches"] == len(sampler.plan(coll)), (mask, options)
            assert report["sampler"] == repr(sampler)
    assert "default 1: one pixel, as PatchSampler's min_area" in " ".join(cli("plan", "--help").stdout.split())


def test_plan_many_images_sums_them(data):
    report = json.loads(cli("plan", data["slide"], data["slide"], "--tissue", "--json").stdout)
    assert len(report["images"]) == 2 and report["patches"] == 2 * report["images"][0]["patches"]


def test_plan_preview_draws_patches_over_the_mask(data, tmp_path):
    out = tmp_path / "preview.png"
    result = cli("plan", data["slide"], "--tissue", "--patch-size", "128", "--min-area", "0.5", "--preview", out,
                 "--preview-size", "300", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["preview"] == {"path": str(out), "width": 300, "height": 300}
    picture = np.asarray(PILImage.open(out).convert("RGB"))
    assert picture.shape == (300, 300, 3)
    image = open_image(data["slide"])
    mask = tissue_mask(image)
    coll = ImageCollection({"images": image, "masks": mask}, spatial_axes="YX")
    plan = PatchSampler(128, min_area=0.5, spatial_axes="YX").plan(coll)
    base = np.asarray(render_preview(image, mask=mask, size=300))  # the same without patches
    drawn = np.any(picture != base, axis=-1)
    outline = np.rint((1 - OUTLINE_ALPHA) * base + OUTLINE_ALPHA * np.asarray(PATCH_COLOUR)).astype(np.uint8)
    assert np.array_equal(picture[drawn], outline[drawn])  # translucent outlines over the image and mask
    corners = plan.toplefts * 300 // 1024
    assert drawn[corners[:, 0], corners[:, 1]].all()  # every patch's top-left corner is outlined
    far = np.ones((300, 300), bool)  # pixels at least 2 preview pixels from any patch
    for y, x in corners.tolist():
        far[max(0, y - 2) : y + 40, max(0, x - 2) : x + 40] = False
    assert far.any() and not drawn[far].any()


def test_render_preview_blends_the_mask():
    rgb = np.full((3, 40, 80), 200, np.uint8)
    mask = np.zeros((10, 20), bool)
    mask[:5, :10] = True  # the top-left quarter, at 1/4 scale
    image = open_image(rgb, axes="CYX")
    picture = np.asarray(render_preview(image, mask=open_image(mask, axes="YX"), size=160))
    assert picture.shape == (80, 160, 3)
    blended = np.rint((1 - MASK_ALPHA) * 200 + MASK_ALPHA * np.asarray(MASK_COLOUR)).astype(np.uint8)
    assert np.all(picture[:40, :80] == blended) and np.all(picture[40:] == 200) and np.all(picture[:, 80:] == 200)


def naive_outlines(shape, start, stop):
    canvas = np.zeros(shape, bool)
    for (y0, x0), (y1, x1) in zip(start.tolist(), stop.tolist()):
        canvas[y0, x0 : x1 + 1] = canvas[y1, x0 : x1 + 1] = True
        canvas[y0 : y1 + 1, x0] = canvas[y0 : y1 + 1, x1] = True
    return canvas


@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 12), st.integers(0, 2**32 - 1))
def test_patch_outlines_match_naive_drawing(h, w, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, [h, w], (n, 2))
    b = rng.integers(0, [h, w], (n, 2))
    start, stop = np.minimum(a, b), np.maximum(a, b)
    assert np.array_equal(patch_outlines((h, w), start, stop), naive_outlines((h, w), start, stop))


# -- errors and help --------------------------------------------------------------------------


def test_bad_data_exits_1_with_one_line(data):
    root = data["root"]
    one_error_line(cli("info", root / "missing.zarr"), 1, r"^zarrsample: error: source path .*missing\.zarr' does not exist$")
    one_error_line(cli("plan", root / "empty"), 1, r"^zarrsample: error: .*is not a zarr array or group")
    one_error_line(cli("info", root / "file.txt"), 1, r"^zarrsample: error: .*is a file, not a zarr")
    one_error_line(cli("plan", data["plain"], "--axes", "QYX"), 1, r"^zarrsample: error: axes='QYX' has unknown axis letters \['Q'\]")
    one_error_line(cli("plan", data["plain"]), 1,
                   r"^zarrsample: error: axes is required .*shape \(3, 300, 200\).* pass e\.g\. --axes CYX$")
    one_error_line(cli("plan", data["slide"], "--level", "5"), 1, r"level=5 is out of range .* available levels are \[0, 1, 2\]")
    one_error_line(cli("plan", data["group"]), 1,
                   r"without OME-Zarr multiscales metadata; pass e\.g\. --data-group a, the path of one of its arrays")


def test_a_corrupt_mask_chunk_is_one_line(data, tmp_path):
    mask = zarr.create_array(store=str(tmp_path / "mask.zarr"), shape=(64, 64), chunks=(16, 16), dtype="uint8",
                             zarr_format=2, compressors=Zstd(level=3))
    mask[...] = 1
    (tmp_path / "mask.zarr" / "1.2").write_bytes(b"\x13garbage" * 20)
    result = cli("plan", data["slide"], "--mask", tmp_path / "mask.zarr", "--mask-axes", "YX")
    one_error_line(result, 1, r"^zarrsample: error: could not read chunk \(1, 2\) \(key '1\.2' at .*mask\.zarr/1\.2\) "
                   r"of modality 'masks', image .*mask\.zarr \(array path ''\), for the sampling mask "
                   r"\(Y 0:64, X 0:64\): RuntimeError: Zstd decompression error")
    assert len(result.stderr.strip().splitlines()) == 1


def test_errors_suggest_options_of_the_command(data, tmp_path):
    report = json.loads(cli("plan", data["group"], "--data-group", "a", "--axes", "YX", "--patch-size", "4",
                            "--json").stdout)
    assert report["images"][0]["shape"] == [10, 12] and report["patches"] == 6
    one_error_line(cli("plan", data["slide"], "--spatial-axes", "C"), 1,
                   r"^zarrsample: error: --spatial-axes C: patches are taken along spatial axes \(Z, Y, X\) of the "
                   r"image, and .* has axes 'CYX': give --spatial-axes YX, or leave it out$")
    one_error_line(cli("plan", data["slide"], "--patch-size", "2000"), 1,
                   r"^zarrsample: error: the patch is larger than the image .*: 2000 > 1024 along Y, 2000 > 1024 "
                   r"along X, so no patch fits and the plan is empty; --allow-incomplete keeps the patches")
    assert json.loads(cli("plan", data["slide"], "--patch-size", "2000", "--allow-incomplete", "--json").stdout)[
        "patches"] == 1
    zarr.create_array(store=str(tmp_path / "cube.zarr"), shape=(3, 64, 64), chunks=(3, 64, 64), dtype="uint8")
    one_error_line(cli("plan", data["slide"], "--mask", tmp_path / "cube.zarr"), 1,
                   r"^zarrsample: error: --mask .*cube\.zarr: axes is required .* pass e\.g\. --mask-axes CYX$")


def test_warnings_are_one_line_each(data, tmp_path):
    mask = zarr.create_array(store=str(tmp_path / "mask.zarr"), shape=(77, 33), chunks=(77, 33), dtype="bool")
    mask[...] = True
    command = [sys.executable, "-m", "zarrsample_core", "plan", str(data["slide"]), "--mask", str(tmp_path / "mask.zarr")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**ENV, "PYTHONWARNINGS": ""})
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert re.match(r"zarrsample: warning: modality 'masks' \(.*mask\.zarr, \(77, 33\) along 'YX'\) does not have "
                    r"the aspect ratio of the reference", line), line


def test_bad_arguments_exit_2(data):
    for value, pattern in (("0", r"every value must be >= 1, got '0'"), ("abc", r"expected an int"),
                           ("256,-1", r"every value must be >= 1")):
        one_error_line(cli("plan", data["slide"], "--patch-size", value), 2,
                       rf"^zarrsample plan: error: argument --patch-size: {pattern}")
    one_error_line(cli("plan", data["slide"], "--sampler", "lattice"), 2, r"invalid choice: 'lattice'")
    one_error_line(cli("plan", data["slide"], "--tissue", "--mask", data["slide"]), 2, r"not allowed with argument")
    one_error_line(cli("plan", data["slide"], data["slide"], "--preview", "x.png"), 2, r"--preview needs a single PATH")
    one_error_line(cli("frobnicate"), 2, r"invalid choice: 'frobnicate'")


def test_help_has_examples():
    for command in ("info", "plan", "demo"):
        result = cli(command, "--help")
        assert result.returncode == 0 and "examples:" in result.stdout and f"zarrsample {command}" in result.stdout


def test_core_imports_and_reports_missing_pillow(data, tmp_path):
    block = "import sys\nsys.modules['PIL'] = None\nsys.modules['tqdm'] = None"
    result = cli("plan", data["slide"], "--tissue", "--preview", tmp_path / "p.png", python_prelude=block)
    one_error_line(result, 1, r'previews need Pillow, which is not installed: pip install "zarrsample\[all\]"')
    result = cli("plan", data["slide"], "--json", python_prelude=block)  # no preview: no Pillow needed
    assert result.returncode == 0 and json.loads(result.stdout)["patches"] == 16


# -- demo -------------------------------------------------------------------------------------


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "zarrsample_core", "demo", "--out", str(out), "--size", "1024", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "slide", "tissue mask", "plan (grid, stride 224)", "plan (blue noise)",
        "epoch (PyTorch DataLoader, 2 workers)", "stitching", "peak memory", "preview"]
    grid = int(re.search(r"plan \(grid, stride 224\): +(\d+) patches", result.stdout).group(1))
    epoch = re.search(r"\): (\d+) patches in [\d.]+ s, \d+ patches/s, [\d.]+ MB/s \(the loader alone, ", lines[4])
    assert grid > 0 and int(epoch.group(1)) == grid
    stitched = re.search(r": (\d+) patches stitched in [\d.]+ s, \d+ patches/s \(adds and writes, main process\); "
                         r"the epoch again with stitching: [\d.]+ s; max abs error (\S+)$", lines[5])
    assert int(stitched.group(1)) == grid and float(stitched.group(2)) < 1e-6
    assert re.search(r"peak memory: \d+ MB \(main process\), \d+ MB \(largest worker\)", lines[6])
    assert (out / "slide.ome.zarr" / "zarr.json").exists() and (out / "stitched.zarr").exists()
    assert PILImage.open(out / "preview.png").size == (1024, 1024)
    stitched = zarr.open_array(out / "stitched.zarr", mode="r")
    assert stitched.shape == (3, 1024, 1024) and stitched.dtype == np.float32
    again = cli("demo", "--out", out, "--size", "1024", "--quiet")
    one_error_line(again, 1, r"the demo never overwrites: .*slide\.ome\.zarr")


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``zarrsample info ... | head -1``: no "Broken pipe" error, the usual exit status of a closed pipe."""
    path = tmp_path / "a.zarr"
    zarr.create_array(store=str(path), shape=(8, 8), chunks=(4, 4), dtype="uint8")
    script = (
        "import os, sys\n"
        "from zarrsample_core.cli import main\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        f"code = main(['info', {str(path)!r}])\n"
        "sys.stderr.write(f'exit {code}')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "Broken pipe" not in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().endswith("exit 141")


def test_info_refuses_what_open_image_refuses(tmp_path):
    path = tmp_path / "huge.zarr"
    zarr.create_array(store=str(path), shape=(10**15, 10**15), chunks=(1000, 1000), dtype="uint8")
    out = subprocess.run([sys.executable, "-m", "zarrsample_core", "info", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "more than int64 indexing allows" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_preview_path_that_is_not_png_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "zarrsample_core", "plan", str(tmp_path / "x.zarr"),
                          "--preview", str(tmp_path / "plan.jpg")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "previews are PNG files: give a path ending in .png" in out.stderr
    assert not (tmp_path / "plan.jpg").exists()
