"""``zarrsample plan`` with the random and class-balanced samplers: the library's crops, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from test_cli import cli, one_error_line

from zarrsample_core import ClassBalancedPatchSampler, ImageCollection, RandomPatchSampler, open_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-samplers")
    image = zarr.create_array(store=str(root / "image.zarr"), shape=(3, 1024, 768), chunks=(3, 256, 256),
                              dtype="uint8")
    image[...] = 1
    mask = np.zeros((64, 48), np.uint8)
    mask[8:56, 4:40] = 1
    zarr.create_array(store=str(root / "mask.zarr"), data=mask)
    labels = np.zeros((128, 96), np.uint8)
    labels[20:60, 10:50] = 1
    labels[90:100, 60:70] = 2
    zarr.create_array(store=str(root / "labels.zarr"), data=labels)
    return root


def collection(root, labels=False):
    modalities = {"images": open_image(root / "image.zarr", axes="CYX"),
                  "masks": open_image(root / "mask.zarr", axes="YX")}
    if labels:
        modalities["labels"] = open_image(root / "labels.zarr", axes="YX")
    return ImageCollection(modalities, spatial_axes="YX")


def test_random_crops_of_an_epoch_equal_the_library(files):
    result = cli("plan", files / "image.zarr", "--axes", "CYX", "--mask", files / "mask.zarr", "--sampler",
                 "random", "--num-patches", "300", "--epoch", "4", "--seed", "7", "--min-area", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    plan = RandomPatchSampler(256, 300, min_area=0.5, spatial_axes="YX", seed=7).epoch_plan(
        collection(files), epoch=4)
    _, per_tile = np.unique(plan.chunk_ids, return_counts=True)
    assert report["patches"] == 300 and report["images"][0]["chunk_tiles"] == len(per_tile)
    assert report["images"][0]["patches_per_tile"]["max"] == per_tile.max()
    other = json.loads(cli("plan", files / "image.zarr", "--axes", "CYX", "--mask", files / "mask.zarr",
                           "--sampler", "random", "--num-patches", "300", "--seed", "7", "--min-area", "0.5",
                           "--json").stdout)
    assert other["images"][0]["patches_per_tile"] != report["images"][0]["patches_per_tile"]  # epoch 0


def test_balanced_crops_equal_the_library_and_preview(files, tmp_path):
    ratios = '{"0": 1, "1": 2, "2": 1}'
    result = cli("plan", files / "image.zarr", "--axes", "CYX", "--mask", files / "mask.zarr", "--sampler",
                 "balanced", "--labels", files / "labels.zarr", "--class-ratios", ratios, "--patch-size", "64",
                 "--num-patches", "0.5", "--min-class-area", "0.25", "--preview", tmp_path / "p.png", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    sampler = ClassBalancedPatchSampler(64, 0.5, class_ratios={0: 1, 1: 2, 2: 1}, min_class_area=0.25,
                                        spatial_axes="YX", seed=0)
    plan = sampler.plan(collection(files, labels=True))
    assert report["patches"] == len(plan) > 0
    assert report["preview"]["width"] > 0 and (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize(("options", "pattern"), [
    (["--sampler", "balanced"], r"--sampler balanced needs --labels PATH and --class-ratios JSON"),
    (["--num-patches", "5"], r"--num-patches applies to --sampler random or balanced, not grid"),
    (["--epoch", "2"], r"--epoch applies to --sampler random or balanced, not grid"),
    (["--sampler", "bluenoise", "--num-patches", "2"], r"--num-patches applies to --sampler random or balanced"),
    (["--sampler", "random", "--stride", "8"], r"--stride applies to the grid and bluenoise samplers"),
    (["--labels", "x.zarr"], r"--labels and --class-ratios apply to --sampler balanced"),
    (["--sampler", "balanced", "--labels", "{root}/nothing.zarr", "--class-ratios", '{"1": 1}'],
     r"^zarrsample: error: .*nothing\.zarr' does not exist"),
])
def test_wrong_sampler_options_are_one_line(files, options, pattern):
    options = [o.replace("{root}", str(files)) for o in options]
    one_error_line(cli("plan", files / "image.zarr", "--axes", "CYX", *options), 1, pattern)


@pytest.mark.parametrize(("options", "pattern"), [
    (["--sampler", "random", "--num-patches", "0"], r"--num-patches: must be > 0"),
    (["--sampler", "balanced", "--class-ratios", "[1]"], r"--class-ratios: expected a JSON object of class"),
    (["--sampler", "lattice"], r"--sampler: invalid choice"),
])
def test_bad_sampler_arguments_exit_2(files, options, pattern):
    one_error_line(cli("plan", files / "image.zarr", "--axes", "CYX", *options), 2, pattern)


def test_bluenoise_with_an_epoch_plans_that_epochs_pattern(files):
    from zarrsample_core import BlueNoisePatchSampler

    sampler = BlueNoisePatchSampler(64, seed=2, min_area=0.5, spatial_axes="YX", resample_per_epoch=True)
    coll = collection(files)
    for epoch in (0, 3):
        result = cli("plan", files / "image.zarr", "--axes", "CYX", "--mask", files / "mask.zarr", "--sampler",
                     "bluenoise", "--seed", "2", "--patch-size", "64", "--min-area", "0.5", "--epoch", epoch, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert "resample_per_epoch=True" in report["sampler"]
        assert report["patches"] == len(sampler.epoch_plan(coll, epoch=epoch, stream=0)) > 0
