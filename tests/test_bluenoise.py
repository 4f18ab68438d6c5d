"""Tests for ``poisson_disk_positions`` and ``poisson_disk_tiles`` (zarrsample_core.planning._bluenoise).

The reference for the distance rule is a deliberately naive all-pairs
computation that uses the documented formula: ``sq = (d0*d0 + d1*d1) + d2*d2``
with ``dk = a[k] - b[k]`` in float64, compared as ``sq >= radius * radius``.
"""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.stats import qmc

from zarrsample_core import _bluenoise
from zarrsample_core.planning._bluenoise import poisson_disk_positions, poisson_disk_tiles, stream_keys
from zarrsample_core.planning._bluenoise_grid import HashDraws, mix
from zarrsample_core._errors import ZarrsampleError

FAST = settings(max_examples=60, deadline=None)
#: Count and sha256 prefix of the little-endian bytes of a reference 2-D draw.
KNOWN_2D = (54, "2862be6249e0c0fd")
#: Points per pattern and sha256 prefix (points, then patterns, little-endian) of a reference tile draw.
KNOWN_TILES = ([53, 49, 54], "617e3445f6333d8f")
#: The first outputs of the SplitMix64 reference generator (Vigna's splitmix64.c) seeded with 1234567.
SPLITMIX64_1234567 = [6457827717110365317, 3203168211198807973, 9817491932198370423]


def naive_min_squared_distance(points: np.ndarray) -> float:
    """Smallest ``sq`` over all pairs, with the documented left-to-right sum."""
    n, dim = points.shape
    if n < 2:
        return math.inf
    diff = points[:, None, 0] - points[None, :, 0]
    sq = diff * diff
    for k in range(1, dim):
        diff = points[:, None, k] - points[None, :, k]
        sq = sq + diff * diff
    return float(sq[~np.eye(n, dtype=bool)].min())


@st.composite
def problems(draw: st.DrawFn) -> tuple[list[float], float]:
    """An extent (1-3 axes, possibly shorter than the radius or very
    anisotropic) and a radius, with at most a few hundred expected points."""
    dim = draw(st.integers(1, 3))
    radius = 2.0 ** draw(st.floats(-12, 12))
    factors = [2.0 ** draw(st.floats(-10, 11)) for _ in range(dim)]  # extent / radius per axis
    total = math.prod(max(f, 1.0) for f in factors)
    if total > 300:  # keep the brute-force reference cheap: shrink the long axes alike
        power = math.log(300) / math.log(total)
        factors = [f**power if f > 1 else f for f in factors]
    return [f * radius for f in factors], radius


@FAST
@given(problems(), st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_points_lie_in_the_box_and_keep_the_radius(problem, seed, attempts):
    extent, radius = problem
    points = poisson_disk_positions(extent, radius, rng=np.random.default_rng(seed), attempts=attempts)
    assert points.dtype == np.float64
    assert points.ndim == 2 and points.shape[1] == len(extent)
    assert len(points) >= 1
    assert (points >= 0).all()
    assert (points < np.asarray(extent)).all()
    assert naive_min_squared_distance(points) >= radius * radius


@settings(max_examples=25, deadline=None)
@given(problems(), st.integers(0, 2**32 - 2))
def test_same_seed_same_points_other_seed_other_points(problem, seed):
    extent, radius = problem
    first = poisson_disk_positions(extent, radius, rng=np.random.default_rng(seed))
    again = poisson_disk_positions(extent, radius, rng=np.random.default_rng(seed))
    other = poisson_disk_positions(extent, radius, rng=np.random.default_rng(seed + 1))
    assert first.tobytes() == again.tobytes()
    # A domain barely larger than the radius can leave one possible point
    # (e.g. extent 1 + 2e-16, radius 1: often just [1.0]); seeds differ only
    # where there is room for randomness.
    if min(extent) >= 2 * radius:
        assert first.shape != other.shape or not np.array_equal(first, other)


@settings(max_examples=25, deadline=None)
@given(problems(), st.integers(0, 2**32 - 1))
def test_points_are_sorted_by_grid_cell(problem, seed):
    extent, radius = problem
    points = poisson_disk_positions(extent, radius, rng=np.random.default_rng(seed))
    cell = np.floor(points / (radius / math.sqrt(len(extent)))).astype(np.int64)
    order = np.lexsort(cell.T[::-1])  # C order: first axis most significant
    assert (order == np.arange(len(points))).all()
    assert len(np.unique(cell, axis=0)) == len(points)  # at most one point per cell


@pytest.mark.parametrize(
    "extent, radius",
    [
        ((0.5,), 1.0),
        ((0.1, 0.2), 1.0),
        ((1e-9, 3e-9, 2e-9), 5.0),
        ((1e-300,), 1e300),
        ((7, 3), 100),
        ((1.0, 1e-6), 0.5),
    ],
)
@pytest.mark.parametrize("attempts", [1, 30])
def test_one_point_when_the_box_is_smaller_than_the_radius(extent, radius, attempts):
    points = poisson_disk_positions(extent, radius, rng=np.random.default_rng(3), attempts=attempts)
    assert len(points) >= 1
    assert ((points >= 0) & (points < np.asarray(extent, float))).all()
    assert naive_min_squared_distance(points) >= float(radius) * float(radius)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_extent_an_exact_multiple_of_the_cell_side(dim):
    radius = 3.0
    extent = [radius / math.sqrt(dim) * n for n in (11, 7, 5)[:dim]]
    points = poisson_disk_positions(extent, radius, rng=np.random.default_rng(5))
    assert (points < np.asarray(extent)).all() and (points >= 0).all()
    assert naive_min_squared_distance(points) >= radius * radius


def test_very_anisotropic_box_keeps_the_radius():
    extent, radius = (2000.0, 0.01), 1.0
    points = poisson_disk_positions(extent, radius, rng=np.random.default_rng(9))
    assert naive_min_squared_distance(points) >= radius * radius
    assert 0.7 * 2000 < len(points) < 2000  # a maximal 1-D packing: gaps in [1, 2)


def test_integer_inputs_and_numpy_extent():
    a = poisson_disk_positions((64, 48), 6, rng=np.random.default_rng(1))
    b = poisson_disk_positions(np.array([64, 48]), 6.0, rng=np.random.default_rng(1))
    assert np.array_equal(a, b)


def test_global_random_state_is_untouched():
    np_state, py_state = np.random.get_state(), random.getstate()
    poisson_disk_positions((100.0, 100.0), 5.0, rng=np.random.default_rng(0))
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(np_state, after)) and random.getstate() == py_state


