"""Context windows (``window=`` of PatchReader and PatchDataset) against numpy slicing.

The oracle finds the window of each size whose centre is nearest to the
patch centre (a search over starts, with ``Fraction``), slices the full
array there and pads it with ``numpy.pad``.
"""

from __future__ import annotations

import math
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import nearest_window_start, padded_read, physical_centre, shape_ratio_centre

from zarrsample_core import (
    ImageCollection,
    PatchDataset,
    PatchReader,
    PatchSampler,
    ZarrsampleError,
    open_image,
    sample_spec,
)
from zarrsample_core.reading._padding import PADDING_MODES

# Modalities of any shape against the reference, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::zarrsample_core.ZarrsampleWarning")

# --------------------------------------------------------------------------- the oracle


def mapped_window(start, stop, n, m):
    """A modality's window without ``window``: ``floor(start*m/n)``, ``max(1, round_half_up(size*m/n))``."""
    return math.floor(Fraction(start * m, n)), max(1, math.floor(Fraction((stop - start) * m, n) + Fraction(1, 2)))


def covered(size, axes, shape, spatial_axes):
    """``{axis: pixels}`` that ``size`` sets, per the documented rule."""
    if isinstance(size, int):
        return {a: size for a, m in zip(axes, shape) if a in spatial_axes and m > 1}
    if isinstance(size, dict):
        return {a.upper(): v for a, v in size.items() if a.upper() in axes}
    return {a: v for a, v in zip(spatial_axes, size) if a in axes}


def oracle(full, axes, spatial_axes, start, stop, ref_shape, size, mode, pad_value=0, centre=None):
    """``(pixels, {axis: (start, stop)})`` of a windowed modality given its full array.

    ``centre(k, m)`` gives the patch centre on spatial axis ``k`` in the
    modality's edges (default: the ratio of shapes).
    """
    if centre is None:
        def centre(k, m):
            return shape_ratio_centre(start[k], stop[k], ref_shape[k], m)
    own = covered(size, axes, full.shape, spatial_axes) if size is not None else {}
    starts, sizes, where = [], [], {}
    for a, m in zip(axes, full.shape):
        if a in own:
            s, n = nearest_window_start(centre(spatial_axes.index(a), m), own[a]), own[a]
        elif a in spatial_axes:
            k = spatial_axes.index(a)
            s, n = mapped_window(start[k], stop[k], ref_shape[k], m)
        else:
            s, n = 0, m
        starts.append(s)
        sizes.append(n)
        if a in spatial_axes:
            where[a] = (s, s + n)
    return padded_read(full, starts, sizes, mode, pad_value), where


def oracle_position(where, spatial_axes):
    return np.array([where.get(a, (0, 1)) for a in spatial_axes], np.int64)


def assert_identical(actual, wanted):
    assert actual.dtype == wanted.dtype and actual.shape == wanted.shape
    assert actual.tobytes() == wanted.tobytes()


def write_zarr(path, data, chunks):
    array = zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=0)
    array[...] = data
    return str(path)


def sizes_strategy(axes="YX"):
    one = st.integers(1, 9)
    as_dict = st.dictionaries(st.sampled_from(list(axes) + [a.lower() for a in axes]), one, min_size=1).filter(
        lambda d: len({k.upper() for k in d}) == len(d)
    )
    return st.one_of(one, st.tuples(*[one for _ in axes]), st.lists(one, min_size=len(axes), max_size=len(axes)),
                     as_dict)


def normalised(size):
    return tuple(size) if isinstance(size, list) else size


