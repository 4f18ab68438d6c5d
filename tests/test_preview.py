"""PNG previews at whole-slide scale: outlines or a density map, the threaded thumbnail, progress, order."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from reference import patch_density as naive_density

from zarrsample_core import ImageCollection, PatchSampler, open_image
from zarrsample_core.cli import _preview
from zarrsample_core.cli._preview import (
    DENSITY_ALPHA,
    OUTLINE_ALPHA,
    OUTLINE_MIN_PIXELS,
    PATCH_COLOUR,
    patch_density,
    render_preview,
)
from zarrsample_core.sources import _thumbnail
from zarrsample_core.sources._thumbnail import read_reduced

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2"}


def blend(base, alpha):
    """``base`` (uint8 RGB) with PATCH_COLOUR blended at weight ``alpha``, as the preview rounds it."""
    alpha = np.asarray(alpha, np.float64)[..., None] if np.ndim(alpha) else alpha
    return np.rint((1 - alpha) * base + alpha * np.asarray(PATCH_COLOUR, np.float64)).astype(np.uint8)


def textured(height, width):
    """A uint8 RGB image (CYX) whose colours are nowhere near PATCH_COLOUR."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 96 // width, 40 + y * 80 // height, np.full_like(x, 150)]).astype(np.uint8)


def plan_of(image, patch, *, stride=None, mask=None):
    modalities = {"images": image} if mask is None else {"images": image, "masks": mask}
    coll = ImageCollection(modalities, spatial_axes="YX")
    return PatchSampler(patch, stride=stride, spatial_axes="YX").plan(coll)


# -- outlines or a density map ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 40), st.integers(1, 40), st.data())
def test_patch_density_matches_the_naive_area_sums(h, w, big_h, big_w, data):
    n = data.draw(st.integers(0, 5))
    y0 = np.array(data.draw(st.lists(st.integers(0, big_h - 1), min_size=n, max_size=n)), np.int64)
    x0 = np.array(data.draw(st.lists(st.integers(0, big_w - 1), min_size=n, max_size=n)), np.int64)
    y1 = np.array([data.draw(st.integers(a + 1, big_h)) for a in y0.tolist()], np.int64)
    x1 = np.array([data.draw(st.integers(a + 1, big_w)) for a in x0.tolist()], np.int64)
    start, stop = np.stack([y0, x0], -1).reshape(n, 2), np.stack([y1, x1], -1).reshape(n, 2)
    got = patch_density((h, w), (big_h, big_w), start, stop)
    assert got.shape == (h, w)
    assert np.allclose(got, naive_density((h, w), (big_h, big_w), start, stop), rtol=0, atol=1e-9)
    batch = _preview.DENSITY_BATCH
    try:
        _preview.DENSITY_BATCH = 2  # patches two at a time: the batches add up to the same
        assert np.allclose(patch_density((h, w), (big_h, big_w), start, stop), got, rtol=0, atol=1e-9)
    finally:
        _preview.DENSITY_BATCH = batch


def test_tiny_patches_are_a_density_map_that_keeps_the_image():
    """8-pixel patches over the left half of a 2048^2 image, preview 256: one preview pixel each."""
    image = open_image(textured(2048, 2048), axes="CYX")
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    plan = plan_of(image, 8, mask=open_image(mask, axes="YX"))
    base = np.asarray(render_preview(image, size=256))
    picture = np.asarray(render_preview(image, plan=plan, size=256))
    assert picture.shape == base.shape == (256, 256, 3)
    assert not np.all(picture == PATCH_COLOUR, axis=-1).any()  # no pixel is hidden under the patch colour
    assert np.array_equal(picture[:, 128:], base[:, 128:])  # no patches: the image as it is
    covered = picture[:, :128]
    assert np.array_equal(covered, blend(base[:, :128], DENSITY_ALPHA))  # every pixel covered once
    assert len(np.unique(covered.reshape(-1, 3), axis=0)) > 50  # the image's gradient shows through