def test_known_output_is_stable():
    # Same generator state -> same bytes on every machine: a change here changes
    # every BlueNoisePatchSampler pattern for a given seed.
    points = poisson_disk_positions((40.0, 25.0), 4.0, rng=np.random.default_rng(2024))
    digest = hashlib.sha256(points.astype("<f8").tobytes()).hexdigest()
    assert (len(points), digest[:16]) == KNOWN_2D


@pytest.mark.parametrize(
    "dim, extent, radius", [(1, (3000.0,), 1.0), (2, (1024.0, 1024.0), 16.0), (3, (96.0, 96.0, 96.0), 8.0)]
)
def test_near_maximal(dim, extent, radius):
    """Every probe lies within 2 radii of a point; almost none is >= radius away."""
    points = poisson_disk_positions(extent, radius, rng=np.random.default_rng(0))
    probes = np.random.default_rng(1).random((20000, dim)) * np.asarray(extent)
    dist, _ = cKDTree(points).query(probes)
    assert dist.max() < 2 * radius
    assert (dist >= radius).mean() < 1e-3


def test_density_against_scipy_poisson_disk():
    side, radius = 1024.0, 16.0
    ours = len(poisson_disk_positions((side, side), radius, rng=np.random.default_rng(0)))
    counts = {}
    for hypersphere in ("surface", "volume"):
        engine = qmc.PoissonDisk(d=2, radius=radius / side, hypersphere=hypersphere, ncandidates=30, seed=0)
        counts[hypersphere] = len(engine.fill_space())
    # Within 15% of scipy's denser "surface" variant (the benchmark's reference) ...
    assert 0.85 <= ours / counts["surface"] <= 1.15
    # ... and at least as dense as its default "volume" (annulus) variant.
    assert ours >= counts["volume"]


# -- one pattern per key (poisson_disk_tiles) -------------------------------


def naive_mix(z: int) -> int:
    """SplitMix64's output function on Python ints."""
    mask = 2**64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_mix_is_splitmix64():
    state, outputs = 1234567, []
    for _ in range(3):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        outputs.append(int(mix(np.array([state], np.uint64))[0]))
    assert outputs == SPLITMIX64_1234567


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_mix_and_stream_keys_against_python_ints(words):
    assert mix(np.array(words, np.uint64)).tolist() == [naive_mix(w) for w in words]
    w0, w1 = (int(w) for w in np.random.SeedSequence([3, 4]).generate_state(2, np.uint64))
    expected = [naive_mix((naive_mix(w ^ w0) + w1) % 2**64) for w in words]
    assert stream_keys([3, 4], words).tolist() == expected


def test_stream_keys_depend_on_the_id_alone():
    ids = np.arange(10_000, dtype=np.int64)
    keys = stream_keys([7, 0], ids)
    assert keys.dtype == np.uint64 and len(np.unique(keys)) == ids.size
    assert np.array_equal(stream_keys([7, 0], ids[::-7]), keys[::-7])
    assert not np.array_equal(stream_keys([7, 1], ids), keys)