# --------------------------------------------------------------------------- PatchReader: the pixels


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    ref_shape=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    context_shape=st.tuples(st.integers(1, 2), st.integers(1, 12), st.integers(1, 12)),
    labels_shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    size=sizes_strategy(),
    mode=st.sampled_from(PADDING_MODES),
    backend=st.sampled_from(["numpy", "zarr"]),
)
def test_context_window_is_the_nearest_centred_window_padded_like_numpy(
    data, ref_shape, context_shape, labels_shape, size, mode, backend
):
    rng = np.random.default_rng(0)
    arrays = {
        "images": rng.integers(0, 60000, ref_shape, dtype=np.uint16),
        "context": rng.integers(-100, 100, context_shape, dtype=np.int16),  # CYX, e.g. 7 for 20
        "labels": rng.integers(0, 255, labels_shape, dtype=np.uint8),  # not windowed: unchanged
    }
    axes = {"images": "YX", "context": "CYX", "labels": "YX"}
    pad_value = data.draw(st.sampled_from([0, 1, 7]), "pad_value")
    windows = data.draw(st.lists(
        st.tuples(st.integers(-25, 25), st.integers(-25, 25), st.integers(1, 30), st.integers(1, 30)),
        min_size=1, max_size=3,
    ), "windows")
    with tempfile.TemporaryDirectory() as tmp:
        images = {}
        for name, array in arrays.items():
            if backend == "zarr":
                chunks = tuple(data.draw(st.integers(1, 5), f"chunk {name}") for _ in array.shape)
                images[name] = open_image(write_zarr(Path(tmp, name), array, chunks), axes=axes[name])
            else:
                images[name] = open_image(array, axes=axes[name])
        coll = ImageCollection(images, spatial_axes="YX")
        reader = PatchReader(padding_mode=mode, pad_value=pad_value, window={"context": size}, cache_bytes=600)
        outs = [reader.read(coll, (y, x), (y + h, x + w), spatial_axes="YX") for y, x, h, w in windows]
        shapes = [reader.output_shapes(coll, (y, x), (y + h, x + w), spatial_axes="YX") for y, x, h, w in windows]
    for (y, x, h, w), out, shape in zip(windows, outs, shapes):
        start, stop = (y, x), (y + h, x + w)
        want, _ = oracle(arrays["context"], "CYX", "YX", start, stop, ref_shape, normalised(size), mode, pad_value)
        assert_identical(out["context"], want)
        labels, _ = oracle(arrays["labels"], "YX", "YX", start, stop, ref_shape, None, mode, pad_value)
        assert_identical(out["labels"], labels)
        assert_identical(out["images"], padded_read(arrays["images"], start, (h, w), mode, pad_value))
        assert shape == {k: (v.shape, v.dtype) for k, v in out.items()}


def test_a_level_two_context_of_256_around_the_patch():
    level0 = np.arange(2048 * 2048, dtype=np.int64).reshape(2048, 2048)
    level2 = level0[::4, ::4].copy()  # 512 x 512
    coll = ImageCollection({"images": open_image(level0, axes="YX"), "context": open_image(level2, axes="YX")},
                           spatial_axes="YX")
    out = PatchReader(window={"context": 256}).read(coll, (1024, 512), (1280, 768), spatial_axes="YX")
    # Patch centre (1152, 640) is (288, 160) at level 2: the context is [160, 416) x [32, 288).
    assert out["images"].shape == (256, 256) and out["context"].shape == (256, 256)
    np.testing.assert_array_equal(out["context"], level2[160:416, 32:288])


