"""sample_spec against the samples the dataset actually reads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, ZarrsampleError, open_image
from zarrsample_core.epochs._spec import sample_spec


def check_against_samples(ds: PatchDataset) -> dict:
    """Every sample fits the spec; every None size really varies; dtypes exact."""
    spec = sample_spec(ds)
    samples = [ds[i] for i in range(len(ds))]
    for sample in samples:
        assert list(sample) == list(spec)
        for key, (shape, dtype) in spec.items():
            value = np.asarray(sample[key])
            assert value.dtype == dtype, key
            assert len(value.shape) == len(shape), key
            assert all(s is None or s == v for s, v in zip(shape, value.shape)), (key, shape, value.shape)
    for key, (shape, _) in spec.items():
        for axis, size in enumerate(shape):
            if size is None:
                assert len({np.asarray(s[key]).shape[axis] for s in samples}) > 1, (key, axis)
    return spec


def image(shape, axes, dtype="uint8", seed=0):
    data = np.random.default_rng(seed).integers(0, 100, shape).astype(dtype)
    return open_image(data, axes=axes)


@pytest.mark.filterwarnings("ignore::zarrsample_core.ZarrsampleWarning")  # any label shape, on purpose
@given(
    height=st.integers(4, 40),
    width=st.integers(4, 40),
    label_height=st.integers(1, 60),
    label_width=st.integers(1, 60),
    channels=st.integers(1, 3),
    patch=st.integers(1, 4),  # fits the smallest image: an empty dataset is an error
    pad=st.integers(0, 3),
    order=st.sampled_from([None, "YXC", "CZYX"]),
    dtype=st.sampled_from(["uint8", "uint16", "float32", "bool"]),
)
def test_spec_matches_every_sample(height, width, label_height, label_width, channels, patch, pad, order, dtype):
    modalities = {
        "images": image((channels, height, width), "CYX", dtype),
        "labels": image((label_height, label_width), "YX", "int32"),
        "masks": image((height, width), "YX", "bool"),
    }
    ds = PatchDataset(
        ImageCollection(modalities, spatial_axes="YX"),
        PatchSampler(patch, stride=max(1, patch), pad=pad, min_area=0, spatial_axes="YX"),
        return_positions=True,
        output_axes=None if order is None else {"images": order},
    )
    spec = check_against_samples(ds)
    assert "masks" not in spec
    assert spec["position"] == ((2, 2), np.dtype("int64"))
    assert all(size is not None for shape, _ in spec.values() for size in shape)  # one patch size


def test_whole_images_of_different_sizes_give_none_where_they_differ():
    colls = [
        ImageCollection({"images": image((3, h, 20), "CYX")}, spatial_axes="YX") for h in (10, 12, 10)
    ]
    spec = check_against_samples(PatchDataset(colls, None, return_positions=True))
    assert spec["images"] == ((3, None, 20), np.dtype("uint8"))
    same = [ImageCollection({"images": image((3, 10, 20), "CYX")}, spatial_axes="YX")] * 2
    assert sample_spec(PatchDataset(same, None))["images"] == ((3, 10, 20), np.dtype("uint8"))


def test_collections_without_patches_do_not_count():
    big = ImageCollection({"images": image((16, 16), "YX")}, spatial_axes="YX")
    tiny = ImageCollection({"images": image((2, 2), "YX")}, spatial_axes="YX")
    ds = PatchDataset([big, tiny], PatchSampler(8, spatial_axes="YX"))
    assert sample_spec(ds) == {"images": ((8, 8), np.dtype("uint8"))}


def test_volumes_and_scales_in_3d():
    coll = ImageCollection(
        {"images": image((9, 20, 30), "ZYX", "uint16"), "labels": image((3, 10, 30), "ZYX")},
        spatial_axes="ZYX",
    )
    ds = PatchDataset(coll, PatchSampler((3, 4, 5), pad=(0, 1, 2), spatial_axes="ZYX"))
    spec = check_against_samples(ds)
    assert spec == {"images": ((3, 6, 9), np.dtype("uint16")), "labels": ((1, 3, 9), np.dtype("uint8"))}


def test_refuses_what_it_cannot_know():
    coll = ImageCollection({"images": image((8, 8), "YX")}, spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match="transform"):
        sample_spec(PatchDataset(coll, PatchSampler(4, spatial_axes="YX"), transform=lambda s: s))
    other = ImageCollection({"images": image((8, 8), "YX", "uint16")}, spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match=r"'images' must have one dtype.*uint8.*uint16"):
        sample_spec(PatchDataset([coll, other], PatchSampler(4, spatial_axes="YX")))
    channels = ImageCollection({"images": image((2, 8, 8), "CYX")}, spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match="same number of axes.*output_axes"):
        sample_spec(PatchDataset([coll, channels], PatchSampler(4, spatial_axes="YX")))
    with pytest.raises(ZarrsampleError, match=r"output_axes\['images'\]='YX' drops axes.*'C': 2"):
        sample_spec(PatchDataset(channels, PatchSampler(4, spatial_axes="YX"), output_axes={"images": "YX"}))
    with pytest.raises(TypeError, match="PatchDataset"):
        sample_spec(object())