@settings(max_examples=40, deadline=None)
@given(problems(), st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4), st.integers(1, 40))
def test_every_pattern_lies_in_the_box_and_keeps_the_radius(problem, keys, attempts):
    extent, radius = problem
    points, pattern = poisson_disk_tiles(extent, radius, keys, attempts=attempts)
    assert points.dtype == np.float64 and points.shape == (len(pattern), len(extent))
    assert pattern.dtype == np.int64 and (np.diff(pattern) >= 0).all()
    assert np.array_equal(np.unique(pattern), np.arange(len(keys)))  # >= 1 point per pattern
    assert (points >= 0).all() and (points < np.asarray(extent)).all()
    for k in range(len(keys)):
        own = points[pattern == k]
        assert naive_min_squared_distance(own) >= radius * radius
        cell = np.floor(own / (radius / math.sqrt(len(extent)))).astype(np.int64)
        assert (np.lexsort(cell.T[::-1]) == np.arange(len(own))).all()


@settings(max_examples=25, deadline=None)
@given(problems(), st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=5, unique=True), st.randoms())
def test_a_pattern_does_not_depend_on_the_other_keys(problem, keys, shuffler):
    extent, radius = problem
    points, pattern = poisson_disk_tiles(extent, radius, keys)
    order = list(range(len(keys)))
    shuffler.shuffle(order)
    others, other_pattern = poisson_disk_tiles(extent, radius, [keys[i] for i in order])
    for position, k in enumerate(order):
        alone, _ = poisson_disk_tiles(extent, radius, [keys[k]])
        assert alone.tobytes() == points[pattern == k].tobytes()
        assert alone.tobytes() == others[other_pattern == position].tobytes()


def test_blocks_do_not_change_the_patterns(monkeypatch):
    keys = stream_keys([5], np.arange(40))
    whole, whole_pattern = poisson_disk_tiles((300.0, 200.0), 20.0, keys)
    monkeypatch.setattr(_bluenoise, "_BLOCK_CELLS", 500)  # a few tiles per block
    blocked, blocked_pattern = poisson_disk_tiles((300.0, 200.0), 20.0, keys)
    assert np.array_equal(whole, blocked) and np.array_equal(whole_pattern, blocked_pattern)
    assert not np.array_equal(whole[whole_pattern == 0], whole[whole_pattern == 1][: (whole_pattern == 0).sum()])


def test_the_dart_schedule_does_not_change_tile_patterns(monkeypatch):
    # Darts are numbered per cell, so throwing them in other groups (one count
    # for all cells, as for a Generator) must give the same first accepted dart.
    keys = stream_keys([9], np.arange(50))
    cases = [((449.0, 449.0), 90.5, 30), ((120.0, 120.0), 3.0, 60), ((30.0, 40.0, 20.0), 4.0, 30)]
    local = [poisson_disk_tiles(e, r, keys[:5] if len(e) == 3 else keys, attempts=a) for e, r, a in cases]
    monkeypatch.setattr(HashDraws, "local", False)
    for (e, r, a), (points, pattern) in zip(cases, local):
        shared, shared_pattern = poisson_disk_tiles(e, r, keys[:5] if len(e) == 3 else keys, attempts=a)
        assert np.array_equal(points, shared) and np.array_equal(pattern, shared_pattern)


def test_known_tile_output_is_stable():
    # Same key -> same bytes on every machine: a change here changes every
    # BlueNoisePatchSampler(resample_positions=True) pattern for a given seed.
    points, pattern = poisson_disk_tiles((40.0, 25.0), 4.0, [0, 2024, 2**64 - 1])
    digest = hashlib.sha256(points.astype("<f8").tobytes() + pattern.astype("<i8").tobytes()).hexdigest()
    assert (np.bincount(pattern).tolist(), digest[:16]) == KNOWN_TILES


@pytest.mark.parametrize(
    "dim, extent, radius", [(1, (3000.0,), 1.0), (2, (1024.0, 1024.0), 16.0), (3, (96.0, 96.0, 96.0), 8.0)]
)
def test_tile_patterns_are_near_maximal_and_as_dense(dim, extent, radius):
    points, pattern = poisson_disk_tiles(extent, radius, stream_keys([0], [0, 1, 2]))
    probes = np.random.default_rng(1).random((20000, dim)) * np.asarray(extent)
    for k in range(3):
        dist, _ = cKDTree(points[pattern == k]).query(probes)
        assert dist.max() < 2 * radius
        assert (dist >= radius).mean() < 1e-3
    single = np.mean([len(poisson_disk_positions(extent, radius, rng=np.random.default_rng(s))) for s in range(3)])
    assert abs(len(points) / 3 / single - 1) < 0.02