@pytest.mark.parametrize("start, stop, size, first", [
    ((0,), (3,), 2, 1),  # centre 1.5: [0, 2) and [1, 3) are as near; ties go right
    ((0,), (3,), 3, 0),  # centre 1.5, odd size: [0, 3) is centred exactly
    ((0,), (4,), 3, 1),  # centre 2: [0, 3) and [1, 4) tie; right
    ((0,), (4,), 2, 1),
    ((-5,), (2,), 4, -3),  # centre -1.5
])
def test_odd_and_even_sizes_round_half_up(start, stop, size, first):
    data = np.arange(10, dtype=np.uint8)
    coll = ImageCollection({"images": open_image(data, axes="X"), "context": open_image(data, axes="X")},
                           spatial_axes="X")
    out = PatchReader(window={"context": size}, padding_mode="wrap").read(coll, start, stop, spatial_axes="X")
    np.testing.assert_array_equal(out["context"], data[np.arange(first, first + size) % 10])


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    scales=st.sampled_from([("1", "2"), ("0.25", "1"), ("0.5", "1.5"), ("1", "3"), ("0.4", "1"), ("2", "1")]),
    translations=st.sampled_from([("0", "0"), ("0", "pyramid"), ("1.5", "0.75"), ("-2", "3.25")]),
    size=st.integers(1, 12),
    mode=st.sampled_from(PADDING_MODES),
)
def test_ome_placements_centre_the_context_in_physical_space(data, scales, translations, size, mode):
    """Levels of one OME-Zarr image with other scales and translations: the oracle works in micrometres."""
    s_ref, s_mod = (Fraction(v) for v in scales)
    t_ref = Fraction(translations[0])
    t_mod = (s_mod - s_ref) / 2 + t_ref if translations[1] == "pyramid" else Fraction(translations[1])
    n = data.draw(st.tuples(st.integers(4, 30), st.integers(4, 30)), "reference shape")
    m = tuple(max(1, round(k * s_ref / s_mod)) for k in n)  # the same physical extent
    rng = np.random.default_rng(1)
    level0, level1 = rng.integers(0, 255, n, dtype=np.uint8), rng.integers(0, 255, m, dtype=np.uint8)
    start = [data.draw(st.integers(-10, 30), "start") for _ in n]
    stop = [s + data.draw(st.integers(1, 20), "size") for s in start]
    with tempfile.TemporaryDirectory() as tmp:
        group = zarr.open_group(str(Path(tmp, "slide.zarr")), mode="w", zarr_format=2)
        datasets = []
        levels = [(level0, s_ref, t_ref), (level1, s_mod, t_mod)]
        order = [0, 1] if s_ref <= s_mod else [1, 0]  # levels decrease in size
        for i, (array, s, t) in enumerate([levels[j] for j in order]):
            group.create_array(str(i), data=array, chunks=(4, 4))
            datasets.append({"path": str(i), "coordinateTransformations": [
                {"type": "scale", "scale": [float(s)] * 2},
                {"type": "translation", "translation": [float(t)] * 2},
            ]})
        axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "yx"]
        group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
        path = str(Path(tmp, "slide.zarr"))
        coll = ImageCollection({
            "images": open_image(path, level=order.index(0)), "context": open_image(path, level=order.index(1)),
        }, spatial_axes="YX")
        assert [amap.ratio for amap in coll.window_maps("context")] == [s_ref / s_mod] * 2  # not the fallback
        out = PatchReader(window={"context": size}, padding_mode=mode).read(coll, start, stop, spatial_axes="YX")

    def centre(k, _):
        return physical_centre(start[k], stop[k], (s_ref, t_ref), (s_mod, t_mod))

    want, _ = oracle(level1, "YX", "YX", start, stop, n, size, mode, centre=centre)
    assert_identical(out["context"], want)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    ref_shape=st.tuples(st.integers(1, 6), st.integers(1, 14), st.integers(1, 14)),
    flat_shape=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    volume_shape=st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
    size=sizes_strategy("ZYX"),
    mode=st.sampled_from(PADDING_MODES),
)
def test_axes_a_modality_lacks_keep_their_behaviour(data, ref_shape, flat_shape, volume_shape, size, mode):
    """ZYX patches: a YX context (no Z) and a CZYX one whose Z may have extent 1."""
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 9, ref_shape, dtype=np.uint8)
    flat = rng.integers(0, 9, flat_shape, dtype=np.uint8)
    volume = rng.integers(0, 9, (2, *volume_shape), dtype=np.uint8)
    coll = ImageCollection({
        "images": open_image(ref, axes="ZYX"), "flat": open_image(flat, axes="YX"),
        "volume": open_image(volume, axes="CZYX"),
    }, spatial_axes="ZYX")
    start = [data.draw(st.integers(-4, 8), "start") for _ in ref_shape]
    stop = [s + data.draw(st.integers(1, 9), "size") for s in start]
    window = {"flat": size, "volume": size}
    out = PatchReader(window=window, padding_mode=mode).read(coll, start, stop, spatial_axes="ZYX")
    for name, full, axes in (("flat", flat, "YX"), ("volume", volume, "CZYX")):
        want, _ = oracle(full, axes, "ZYX", start, stop, ref_shape, normalised(size), mode)
        assert_identical(out[name], want)


