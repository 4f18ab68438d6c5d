"""Inputs that plan, but probably not as meant, warn and say what was assumed."""

from __future__ import annotations

import dataclasses
import warnings
from fractions import Fraction

import numpy as np
import pytest

from zarrsample_core import (
    BlueNoisePatchSampler,
    ImageCollection,
    PatchSampler,
    ZarrsampleWarning,
    open_image,
)
from zarrsample_core.sources._placement import Placement

IMAGE = open_image(np.zeros((3000, 2000), np.uint8), axes="YX")


def mask(shape, dtype=bool, value=1):
    return open_image(np.full(shape, value, dtype), axes="YX")


def silently(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return make()


# -- a mask of another aspect ratio ------------------------------------------------------------


@pytest.mark.parametrize(("shape", "swapped"), [((77, 33), False), ((200, 300), True), ((3000, 1000), False)])
def test_a_mask_of_another_aspect_ratio_warns(shape, swapped):
    with pytest.warns(ZarrsampleWarning, match=r"modality 'masks' .* does not have the aspect ratio of the "
                      r"reference .*stretched to cover it with a different scale per axis") as record:
        ImageCollection({"images": IMAGE, "masks": mask(shape)}, spatial_axes="YX")
    assert ("its transpose would fit: are its axes swapped?" in str(record[0].message)) == swapped


@pytest.mark.parametrize("shape", [(3000, 2000), (1500, 1000), (188, 125), (94, 63), (47, 32), (6000, 4000)])
def test_masks_from_one_downsampling_are_silent(shape):
    silently(lambda: ImageCollection({"images": IMAGE, "masks": mask(shape)}, spatial_axes="YX"))
    odd = open_image(np.zeros((1001, 777), np.uint8), axes="YX")  # odd pyramid sizes: floor or ceil
    for low in ((500, 388), (501, 389), (250, 195), (63, 48)):
        silently(lambda: ImageCollection({"images": odd, "masks": mask(low)}, spatial_axes="YX"))


def test_placement_metadata_that_says_so_is_silent():
    def placed(image, scales):
        return dataclasses.replace(image, placement=tuple(Placement(Fraction(s), Fraction(0), "micrometer")
                                                          for s in scales))

    image, stretched = placed(IMAGE, (1, 1)), placed(mask((100, 20)), (30, 100))  # 3000 x 2000 um both
    silently(lambda: ImageCollection({"images": image, "masks": stretched}, spatial_axes="YX"))
    with pytest.warns(ZarrsampleWarning, match="does not have the aspect ratio"):  # metadata disagrees
        ImageCollection({"images": image, "masks": placed(mask((100, 20)), (30, 30))}, spatial_axes="YX")


# -- modality names ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["mask", "Masks", "tissue_mask", "msks"])
def test_a_key_that_looks_like_the_mask_warns(key):
    with pytest.warns(ZarrsampleWarning, match=rf"modality '{key}' is read as data alongside the reference "
                      r"'image', not as the sampling mask: only the key 'masks' .* rename it to 'masks'"):
        coll = ImageCollection({"image": IMAGE, key: mask((188, 125))}, spatial_axes="YX")
    assert coll.mask is None


def test_usual_keys_are_silent():
    silently(lambda: ImageCollection({"images": IMAGE, "labels": mask((188, 125)), "masks": mask((188, 125))},
                                     spatial_axes="YX"))
    silently(lambda: ImageCollection({"images": IMAGE, "masks": mask((188, 125)), "mask_raw": mask((188, 125))},
                                     spatial_axes="YX"))


# -- a patch larger than the image -------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda **kw: PatchSampler(**kw), lambda **kw: BlueNoisePatchSampler(seed=0, **kw)])
def test_a_patch_larger_than_the_image_warns_and_names_allow_incomplete_patches(make):
    small = ImageCollection({"images": open_image(np.zeros((100, 300), np.uint8), axes="YX")}, spatial_axes="YX")
    with pytest.warns(ZarrsampleWarning, match=r"the patch is larger than the image .*: 128 > 100 along Y, so no "
                      r"patch fits and the plan is empty; allow_incomplete_patches=True keeps") as record:
        plan = make(patch_size=128, spatial_axes="YX").plan(small)
    assert len(plan) == 0 and record[0].message.hints == (("allow_incomplete_patches", True),)
    kept = silently(lambda: make(patch_size=128, spatial_axes="YX", allow_incomplete_patches=True).plan(small))
    assert len(kept) > 0


def test_patches_along_a_channel_axis_say_which_axes_are_spatial():
    rgb = ImageCollection({"images": open_image(np.zeros((3, 64, 64), np.uint8), axes="CYX")}, spatial_axes="C")
    with pytest.warns(ZarrsampleWarning, match=r"32 > 3 along C, .*; C is not a spatial axis: spatial_axes='YX'\?"):
        assert len(PatchSampler(32, spatial_axes="C").plan(rgb)) == 0


# -- float masks -------------------------------------------------------------------------------


def test_a_float_mask_covers_where_non_zero_and_warns_about_other_values():
    values = np.zeros((188, 125), np.float32)
    values[:60, :40] = 0.3
    values[100:, 80:] = -2.0
    binary = (values != 0)
    sampler = PatchSampler(64, min_area=0.5, spatial_axes="YX")
    expected = silently(lambda: sampler.plan(
        ImageCollection({"images": IMAGE, "masks": open_image(binary, axes="YX")}, spatial_axes="YX")))
    coll = ImageCollection({"images": IMAGE, "masks": open_image(values, axes="YX")}, spatial_axes="YX")
    with pytest.warns(ZarrsampleWarning, match=r"mask 'masks' .* is float32 with values other than 0 and 1 "
                      r"\(e\.g\. 0\.3\): every non-zero value covers its pixel fully"):
        plan = sampler.plan(coll)
    assert len(plan) > 0 and np.array_equal(plan.toplefts, expected.toplefts)
    zero_one = binary.astype(np.float64)
    silently(lambda: sampler.plan(
        ImageCollection({"images": IMAGE, "masks": open_image(zero_one, axes="YX")}, spatial_axes="YX")))