def test_a_density_map_shows_partial_and_overlapping_cover():
    image = open_image(np.full((3, 400, 400), 100, np.uint8), axes="CYX")
    plan = plan_of(image, 6, stride=3)  # four patches over most pixels; 6 image pixels = 1.5 preview pixels
    picture = np.asarray(render_preview(image, plan=plan, size=100))
    density = patch_density((100, 100), (400, 400), plan.toplefts, plan.toplefts + 6)
    assert density.max() == 4 and density.min() < 1
    assert np.array_equal(picture, blend(np.full((100, 100, 3), 100.0), DENSITY_ALPHA * density / 4))


def test_patches_a_few_preview_pixels_wide_are_outlined():
    image = open_image(textured(512, 512), axes="CYX")
    base = np.asarray(render_preview(image, size=256))
    plan = plan_of(image, 2 * OUTLINE_MIN_PIXELS, stride=64)  # OUTLINE_MIN_PIXELS wide, sparse
    picture = np.asarray(render_preview(image, plan=plan, size=256))
    drawn = np.any(picture != base, axis=-1)
    corners = plan.toplefts // 2
    assert drawn[corners[:, 0], corners[:, 1]].all()  # every top-left corner is on an outline
    assert drawn[corners[:, 0] + 1, corners[:, 1] + 1].sum() == 0  # the inside of each patch is not
    assert np.array_equal(picture[drawn], blend(base[drawn], OUTLINE_ALPHA))  # translucent
    narrower = plan_of(image, 2 * OUTLINE_MIN_PIXELS - 2, stride=64)  # 3 preview pixels: a density map
    picture = np.asarray(render_preview(image, plan=narrower, size=256))
    inside = (corners[:, 0] + 1, corners[:, 1] + 1)
    assert np.array_equal(picture[inside], blend(base[inside], DENSITY_ALPHA))


def test_outlines_that_would_cover_most_of_the_image_are_a_density_map():
    image = open_image(textured(512, 512), axes="CYX")
    base = np.asarray(render_preview(image, size=256))
    plan = plan_of(image, 2 * OUTLINE_MIN_PIXELS)  # a dense grid of 4-pixel patches: outlines on 75%
    picture = np.asarray(render_preview(image, plan=plan, size=256))
    assert np.array_equal(picture, blend(base, DENSITY_ALPHA))


# -- the thumbnail of a single-level image ----------------------------------------------------


def block_means(data, factor):
    """Means of ``factor``-blocks over Y and X of a CYX array, partial blocks at the far border."""
    _, height, width = data.shape
    out_h, out_w = -(-height // factor), -(-width // factor)
    padded = np.zeros((3, out_h * factor, out_w * factor))
    padded[:, :height, :width] = data
    counts = np.zeros(padded.shape[1:])
    counts[:height, :width] = 1
    sums = padded.reshape(3, out_h, factor, out_w, factor).sum(axis=(2, 4))
    return sums / counts.reshape(out_h, factor, out_w, factor).sum(axis=(1, 3))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 45), st.integers(1, 45), st.integers(2, 9), st.integers(1, 13), st.integers(1, 13),
       st.integers(1, 3), st.sampled_from(["uint8", "uint16", "float32"]), st.integers(0, 2**32 - 1))
def test_the_threaded_thumbnail_is_the_block_means(height, width, factor, chunk_y, chunk_x, chunk_c, dtype, seed):
    data = np.random.default_rng(seed).integers(0, 256 if dtype == "uint8" else 60000, (3, height, width)).astype(dtype)
    array = zarr.create_array(store=zarr.storage.MemoryStore(), shape=data.shape, chunks=(chunk_c, chunk_y, chunk_x),
                              dtype=dtype)
    array[...] = data
    image = open_image(array, axes="CYX")
    expected = block_means(data, factor)
    one = read_reduced(image, factor, threads=1)
    old = _thumbnail.TILE_BYTES
    try:
        _thumbnail.TILE_BYTES = 1  # one chunk per tile: many tiles, blocks split between them
        many = read_reduced(image, factor, threads=3)
    finally:
        _thumbnail.TILE_BYTES = old
    assert one.shape == many.shape == expected.shape
    assert np.allclose(one, expected, rtol=0, atol=1e-9) and np.allclose(many, expected, rtol=0, atol=1e-9)