# --------------------------------------------------------------------------- PatchDataset: samples, batches, spec


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A (2, 40, 36) uint16 image in chunks of 8, a (13, 11) context (non-integer scale) and labels, zarr v3."""
    root = tmp_path_factory.mktemp("context")
    rng = np.random.default_rng(3)
    arrays = {
        "image": rng.integers(0, 65535, (2, 40, 36), dtype=np.uint16),
        "context": rng.integers(0, 255, (3, 13, 11), dtype=np.uint8),
        "labels": rng.integers(0, 5, (20, 18), dtype=np.uint8),
    }
    group = zarr.open_group(root / "slide.zarr", mode="w", zarr_format=3)
    for name, chunks in (("image", (2, 8, 8)), ("context", (3, 4, 4)), ("labels", (5, 5))):
        group.create_array(name, data=arrays[name], chunks=chunks)
    mask = np.zeros((5, 6), bool)
    mask[1:4, 1:5] = True
    return {"path": str(root / "slide.zarr"), "mask": mask, **arrays}


def slide_collection(slide):
    return ImageCollection({
        "images": open_image(slide["path"], data_group="image", axes="CYX"),
        "context": open_image(slide["path"], data_group="context", axes="CYX"),
        "labels": open_image(slide["path"], data_group="labels", axes="YX"),
        "masks": open_image(slide["mask"], axes="YX"),
    }, spatial_axes="YX")


def stacked(samples):
    return {k: np.stack([np.asarray(s[k]) for s in samples]) for k in samples[0]}


def assert_batch_equal(batch, samples):
    expected = stacked(samples)
    assert list(batch) == list(expected)
    for key, value in expected.items():
        assert batch[key].shape == value.shape and batch[key].dtype == value.dtype, key
        np.testing.assert_array_equal(batch[key], value, err_msg=key)


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    patch=st.integers(3, 12),
    pad=st.integers(0, 3),
    size=sizes_strategy(),
    mode=st.sampled_from(PADDING_MODES),
    batch_size=st.integers(1, 7),
    output_yxc=st.booleans(),
)
def test_samples_batches_positions_and_spec(slide, data, patch, pad, size, mode, batch_size, output_yxc):
    ds = PatchDataset(
        slide_collection(slide), PatchSampler(patch, pad=pad, spatial_axes="YX", allow_incomplete_patches=True),
        window={"context": size}, return_positions=True, padding_mode=mode, cache_bytes=2000, shuffle=True,
        output_axes={"context": "YXC"} if output_yxc else None,
    )
    samples = list(ds.epoch(0))
    assert list(samples[0]) == ["images", "context", "labels", "position", "image_index", "context_position"]
    for s in samples:
        start, stop = s["position"][:, 0], s["position"][:, 1]
        want, where = oracle(slide["context"], "CYX", "YX", start, stop, (40, 36), normalised(size), mode)
        assert_identical(s["context"], np.moveaxis(want, 0, -1) if output_yxc else want)
        assert s["context_position"].dtype == np.int64
        np.testing.assert_array_equal(s["context_position"], oracle_position(where, "YX"))
    spec = sample_spec(ds)
    assert list(spec) == list(samples[0])
    assert spec == {k: (np.shape(v), np.asarray(v).dtype) for k, v in samples[0].items()}
    got = list(ds.epoch(0).batches(batch_size))
    for k, batch in enumerate(got):
        assert_batch_equal(batch, samples[k * batch_size: (k + 1) * batch_size])
    indices = data.draw(st.lists(st.integers(-len(ds), len(ds) - 1), min_size=1, max_size=5), "indices")
    assert_batch_equal(ds.read_batch(indices), [ds[i] for i in indices])


def test_positions_of_an_axis_the_modality_lacks_are_zero_to_one():
    ref = np.zeros((4, 20, 20), np.uint8)
    coll = ImageCollection({"images": open_image(ref, axes="ZYX"), "context": open_image(ref[0, ::2, ::2], axes="YX")},
                           spatial_axes="ZYX")
    ds = PatchDataset(coll, PatchSampler((2, 10, 10), spatial_axes="ZYX"), window={"context": 8},
                      return_positions=True)
    sample = ds[0]
    assert sample["context"].shape == (8, 8)
    # Patch [0, 10) x [0, 10): centre 2.5 at half scale; [-1, 7) (ties go right).
    np.testing.assert_array_equal(sample["context_position"], [[0, 1], [-1, 7], [-1, 7]])
    assert ds.read_batch([0, 1])["context_position"].shape == (2, 3, 2)
    assert sample_spec(ds)["context_position"] == ((3, 2), np.dtype(np.int64))


def test_positions_need_return_positions(slide):
    ds = PatchDataset(slide_collection(slide), PatchSampler(8, spatial_axes="YX"), window={"context": 5})
    assert list(ds[0]) == ["images", "context", "labels"] == list(sample_spec(ds))
    assert ds[0]["context"].shape == (3, 5, 5)


# --------------------------------------------------------------------------- the chunk cache and the read-ahead


def chunks_shown(where, chunks, shape):
    """Storage chunks under the in-image part of a window ``{axis: (start, stop)}`` (pixel by pixel)."""
    per_axis = [range(max(a, 0), min(b, m)) for (a, b), m in zip(where, shape)]
    if any(len(r) == 0 for r in per_axis):
        return set()
    grids = np.meshgrid(*[np.arange(r.start, r.stop) for r in per_axis], indexing="ij")
    coords = np.stack([g.ravel() for g in grids], axis=-1)
    return {tuple(c) for c in (coords // np.asarray(chunks)).tolist()}


def test_chunk_requests_and_prefetch_cover_the_context_window(slide):
    coll = slide_collection(slide)
    reader = PatchReader(window={"context": (6, 9)}, prefetch_workers=2)
    start, stop = (16, 8), (24, 16)  # centre (20, 12) -> context centre (6.5, 3.67)
    requests = reader.chunk_requests(coll, start, stop, spatial_axes="YX")
    context = {key[-1] for key, *_ in requests if key[1] == "context"}
    _, where = oracle(slide["context"][0], "YX", "YX", start, stop, (40, 36), (6, 9), "constant")
    assert where == {"Y": (4, 10), "X": (-1, 8)}
    assert context == {(0, *c) for c in chunks_shown([where["Y"], where["X"]], (4, 4), (13, 11))}
    reader.prefetch(coll, start, stop, spatial_axes="YX")
    deadline = time.monotonic() + 10
    while reader.stats()["chunk_reads"] < len(requests) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert reader.stats()["chunk_reads"] == len(requests)
    out = reader.read(coll, start, stop, spatial_axes="YX")
    assert reader.stats()["chunk_reads"] == len(requests)  # every chunk came from the prefetch
    want, _ = oracle(slide["context"], "CYX", "YX", start, stop, (40, 36), (6, 9), "constant")
    assert_identical(out["context"], want)


def test_an_epoch_reads_each_context_chunk_once(slide):
    coll = slide_collection(slide)
    ds = PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), window={"context": 7}, prefetch=16)
    needed = set()
    for i in range(len(ds)):
        needed |= {key for key, *_ in ds._chunk_requests(i)}
    assert any(key[1] == "context" for key in needed)
    samples = list(ds.epoch(0))
    assert len(samples) == len(ds)
    assert ds.stats()["chunk_reads"] == len(needed)


# --------------------------------------------------------------------------- configuration: errors, state


def test_a_state_of_another_window_is_refused(slide):
    sampler = PatchSampler(8, spatial_axes="YX")
    make = lambda **kw: PatchDataset(slide_collection(slide), sampler, seed=1, **kw)  # noqa: E731
    it = make(window={"context": 5}).epoch(0)
    next(it)
    state = it.state()
    assert len(list(make(window={"context": 5}).epoch(state=state))) == len(it) - 1
    for other in ({}, {"window": {"context": 6}}, {"window": {"context": (5, 5)}}):
        with pytest.raises(ZarrsampleError, match="configuration"):
            make(**other).epoch(state=state)
    assert make().fingerprint == make(window=None).fingerprint == make(window={}).fingerprint


@pytest.mark.parametrize("window, error, match", [
    ([("context", 5)], TypeError, r"window must be None or a dict \{modality: size\}"),
    ({1: 5}, TypeError, r"window keys must be modality names \(str\), got 1"),
    ({"context": 0}, ZarrsampleError, r"window\['context'\] must be >= 1, got 0"),
    ({"context": -3}, ZarrsampleError, r"window\['context'\] must be >= 1, got -3"),
    ({"context": True}, TypeError, r"window\['context'\] must be an int, a sequence"),
    ({"context": 2.5}, TypeError, r"window\['context'\] must be an int, a sequence .* got float 2.5"),
    ({"context": "256"}, TypeError, r"window\['context'\] must be an int, a sequence"),
    ({"context": (4, 0)}, ZarrsampleError, r"window\['context'\]\[1\] must be >= 1, got 0"),
    ({"context": (4, 2.0)}, TypeError, r"window\['context'\]\[1\] must be an int >= 1, got float 2.0"),
    ({"context": ()}, ZarrsampleError, r"window\['context'\] must have one size per spatial axis"),
    ({"context": {}}, ZarrsampleError, r"window\['context'\] must name at least one axis"),
    ({"context": {"Q": 4}}, ZarrsampleError, r"window\['context'\] keys must be axis letters .* got 'Q'"),
    ({"context": {"Y": 0}}, ZarrsampleError, r"window\['context'\]\['Y'\] must be >= 1, got 0"),
    ({"context": {"y": 4, "Y": 4}}, ZarrsampleError, r"window\['context'\]=\{'y': 4, 'Y': 4\} gives axis 'Y' twice"),
])
def test_bad_windows_are_refused_at_construction(slide, window, error, match):
    with pytest.raises(error, match=match):
        PatchReader(window=window)
    with pytest.raises(error, match=match):
        PatchDataset(slide_collection(slide), PatchSampler(8, spatial_axes="YX"), window=window)


@pytest.mark.parametrize("window, match", [
    ({"ctx": 5}, r"window names modalities \['ctx'\] that collection 0 does not return; "
                 r"modalities: \['images', 'context', 'labels'\]"),
    ({"masks": 5}, r"window names modalities \['masks'\] that collection 0 does not return \('masks' is the "
                   r"mask, which is never returned\); modalities: \['images', 'context', 'labels'\]"),
    ({"context": (5, 5, 5)}, r"window\['context'\]=\(5, 5, 5\) has 3 values but spatial_axes='YX' has 2"),
    ({"context": {"Z": 5}}, r"window\['context'\]=\{'Z': 5\} names axes \['Z'\] that are not in spatial_axes='YX'"),
])
def test_windows_that_do_not_fit_the_collection_are_refused(slide, window, match):
    coll = slide_collection(slide)
    with pytest.raises(ZarrsampleError, match=match):
        PatchDataset(coll, PatchSampler(8, spatial_axes="YX"), window=window)
    reader = PatchReader(window=window)  # the reader learns the collection at read time
    with pytest.raises(ZarrsampleError, match=match.replace("collection 0", "the collection")):
        reader.read(coll, (0, 0), (8, 8), spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match=match.replace("collection 0", "the collection")):
        reader.chunk_requests(coll, (0, 0), (8, 8), spatial_axes="YX")


def test_a_position_key_that_hides_a_modality_is_refused():
    data = np.zeros((16, 16), np.uint8)
    coll = ImageCollection({name: open_image(data, axes="YX") for name in ("images", "context", "context_position")},
                           spatial_axes="YX")
    sampler = PatchSampler(8, spatial_axes="YX")
    with pytest.raises(ZarrsampleError, match="adds the key 'context_position', which is a modality"):
        PatchDataset(coll, sampler, window={"context": 4}, return_positions=True)
    assert PatchDataset(coll, sampler, window={"context": 4})[0]["context"].shape == (4, 4)


def test_the_reader_pickles_and_prints_its_window():
    import pickle

    reader = PatchReader(window={"context": [4, 6]})
    assert reader.window == {"context": (4, 6)}
    assert pickle.loads(pickle.dumps(reader)).window == {"context": (4, 6)}
    assert "window={'context': (4, 6)}" in repr(reader)
    assert "window" not in repr(PatchReader())


# --------------------------------------------------------------------------- adapters


def test_torch_batches_carry_the_context_and_its_position(slide):
    pytest.importorskip("torch")
    from zarrsample_torch import PatchIterableDataset

    ds = PatchDataset(slide_collection(slide), PatchSampler(8, spatial_axes="YX"), window={"context": 5},
                      return_positions=True)
    batch = next(iter(PatchIterableDataset(ds, batch_size=3)))
    core = ds.read_batch(ds.order(0)[:3])
    assert batch["context"].shape == (3, 3, 5, 5) and batch["context_position"].shape == (3, 2, 2)
    for key, value in core.items():
        np.testing.assert_array_equal(batch[key].numpy(), value, err_msg=key)