def test_no_keys_no_points():
    points, pattern = poisson_disk_tiles((10.0, 10.0), 1.0, np.zeros(0, np.uint64))
    assert points.shape == (0, 2) and points.dtype == np.float64 and pattern.shape == (0,)


@pytest.mark.parametrize("keys", [[-1], [2**64], np.array([-3])])
def test_keys_out_of_range(keys):
    with pytest.raises(ZarrsampleError, match=r"keys must be in \[0, 2\*\*64\), got -?\d+"):
        poisson_disk_tiles((10.0,), 1.0, keys)


@pytest.mark.parametrize("keys", [3, "ab", [1.5], [True], np.zeros((2, 2), np.int64), np.array([1.0])])
def test_keys_of_the_wrong_type(keys):
    with pytest.raises(TypeError, match="keys must"):
        poisson_disk_tiles((10.0,), 1.0, keys)


def test_stream_key_ids_are_checked():
    with pytest.raises(ZarrsampleError, match=r"ids must be in \[0, 2\*\*64\), got -1"):
        stream_keys([0], [-1])
    with pytest.raises(TypeError, match="ids must be a 1-D sequence of ints, got float"):
        stream_keys([0], 2.0)  # type: ignore[arg-type]


def test_tile_options_are_checked_like_single_patterns():
    with pytest.raises(ZarrsampleError, match="attempts must be >= 1, got 0"):
        poisson_disk_tiles((10.0,), 1.0, [1], attempts=0)
    with pytest.raises(ZarrsampleError, match="radius must be positive and finite"):
        poisson_disk_tiles((10.0,), -1.0, [1])
    with pytest.raises(ZarrsampleError, match=r"needs about .* grid cells .* at most 2\*\*32"):
        poisson_disk_tiles((1e6, 1e6), 1e-3, [1])
    with pytest.raises(TypeError):
        poisson_disk_tiles((10.0,), 1.0, [1], 30)  # type: ignore[misc]


# -- errors ------------------------------------------------------------------


@pytest.mark.parametrize("extent", [(), (1.0, 2.0, 3.0, 4.0)])
def test_wrong_number_of_axes(extent):
    with pytest.raises(ZarrsampleError, match=r"extent must have 1, 2 or 3 values .* got \d"):
        poisson_disk_positions(extent, 1.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("extent", [(0.0, 1.0), (-3.0,), (1.0, float("nan")), (float("inf"), 1.0)])
def test_non_positive_extent(extent):
    with pytest.raises(ZarrsampleError, match="extent values must be positive and finite, got"):
        poisson_disk_positions(extent, 1.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("extent", [5.0, "ab", None, np.ones((2, 2)), (1.0, "2"), (True, 1.0)])
def test_extent_of_the_wrong_type(extent):
    with pytest.raises(TypeError, match="extent must"):
        poisson_disk_positions(extent, 1.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_radius(radius):
    with pytest.raises(ZarrsampleError, match="radius must be positive and finite, got"):
        poisson_disk_positions((10.0, 10.0), radius, rng=np.random.default_rng(0))


@pytest.mark.parametrize("radius", ["1", None, True, [1.0]])
def test_radius_of_the_wrong_type(radius):
    with pytest.raises(TypeError, match="radius must be a positive real number, got"):
        poisson_disk_positions((10.0, 10.0), radius, rng=np.random.default_rng(0))


@pytest.mark.parametrize("attempts", [0, -5])
def test_attempts_below_one(attempts):
    with pytest.raises(ZarrsampleError, match=rf"attempts must be >= 1, got {attempts}"):
        poisson_disk_positions((10.0,), 1.0, rng=np.random.default_rng(0), attempts=attempts)


@pytest.mark.parametrize("attempts", [2.5, True, "3"])
def test_attempts_of_the_wrong_type(attempts):
    with pytest.raises(TypeError, match="attempts must be an int >= 1, got"):
        poisson_disk_positions((10.0,), 1.0, rng=np.random.default_rng(0), attempts=attempts)


@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0), random.Random(0), np.random.PCG64(0)])
def test_rng_must_be_a_generator(rng):
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator .* got"):
        poisson_disk_positions((10.0,), 1.0, rng=rng)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        poisson_disk_positions((10.0,), 1.0, np.random.default_rng(0))  # type: ignore[misc]


def test_too_many_cells():
    with pytest.raises(ZarrsampleError, match=r"needs about .* grid cells .* at most 2\*\*32"):
        poisson_disk_positions((1e6, 1e6), 1e-3, rng=np.random.default_rng(0))