def test_bright_bytes_summed_over_long_blocks_do_not_overflow():
    data = np.full((3, 600, 700), 255, np.uint8)  # 258 * 255 > 65535: sums beyond uint16
    data[:, :, ::2] = 254
    image = open_image(data, axes="CYX")
    for factor in (257, 258, 300):
        assert np.array_equal(read_reduced(image, factor), block_means(data, factor))


# -- progress and order on the command line ---------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A single-level (3, 2048, 2048) zarr array: its preview is read and block-averaged, in 64 tiles."""
    path = tmp_path_factory.mktemp("preview") / "plain.zarr"
    array = zarr.create_array(store=str(path), shape=(3, 2048, 2048), chunks=(3, 256, 256), dtype="uint8")
    array[...] = textured(2048, 2048)
    return path


def test_the_preview_shows_progress_on_a_terminal_only(plain, monkeypatch):
    image = open_image(plain, axes="CYX")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    shown = np.asarray(render_preview(image, size=256, progress=True))
    assert "preview: " in terminal.getvalue() and "/64 " in terminal.getvalue()  # tqdm drew a bar of 64 tiles
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert np.array_equal(np.asarray(render_preview(image, size=256, progress=True)), shown)
    assert pipe.getvalue() == ""


def command(*args):
    return [sys.executable, "-m", "zarrsample_core.cli._main", *map(str, args)]


def test_the_plan_command_shows_progress_on_a_tty_and_nothing_in_a_pipe(plain, tmp_path):
    args = ("plan", plain, "--axes", "CYX", "--preview", tmp_path / "p.png", "--preview-size", "256")
    piped = subprocess.run(command(*args), capture_output=True, text=True, timeout=120, env=ENV)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm draws nothing 0 wide
    child = subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=slave, env=ENV)
    os.close(slave)
    written = b""
    while True:
        try:
            got = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not got:
            break
        written += got
    os.close(master)
    assert child.wait(timeout=120) == 0, written
    assert b"preview: " in written and b"/64 " in written, written


def test_the_plan_is_printed_before_the_preview_is_read(plain, tmp_path):
    prelude = (
        "import zarrsample_core.cli._preview as p\n"
        "original = p.write_preview\n"
        "def write_preview(*args, **kwargs):\n"
        "    print('WRITING', flush=True)\n"
        "    return original(*args, **kwargs)\n"
        "p.write_preview = write_preview\n"
        "import sys\nfrom zarrsample_core.cli._main import main\nsys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "p.png"
    run = subprocess.run([sys.executable, "-c", prelude, "plan", str(plain), "--axes", "CYX", "--preview", str(out)],
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert text.index("patches: 64 in 64 chunk tiles") < text.index("WRITING") < text.index(f"preview: {out}")
    assert PILImage.open(out).size == (1024, 1024)
    missing = subprocess.run(command("plan", plain, "--axes", "CYX", "--preview", tmp_path / "no" / "p.png"),
                             capture_output=True, text=True, timeout=120, env=ENV)
    assert missing.returncode == 1 and "patches: 64 in 64 chunk tiles" in missing.stdout
    assert missing.stderr.strip().splitlines() == [
        f"zarrsample: error: preview path {str(tmp_path / 'no' / 'p.png')!r}: directory "
        f"{str(tmp_path / 'no')!r} does not exist"]


def test_the_help_says_when_patches_are_outlined():
    text = " ".join(subprocess.run(command("plan", "--help"), capture_output=True, text=True, env=ENV).stdout.split())
    assert f"patch outlines where a patch is at least {OUTLINE_MIN_PIXELS} preview pixels wide" in text
    assert "density map" in text
