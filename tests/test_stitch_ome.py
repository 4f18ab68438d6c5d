"""OME-Zarr outputs of the Stitcher: pyramids placed like a source image, labels of existing images.

Checked against naive per-pixel reductions, the exact transforms, the
ome-zarr-models validators, ome-zarr-py's Reader, and file hashes (a label
changes nothing else of its image). Images to label are written by
ngff-zarr and ome-zarr-py themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zarr

from zarrsample_core import ZarrsampleError, open_image
from zarrsample_core.inference import _ome_write
from zarrsample_core.inference._ome_write import reduce_block, reduction
from zarrsample_core.inference._stitch import Stitcher

logging.getLogger("ome_zarr").setLevel(logging.ERROR)
SHAPE = (3, 75, 97)  # odd spatial sizes: partial last blocks
RNG = np.random.default_rng(0)
IMAGE = (RNG.random(SHAPE) * 100).astype(np.float32)
LABEL = RNG.integers(0, 7, (1, *SHAPE[1:])).astype(np.uint16)


# -- images written by other tools ---------------------------------------------------------------


@pytest.fixture(scope="module")
def writers(tmp_path_factory):
    """ngff-zarr images (0.4 and 0.5, with units and a translation) and ome-zarr-py images with a label."""
    import ngff_zarr as nz
    from ome_zarr.format import FormatV04, FormatV05

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ome-zarr-py's own deprecations
        from ome_zarr.writer import write_image, write_labels
    root = tmp_path_factory.mktemp("writers")
    image = nz.to_ngff_image(IMAGE, dims=["c", "y", "x"], scale={"y": 0.5, "x": 0.5},
                             translation={"y": 3.0, "x": -1.0}, axes_units={"y": "micrometer", "x": "micrometer"},
                             name="img")
    multiscales = nz.to_multiscales(image, scale_factors=[2, 4], method=nz.Methods.ITKWASM_BIN_SHRINK, chunks=32)
    paths = {}
    for version, fmt in (("0.4", FormatV04()), ("0.5", FormatV05())):
        paths["ngff_zarr", version] = path = root / f"ngff_{version}.ome.zarr"
        nz.to_ngff_zarr(str(path), multiscales, version=version)
        paths["ome_zarr_py", version] = path = root / f"omepy_{version}.ome.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ome-zarr-py's own deprecations
            write_image(IMAGE, group, axes="cyx", fmt=fmt)
            write_labels((LABEL > 3).astype(np.uint8), group, name="seg", axes="cyx", fmt=fmt)
    return paths


def copy_of(writers, key, tmp_path) -> Path:
    path = tmp_path / Path(writers[key]).name
    shutil.copytree(writers[key], path)
    return path


# -- helpers ---------------------------------------------------------------------------------


def stitch_whole(stitcher, data):
    """Add ``data`` as one patch over the whole output (the last two axes spatial) and finalize."""
    stitcher.add(data, [[0, data.shape[-2]], [0, data.shape[-1]]])
    return stitcher.finalize()


def naive_reduce(prev, steps, how):
    """Per output pixel: the mean of the block's pixels that exist, or its first pixel."""
    shape = tuple(-(-n // f) for n, f in zip(prev.shape, steps))
    out = np.empty(shape, prev.dtype)
    for index in np.ndindex(*shape):
        block = prev[tuple(slice(i * f, i * f + f) for i, f in zip(index, steps))]
        out[index] = block.astype(np.float64).mean() if how == "mean" else block.flat[0]
    return out


def multiscale(path):
    attrs = zarr.open_group(str(path), mode="r", use_consolidated=False).attrs.asdict()
    return (attrs["ome"] if "ome" in attrs else attrs)["multiscales"][0]


def transforms(entry):
    return [(d["coordinateTransformations"][0]["scale"], d["coordinateTransformations"][1]["translation"])
            for d in entry["datasets"]]


def hashes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for file in files:
            full = os.path.join(folder, file)
            out[os.path.relpath(full, root)] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return out


def validate(path, version):
    """ome-zarr-models on the default zarr open (consolidated metadata if any): the label names."""
    from ome_zarr_models import open_ome_zarr

    if version == "0.5":
        from ome_zarr_models.v05.image import Image
        from ome_zarr_models.v05.image_label import ImageLabel
        from ome_zarr_models.v05.labels import Labels
    else:
        from ome_zarr_models.v04.image import Image
        from ome_zarr_models.v04.image_label import ImageLabel
        from ome_zarr_models.v04.labels import Labels
    group = zarr.open_group(str(path), mode="r")
    Image.from_zarr(group)  # raises on invalid metadata, missing arrays, label level counts
    assert type(open_ome_zarr(group)).__name__ == "Image"
    if "labels" not in group:
        return []
    labels = Labels.from_zarr(group["labels"])
    names = labels.attributes.ome.labels if version == "0.5" else labels.attributes.labels
    for name in names:
        label = ImageLabel.from_zarr(group["labels"][name])
        attrs = label.attributes.ome if version == "0.5" else label.attributes
        assert attrs.image_label is not None
    return list(names)


def reader_nodes(path):
    """ome-zarr-py's Reader: ``{("image" | label name): [level arrays]}``."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    found = {}
    for node in Reader(parse_url(str(path)))():
        if node.load(Label) is not None:
            found[node.zarr.basename()] = [np.asarray(d) for d in node.data]
        elif node.load(Multiscales) is not None:
            found["image"] = [np.asarray(d) for d in node.data]
    return found


# -- pyramids ----------------------------------------------------------------------------------


def test_pyramid_is_placed_like_an_ngff_zarr_image_and_validates(writers, tmp_path):
    like = open_image(str(writers["ngff_zarr", "0.5"]))
    assert like.axes == "CYX" and like.pixel_size == {"Y": 0.5, "X": 0.5}
    out = tmp_path / "pred.ome.zarr"
    stitch_whole(Stitcher(out, shape=SHAPE, chunks=(3, 32, 32), ome=True, like=like, levels="auto"), IMAGE)
    entry = multiscale(out)
    # halved until one chunk: 75 x 97 -> 38 x 49 -> 19 x 25 (ceil sizes)
    arrays = [np.asarray(zarr.open_array(str(out / d["path"]), mode="r")[...]) for d in entry["datasets"]]
    assert [a.shape for a in arrays] == [SHAPE, (3, 38, 49), (3, 19, 25)]
    assert entry["axes"] == [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                             {"name": "x", "type": "space", "unit": "micrometer"}]
    assert transforms(entry) == [([1.0, 0.5, 0.5], [0.0, 3.0, -1.0]), ([1.0, 1.0, 1.0], [0.0, 3.25, -0.75]),
                                 ([1.0, 2.0, 2.0], [0.0, 3.75, -0.25])]
    assert entry["type"] == "mean"
    # ngff-zarr's own levels (floor sizes) carry the same transforms: the pyramids are interchangeable
    assert transforms(entry) == transforms(multiscale(writers["ngff_zarr", "0.5"]))
    np.testing.assert_array_equal(arrays[0], IMAGE)
    for k in (1, 2):
        np.testing.assert_allclose(arrays[k], naive_reduce(arrays[k - 1], (1, 2, 2), "mean"), rtol=1e-6)
    assert validate(out, "0.5") == []
    nodes = reader_nodes(out)
    assert len(nodes["image"]) == 3
    for got, want in zip(nodes["image"], arrays):
        np.testing.assert_array_equal(got, want)
    reopened = open_image(str(out))
    assert reopened.placement == like.placement and reopened.levels == tuple(a.shape for a in arrays)
    import ngff_zarr as nz

    read = nz.from_ngff_zarr(str(out)).images[2]
    assert (read.scale, read.translation) == ({"c": 1.0, "y": 2.0, "x": 2.0}, {"c": 0.0, "y": 3.75, "x": -0.25})


def test_auto_levels_halve_z_too(tmp_path):
    data = RNG.random((9, 40, 40)).astype(np.float32)
    out = tmp_path / "zyx.ome.zarr"
    stitcher = Stitcher(out, shape=data.shape, chunks=(4, 16, 16), ome=True, levels="auto")
    stitcher.add(data, [[0, 9], [0, 40], [0, 40]])
    stitcher.finalize()
    entry = multiscale(out)
    assert [a["type"] for a in entry["axes"]] == ["space"] * 3
    arrays = [zarr.open_array(str(out / d["path"]), mode="r")[...] for d in entry["datasets"]]
    assert [a.shape for a in arrays] == [(9, 40, 40), (5, 20, 20), (3, 10, 10)]  # (3, 10, 10) fits (4, 16, 16)
    for k in (1, 2):
        np.testing.assert_allclose(arrays[k], naive_reduce(arrays[k - 1], (2, 2, 2), "mean"), rtol=1e-6)
    assert transforms(entry)[2] == ([4.0] * 3, [1.5] * 3)


def test_integer_outputs_keep_the_first_pixel_of_each_block(tmp_path):
    data = LABEL[0, :, :61]
    out = tmp_path / "seg.ome.zarr"
    stitch_whole(Stitcher(out, shape=data.shape, chunks=(16, 16), dtype="uint16", ome=True, levels=4), data)
    entry = multiscale(out)
    assert entry["type"] == "nearest" and len(entry["datasets"]) == 4
    for k, dataset in enumerate(entry["datasets"]):
        level = zarr.open_array(str(out / dataset["path"]), mode="r")[...]
        np.testing.assert_array_equal(level, data[:: 2**k, :: 2**k])  # ceil sizes: the edge is kept
        assert dataset["coordinateTransformations"] == [
            {"type": "scale", "scale": [2.0**k] * 2}, {"type": "translation", "translation": [(2**k - 1) / 2] * 2}]
    assert validate(out, "0.5") == []


def test_reductions_against_naive_blocks_bool_as_integer():
    values = RNG.random((5, 7, 3))
    for steps in ((2, 2, 1), (1, 4, 2), (3, 1, 1)):
        np.testing.assert_allclose(reduce_block(values, steps, "mean"), naive_reduce(values, steps, "mean"))
    mask = values > 0.5
    assert reduction(mask.dtype) == reduction(np.dtype("int32")) == "nearest"
    assert reduction(np.dtype("float16")) == "mean"
    np.testing.assert_array_equal(reduce_block(mask, (2, 2, 1), "nearest"), naive_reduce(mask, (2, 2, 1), "nearest"))


def test_levels_are_written_in_tiles_of_bounded_size(tmp_path, monkeypatch):
    reads = []
    original = _ome_write.reduce_block
    monkeypatch.setattr(_ome_write, "TILE_ELEMENTS", 16 * 16 * 4)
    monkeypatch.setattr(_ome_write, "reduce_block", lambda block, *a: reads.append(block.size) or original(block, *a))
    out = tmp_path / "tiles.ome.zarr"
    data = IMAGE[0]
    stitch_whole(Stitcher(out, shape=data.shape, chunks=(16, 16), ome=True, levels=3), data)
    assert len(reads) > 4 and max(reads) <= 16 * 16 * 4
    level1 = zarr.open_array(str(out / "1"), mode="r")[...]
    np.testing.assert_allclose(level1, naive_reduce(data, (2, 2), "mean"), rtol=1e-6)
    np.testing.assert_allclose(zarr.open_array(str(out / "2"), mode="r")[...],
                               naive_reduce(level1, (2, 2), "mean"), rtol=1e-6)


def test_like_region_of_interest_and_other_extents(writers, tmp_path):
    like = open_image(str(writers["ngff_zarr", "0.5"]), roi=(slice(None), slice(10, 50), slice(4, 84)))
    # half the pixels of the region on Y: twice the pixel size, same corners
    out = tmp_path / "half.ome.zarr"
    stitch_whole(Stitcher(out, shape=(3, 20, 80), ome=True, like=like), np.zeros((3, 20, 80), np.float32))
    (scale, shift), = transforms(multiscale(out))
    assert scale == [1.0, 1.0, 0.5]
    corner_y = Fraction(3) + Fraction(1, 2) * 10 - Fraction(1, 4)  # like's first pixel's top edge
    assert shift == [0.0, float(corner_y + Fraction(1, 2)), float(-1 + Fraction(1, 2) * 4)]
    # an output without the channel axis takes the spatial ones; default placement without like
    out2 = tmp_path / "yx.ome.zarr"
    stitch_whole(Stitcher(out2, shape=(40, 80), ome=True, like=like), np.zeros((40, 80), np.float32))
    assert [a["name"] for a in multiscale(out2)["axes"]] == ["y", "x"]
    assert transforms(multiscale(out2)) == [([0.5, 0.5], [8.0, 1.0])]
    out3 = tmp_path / "plain.ome.zarr"
    stitch_whole(Stitcher(out3, shape=(40, 80), ome=True), np.zeros((40, 80), np.float32))
    assert transforms(multiscale(out3)) == [([1.0, 1.0], [0.0, 0.0])] and "unit" not in str(multiscale(out3))


# -- labels of existing images -------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["ngff_zarr", "ome_zarr_py"])
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_label_of_an_image_changes_nothing_else_and_validates(writers, tmp_path, writer, version):
    image = copy_of(writers, (writer, version), tmp_path)
    before = hashes(image)
    group = zarr.open_group(str(image), mode="r")
    root_attrs = group.attrs.asdict()
    levels = multiscale(image)["datasets"]
    stitch_whole(Stitcher(label_of=image, name="cells", shape=LABEL.shape, dtype="uint16"), LABEL)

    after = hashes(image)
    assert set(before) <= set(after)  # nothing removed
    changed = {f for f in before if before[f] != after[f]}
    new = set(after) - set(before)
    metadata = {"0.5": {"zarr.json"}, "0.4": {".zattrs", ".zgroup"}}[version]
    labels_meta = {f"labels/{m}" for m in metadata}
    consolidated = {"0.5": "zarr.json", "0.4": ".zmetadata"}[version] if writer == "ngff_zarr" else None
    assert changed <= labels_meta | {consolidated}, changed
    assert all(f.startswith("labels/cells/") or f in labels_meta for f in new), new
    assert zarr.open_group(str(image), mode="r").attrs.asdict() == root_attrs

    label = image / "labels" / "cells"
    entry = multiscale(label)
    assert len(entry["datasets"]) == len(levels) and entry["type"] == "nearest"
    assert entry["axes"] == multiscale(image)["axes"]
    attrs = zarr.open_group(str(label), mode="r").attrs.asdict()
    image_label = (attrs["ome"] if version == "0.5" else attrs)["image-label"]
    assert image_label == {"version": version, "source": {"image": "../../"}}
    arrays = [zarr.open_array(str(label / d["path"]), mode="r") for d in entry["datasets"]]
    assert all(a.metadata.zarr_format == (3 if version == "0.5" else 2) for a in arrays)
    image_shapes = [zarr.open_array(str(image / d["path"]), mode="r").shape for d in levels]
    for k, (array, (scale, shift)) in enumerate(zip(arrays, transforms(entry))):
        factor = round(scale[1] / transforms(entry)[0][0][1])
        assert array.shape[1:] == tuple(-(-n // factor) for n in LABEL.shape[1:])
        assert abs(array.shape[1] - image_shapes[k][1]) <= 1  # ceil here, floor (or a resize) there
        np.testing.assert_array_equal(array[...], LABEL[:, ::factor, ::factor])
    if writer == "ngff_zarr":  # dyadic floor pyramids: the image's own transforms, exactly
        assert transforms(entry) == transforms(multiscale(image))
    else:  # ome-zarr-py resizes to 37, 18, 9, 4 pixels: factors 2, 4, 8, 16 from its scales
        assert [t[0][1] for t in transforms(entry)] == [1.0, 2.0, 4.0, 8.0, 16.0]

    names = validate(image, version)  # the default open sees the label (consolidated metadata updated)
    assert names == (["seg", "cells"] if writer == "ome_zarr_py" else ["cells"])
    nodes = reader_nodes(image)
    assert len(nodes["image"]) == len(levels)
    assert [n.shape for n in nodes["cells"]] == [a.shape for a in arrays]
    for got, want in zip(nodes["cells"], arrays):
        np.testing.assert_array_equal(got, want[...])
    with pytest.raises(FileExistsError, match=r"name='cells' is already a label of .*labels lists \[.*'cells'\]"):
        Stitcher(label_of=image, name="cells", shape=LABEL.shape, dtype="uint16")


def test_a_second_label_is_appended_and_float_labels_are_averaged(writers, tmp_path):
    image = copy_of(writers, ("ngff_zarr", "0.5"), tmp_path)
    stitch_whole(Stitcher(label_of=image, name="cells", shape=LABEL.shape, dtype="uint8"), LABEL)
    probability = IMAGE[:1] / 100
    stitch_whole(Stitcher(label_of=str(image), name="p", shape=(1, *SHAPE[1:])), probability)
    labels = zarr.open_group(str(image / "labels"), mode="r").attrs["ome"]
    assert labels == {"version": "0.5", "labels": ["cells", "p"]}
    entry = multiscale(image / "labels" / "p")
    assert entry["type"] == "mean"
    level1 = zarr.open_array(str(image / "labels" / "p" / "1"), mode="r")[...]
    np.testing.assert_allclose(level1, naive_reduce(probability, (1, 2, 2), "mean"), rtol=1e-6)
    assert list(zarr.open_group(str(image), mode="r")["labels"].keys()) == ["cells", "p"]
    with pytest.raises((ValueError, RuntimeError), match=r"Data type of labels at path 'p/0' is not valid"):
        validate(image, "0.5")  # as the Stitcher's docstring says: 0.5 wants integer labels


def test_label_of_our_own_pyramid_has_its_shapes_and_transforms(writers, tmp_path):
    like = open_image(str(writers["ngff_zarr", "0.4"]))
    out = tmp_path / "pred.ome.zarr"
    stitch_whole(Stitcher(out, shape=SHAPE, chunks=(3, 16, 16), ome=True, like=like, levels="auto"), IMAGE)
    stitch_whole(Stitcher(label_of=out, name="cells", shape=LABEL.shape, dtype="int32"), LABEL)
    image, label = multiscale(out), multiscale(out / "labels" / "cells")
    assert len(image["datasets"]) == 4 and transforms(label) == transforms(image)
    for k, dataset in enumerate(label["datasets"]):
        level = zarr.open_array(str(out / "labels" / "cells" / dataset["path"]), mode="r")
        assert level.shape[1:] == zarr.open_array(str(out / str(k)), mode="r").shape[1:]
        assert level.chunks == (1,) + tuple(min(16, n) for n in level.shape[1:])  # the image's chunks
    assert validate(out, "0.5") == ["cells"]


def test_label_chunks_follow_the_image(writers, tmp_path):
    image = copy_of(writers, ("ngff_zarr", "0.4"), tmp_path)
    s = Stitcher(label_of=image, name="cells", shape=LABEL.shape, dtype="uint16")
    level0 = json.loads((image / "labels" / "cells" / "0" / ".zarray").read_text())
    assert level0["chunks"] == [1, 32, 32] and level0["dimension_separator"] == "/"
    s.close()  # not finalized: written, but not registered
    assert not (image / "labels" / ".zattrs").exists()
    with pytest.raises(FileExistsError, match=r"name='cells': .*labels/cells already exists \(labels lists \[\]\)"):
        Stitcher(label_of=image, name="cells", shape=LABEL.shape, dtype="uint16")


# -- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_parameter_and_leave_the_image_alone(writers, tmp_path):
    image = copy_of(writers, ("ome_zarr_py", "0.5"), tmp_path)
    before = hashes(image)
    like = open_image(str(writers["ngff_zarr", "0.5"]))
    ok = dict(shape=LABEL.shape, dtype="uint16")
    plain = zarr.create_group(str(tmp_path / "plain.zarr"))
    plain.create_array("a", shape=(4, 4), dtype="uint8")
    bare = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    for folder, version in (("noscale.zarr", "0.5"), ("v04in3.zarr", "0.4")):
        group = zarr.create_group(str(tmp_path / folder), attributes={"ome": {"version": version, "multiscales": [
            {"axes": bare, "datasets": [{"path": "0"}]}]}})
        group.create_array("0", shape=(4, 4), dtype="uint8", dimension_names=("y", "x"))
    cases = [
        (ZarrsampleError, r"label_of='.*plain.zarr' must be an OME-Zarr image group .* no 'multiscales'",
         dict(label_of=tmp_path / "plain.zarr", name="x", **ok)),
        (ZarrsampleError, r"label_of=.* must be an OME-Zarr image group .* it is an array",
         dict(label_of=tmp_path / "plain.zarr" / "a", name="x", **ok)),
        (ZarrsampleError, r"label_of=.*nowhere.* no zarr group there",
         dict(label_of=tmp_path / "nowhere", name="x", **ok)),
        (ZarrsampleError, r"label_of=.*noscale.zarr.* level 0's scale None and translation \[0, 0\] are not 2",
         dict(label_of=tmp_path / "noscale.zarr", name="x", shape=(4, 4))),
        (ZarrsampleError, r"label_of=.*v04in3.zarr.* it is OME-Zarr 0.4 on zarr v3 \(0.4 on v2 or 0.5 on v3\)",
         dict(label_of=tmp_path / "v04in3.zarr", name="x", shape=(4, 4))),
        (FileExistsError, r"name='seg' is already a label of .*\['seg'\]", dict(label_of=image, name="seg", **ok)),
        (ZarrsampleError, r"name must be one path segment .*got 'a/b'", dict(label_of=image, name="a/b", **ok)),
        (ZarrsampleError, r"shape=\(2, 75, 97\) must fit label_of's image, axes .*spatial sizes equal",
         dict(label_of=image, name="x", shape=(2, 75, 97))),
        (ZarrsampleError, r"shape=\(1, 75, 96\) must fit label_of's image, axes .*spatial sizes equal",
         dict(label_of=image, name="x", shape=(1, 75, 96))),
        (ZarrsampleError, r"levels=2: a label has as many levels as its image \(5 in",
         dict(label_of=image, name="x", levels=2, **ok)),
        (ZarrsampleError, r"out: a label is written to <label_of>/labels/<name>",
         dict(out=tmp_path / "o.zarr", label_of=image, name="x", **ok)),
        (ZarrsampleError, r"like: a label takes the placement of label_of's image",
         dict(label_of=image, name="x", like=like, **ok)),
        (ZarrsampleError, r"axes='YX': a label has the axes of label_of's image",
         dict(label_of=image, name="x", axes="YX", **ok)),
        (ZarrsampleError, r"name names a label of label_of; pass label_of= too, got name='x'",
         dict(out=tmp_path / "o.zarr", name="x", **ok)),
        (ZarrsampleError, r"like places an OME-Zarr output: pass ome=True with like=, got ome=False",
         dict(out=tmp_path / "o.zarr", like=like, **ok)),
        (TypeError, r"like must be a zarrsample Image \(from open_image\), got ndarray",
         dict(out=tmp_path / "o.zarr", like=IMAGE, ome=True, **ok)),
        (ZarrsampleError, r"levels must be 'auto' or an int >= 1, got 'all'",
         dict(out=tmp_path / "o.zarr", ome=True, levels="all", **ok)),
        (ZarrsampleError, r"levels must be >= 1, got 0", dict(out=tmp_path / "o.zarr", ome=True, levels=0, **ok)),
        (TypeError, r"levels must be an int >= 1, got bool True",
         dict(out=tmp_path / "o.zarr", ome=True, levels=True, **ok)),
        (ZarrsampleError, r"levels=9 is more than the 8 levels of shape=\(1, 75, 97\)",
         dict(out=tmp_path / "o.zarr", ome=True, levels=9, **ok)),
        (ZarrsampleError, r"levels applies to OME-Zarr outputs \(ome=True or label_of\), got levels='auto'",
         dict(out=tmp_path / "o.zarr", levels="auto", **ok)),
        (ZarrsampleError, r"axes='YXC': an OME-Zarr output has its axes in the order of 'TCZYX'",
         dict(out=tmp_path / "o.zarr", ome=True, axes="YXC", **ok)),
    ]
    for error, match, kwargs in cases:
        with pytest.raises(error, match=match):
            Stitcher(**kwargs)
    assert hashes(image) == before
    assert sorted(os.listdir(tmp_path)) == sorted(["plain.zarr", "noscale.zarr", "v04in3.zarr", image.name])
