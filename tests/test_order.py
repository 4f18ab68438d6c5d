"""Epoch order, shards and resumable state: invariants, a naive oracle, errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarrsample_core import _order
from zarrsample_core._errors import ZarrsampleError
from zarrsample_core.epochs._order import _shuffle_ties, epoch_order, shard, shard_length
from zarrsample_core.epochs._state import (
    STATE_VERSION,
    check_state,
    config_fingerprint,
    make_state,
)

chunk_sizes = st.lists(st.integers(0, 40), max_size=60)
seeds = st.integers(0, 2**40)
epochs = st.integers(0, 10_000)
windows = st.one_of(st.none(), st.integers(1, 6))
#: (draw_same_chunk, shuffle_window) of every shuffled mode.
modes = st.one_of(st.tuples(st.just(True), st.just(8)), st.tuples(st.just(False), windows))


def chunk_of_patch(sizes) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), np.asarray(sizes, dtype=np.int64))


def runs(values: np.ndarray) -> list:
    """The values of the maximal runs of equal consecutive entries."""
    return [v for i, v in enumerate(values.tolist()) if i == 0 or values[i - 1] != v]


def naive_shard(order, rank, world_size, worker, num_workers, drop_remainder) -> list[int]:
    """Deliberately plain: walk every position of the padded order once."""
    n = len(order)
    if n == 0:
        return []
    per_rank = n // world_size if drop_remainder else (n + world_size - 1) // world_size
    mine = []
    for position in range(per_rank * world_size):
        if position // per_rank != rank:
            continue
        offset = position - rank * per_rank
        # np.array_split: the first per_rank % num_workers parts are one longer.
        owner, start = 0, 0
        while True:
            size = per_rank // num_workers + (1 if owner < per_rank % num_workers else 0)
            if offset < start + size:
                break
            start += size
            owner += 1
        if owner == worker:
            mine.append(int(order[position % n]))
    return mine


# --- epoch_order ---------------------------------------------------------------------


@given(chunk_sizes, seeds, epochs, modes)
def test_order_is_a_deterministic_permutation(sizes, seed, epoch, mode):
    draw_same_chunk, window = mode
    kwargs = dict(seed=seed, epoch=epoch, shuffle=True, draw_same_chunk=draw_same_chunk, shuffle_window=window)
    order = epoch_order(sizes, **kwargs)
    assert order.dtype == np.int64 and order.shape == (sum(sizes),)
    np.testing.assert_array_equal(np.sort(order), np.arange(sum(sizes)))
    np.testing.assert_array_equal(order, epoch_order(np.asarray(sizes, dtype=np.int32), **kwargs))


@given(chunk_sizes, seeds, epochs, modes)
def test_without_shuffle_plan_order(sizes, seed, epoch, mode):
    draw_same_chunk, window = mode
    order = epoch_order(sizes, seed=seed, epoch=epoch, shuffle=False, draw_same_chunk=draw_same_chunk,
                        shuffle_window=window)
    np.testing.assert_array_equal(order, np.arange(sum(sizes)))


@given(chunk_sizes, seeds, epochs)
def test_draw_same_chunk_finishes_each_chunk_before_the_next(sizes, seed, epoch):
    order = epoch_order(sizes, seed=seed, epoch=epoch, shuffle=True, draw_same_chunk=True)
    chunks = chunk_of_patch(sizes)[order]
    visited = runs(chunks)
    assert sorted(visited) == [g for g, size in enumerate(sizes) if size]  # one run per non-empty chunk


def test_draw_same_chunk_shuffles_inside_chunks_and_orders_chunks_at_random():
    sizes = [30, 30, 30]
    firsts, shuffled = set(), 0
    for epoch in range(20):
        order = epoch_order(sizes, seed=3, epoch=epoch, shuffle=True, draw_same_chunk=True)
        firsts.add(int(order[0]) // 30)
        shuffled += sum(not np.all(np.diff(order[i : i + 30]) > 0) for i in range(0, 90, 30))
    assert firsts == {0, 1, 2}
    assert shuffled == 60  # a sorted run of 30 has probability 1 / 30!


def assert_windows(sizes, order, window):
    """Each run of ``window`` non-empty chunks fills one contiguous block, alone."""
    chunks = chunk_of_patch(sizes)[order].tolist()
    remaining = sum(1 for size in sizes if size)
    start = 0
    while start < len(chunks):
        # The block's first `window` distinct chunks are exactly its chunks.
        members: list[int] = []
        for chunk in chunks[start:]:
            if chunk not in members:
                members.append(chunk)
            if len(members) == min(window, remaining):
                break
        stop = start + sum(sizes[g] for g in members)
        assert set(chunks[start:stop]) == set(members)
        assert len(members) == min(window, remaining)
        remaining -= len(members)
        start = stop
    assert remaining == 0


@given(chunk_sizes, seeds, epochs, st.integers(1, 6))
def test_window_of_chunks_is_one_contiguous_block(sizes, seed, epoch, window):
    assert_windows(sizes, epoch_order(sizes, seed=seed, epoch=epoch, shuffle=True, shuffle_window=window), window)


def test_window_mixes_patches_of_its_chunks():
    order = epoch_order([10] * 8, seed=0, epoch=0, shuffle=True, shuffle_window=4)
    assert len(runs(order[:40] // 10)) > 4  # not chunk by chunk
    assert len(set((order[:40] // 10).tolist())) == 4


@given(st.lists(st.integers(0, 40), min_size=1, max_size=30).filter(lambda s: sum(s) >= 20), seeds, modes)
def test_epochs_differ(sizes, seed, mode):
    kwargs = dict(seed=seed, shuffle=True, draw_same_chunk=mode[0], shuffle_window=mode[1])
    assert not np.array_equal(epoch_order(sizes, epoch=0, **kwargs), epoch_order(sizes, epoch=1, **kwargs))


@pytest.mark.parametrize("random_bits", [62, 1, 0])  # 0 and 1: nearly all sort keys tie
@pytest.mark.parametrize(
    ("sizes", "mode", "outcomes"),
    [([3], (False, 8), 6), ([2, 2], (True, 8), 8), ([1, 2], (False, 2), 6), ([2, 1], (False, None), 6)],
)
def test_orders_are_uniform(sizes, mode, outcomes, random_bits, monkeypatch):
    monkeypatch.setattr(_order, "_MAX_RANDOM_BITS", random_bits)
    counts = Counter(
        tuple(epoch_order(sizes, seed=11, epoch=e, shuffle=True, draw_same_chunk=mode[0], shuffle_window=mode[1]))
        for e in range(120 * outcomes)
    )
    assert len(counts) == outcomes
    assert min(counts.values()) > 60 and max(counts.values()) < 180  # expected 120, sd about 10


def test_tied_random_keys_are_shuffled_uniformly():
    index_bits = 3
    prefix = np.array([0, 5, 5, 5, 7, 9, 9], dtype=np.int64)
    base = (prefix << index_bits) | np.arange(7)
    seen = Counter()
    for seed in range(600):
        keys = base.copy()
        _shuffle_ties(keys, index_bits, np.random.default_rng(seed))
        np.testing.assert_array_equal(keys >> index_bits, prefix)
        assert keys[0] == base[0] and keys[4] == base[4]
        seen[tuple(keys & 7)] += 1
    assert len(seen) == 12  # 3! orders of the first tie times 2! of the second
    assert min(seen.values()) > 20


@pytest.mark.parametrize("random_bits", [62, 3, -1])  # -1: the stable-argsort fallback
def test_tied_keys_keep_windows_and_permutation(random_bits, monkeypatch):
    monkeypatch.setattr(_order, "_MAX_RANDOM_BITS", random_bits)
    sizes = np.random.default_rng(4).integers(0, 20, size=300).tolist()
    order = epoch_order(sizes, seed=5, epoch=0, shuffle=True, shuffle_window=3)
    np.testing.assert_array_equal(np.sort(order), np.arange(sum(sizes)))
    assert_windows(sizes, order, 3)
    assert len(runs(chunk_of_patch(sizes)[order])) > np.count_nonzero(sizes)  # windows mix their chunks
    order = epoch_order(sizes, seed=5, epoch=0, shuffle=True, draw_same_chunk=True)
    assert len(runs(chunk_of_patch(sizes)[order])) == np.count_nonzero(sizes)


def test_large_order_is_a_permutation():
    sizes = np.random.default_rng(0).integers(0, 30, size=20_000)
    order = epoch_order(sizes, seed=1, epoch=2, shuffle=True, draw_same_chunk=True)
    np.testing.assert_array_equal(np.bincount(order, minlength=sizes.sum()), np.ones(sizes.sum(), dtype=np.int64))
    assert len(runs(chunk_of_patch(sizes)[order])) == np.count_nonzero(sizes)


def test_empty_plan():
    for shuffle in (False, True):
        assert epoch_order([], seed=0, epoch=0, shuffle=shuffle).shape == (0,)
        assert epoch_order([0, 0], seed=0, epoch=0, shuffle=shuffle).shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(chunk_sizes=[[1, 2]]), ZarrsampleError, r"chunk_sizes must be 1-D .* shape \(1, 2\)"),
        (dict(chunk_sizes=[1, -2]), ZarrsampleError, r"chunk_sizes must be >= 0, got -2 at index 1"),
        (dict(chunk_sizes=[1.5]), TypeError, r"chunk_sizes must hold ints, got dtype float64"),
        (dict(seed=-1), ZarrsampleError, r"seed must be >= 0, got -1"),
        (dict(seed=1.0), TypeError, r"seed must be an int >= 0, got float 1.0"),
        (dict(epoch=True), TypeError, r"epoch must be an int >= 0, got bool True"),
        (dict(shuffle="yes"), TypeError, r"shuffle must be a bool, got str 'yes'"),
        (dict(shuffle_window=0), ZarrsampleError, r"shuffle_window must be >= 1, got 0"),
    ],
)
def test_epoch_order_errors(kwargs, error, match):
    arguments = dict(chunk_sizes=[2, 3], seed=0, epoch=0, shuffle=True) | kwargs
    with pytest.raises(error, match=match):
        epoch_order(arguments.pop("chunk_sizes"), **arguments)


# --- shard -----------------------------------------------------------------------------


@given(st.integers(0, 60), st.integers(1, 5), st.integers(1, 4), st.booleans(), seeds)
def test_shards_partition_the_padded_order(n, world_size, num_workers, drop_remainder, seed):
    order = np.random.default_rng(seed).permutation(n) + 100
    per_rank = n // world_size if drop_remainder else -(-n // world_size)
    options = dict(world_size=world_size, num_workers=num_workers, drop_remainder=drop_remainder)
    parts = {
        (r, w): shard(order, rank=r, worker=w, **options) for r in range(world_size) for w in range(num_workers)
    }
    # In (rank, worker) order the shards are the padded / truncated order: each position once.
    joined = np.concatenate([parts[key] for key in sorted(parts)])
    np.testing.assert_array_equal(joined, np.resize(order, per_rank * world_size) if n else order[:0])
    if drop_remainder:  # the epoch's list minus the dropped tail
        assert Counter(joined.tolist()) == Counter(order[: per_rank * world_size].tolist())
    else:  # the epoch's list plus a repeated prefix
        prefix = np.resize(order, per_rank * world_size - n) if n else order[:0]
        assert Counter(joined.tolist()) == Counter(order.tolist()) + Counter(prefix.tolist())
    for r in range(world_size):
        sizes = [parts[r, w].size for w in range(num_workers)]
        assert sum(sizes) == per_rank  # equal counts on every rank
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    for (r, w), part in parts.items():
        assert part.dtype == np.int64
        assert part.size == shard_length(n, rank=r, worker=w, **options)
        assert part.tolist() == naive_shard(order, r, world_size, w, num_workers, drop_remainder)


@given(chunk_sizes, seeds, epochs, st.integers(1, 5), st.integers(1, 4), st.booleans(), st.data())
def test_shard_of_an_epoch_matches_the_naive_walk(sizes, seed, epoch, world_size, num_workers, drop, data):
    order = epoch_order(sizes, seed=seed, epoch=epoch, shuffle=True)
    rank = data.draw(st.integers(0, world_size - 1))
    worker = data.draw(st.integers(0, num_workers - 1))
    options = dict(rank=rank, world_size=world_size, worker=worker, num_workers=num_workers, drop_remainder=drop)
    assert shard(order, **options).tolist() == naive_shard(order, rank, world_size, worker, num_workers, drop)


def test_shard_pads_from_the_start_when_fewer_patches_than_ranks():
    assert [shard([4, 9], rank=r, world_size=5).tolist() for r in range(5)] == [[4], [9], [4], [9], [4]]
    assert [shard([4, 9], rank=r, world_size=5, drop_remainder=True).size for r in range(5)] == [0] * 5
    assert shard(np.zeros(0, dtype=np.int64), rank=2, world_size=3, worker=1, num_workers=2).shape == (0,)
    assert shard_length(0, rank=2, world_size=3) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(rank=2, world_size=2), ZarrsampleError, r"rank must be < world_size=2, got 2"),
        (dict(worker=3, num_workers=3), ZarrsampleError, r"worker must be < num_workers=3, got 3"),
        (dict(world_size=0), ZarrsampleError, r"world_size must be >= 1, got 0"),
        (dict(rank=-1), ZarrsampleError, r"rank must be >= 0, got -1"),
        (dict(num_workers=1.0), TypeError, r"num_workers must be an int >= 1, got float 1.0"),
        (dict(drop_remainder=1), TypeError, r"drop_remainder must be a bool, got int 1"),
    ],
)
def test_shard_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        shard(np.arange(5), **kwargs)
    with pytest.raises(error, match=match):
        shard_length(5, **kwargs)


def test_shard_order_errors():
    with pytest.raises(ZarrsampleError, match=r"order must be 1-D, got shape \(2, 2\)"):
        shard(np.zeros((2, 2), dtype=int))
    with pytest.raises(TypeError, match=r"order must hold ints, got dtype float64"):
        shard([0.5, 1.5])
    with pytest.raises(ZarrsampleError, match=r"n must be >= 0, got -3"):
        shard_length(-3)


# --- fingerprint and state -------------------------------------------------------------

CONFIG = dict(seed=7, patch_size=(256, 256), axes="YX", min_area=0.5, shuffle=True, pad=None)


def test_fingerprint_is_pinned():
    # Computed once; a change means saved states of every user stop matching.
    assert config_fingerprint(**CONFIG) == 7143983666410211296


def test_fingerprint_equal_inputs_and_changed_fields():
    fingerprint = config_fingerprint(**CONFIG)
    assert fingerprint == config_fingerprint(**dict(reversed(list(CONFIG.items()))))
    assert fingerprint == config_fingerprint(**CONFIG | {"patch_size": [256, 256]})
    changed = [
        {"seed": 8}, {"patch_size": (256, 128)}, {"axes": "XY"}, {"min_area": 0.25},
        {"shuffle": False}, {"shuffle": 1}, {"pad": 0}, {"extra": None},
    ]
    values = {config_fingerprint(**CONFIG | change) for change in changed}
    assert len(values) == len(changed) and fingerprint not in values
    assert config_fingerprint(seed=1) != config_fingerprint(seed=1.0)


def test_fingerprint_of_arrays_uses_dtype_shape_and_bytes():
    a = np.arange(6, dtype="<i4").reshape(2, 3)
    assert config_fingerprint(mask=a) == config_fingerprint(mask=a.astype(">i4"))
    assert config_fingerprint(mask=a) == config_fingerprint(mask=np.asfortranarray(a))
    different = [a.astype(np.int64), a.reshape(3, 2), a + 1, a.tolist()]
    assert len({config_fingerprint(mask=a)} | {config_fingerprint(mask=b) for b in different}) == 5


@given(st.dictionaries(st.text(min_size=1, max_size=5).filter(str.isidentifier), st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
    st.lists(st.integers(), max_size=3)), max_size=5))
def test_fingerprint_range_and_determinism(fields):
    fingerprint = config_fingerprint(**fields)
    assert isinstance(fingerprint, int) and 0 <= fingerprint < 2**63
    assert fingerprint == config_fingerprint(**dict(sorted(fields.items())))


def test_fingerprint_refuses_unknown_types():
    with pytest.raises(TypeError, match=r"fields\['roi'\] must be an int, float, .* got set"):
        config_fingerprint(roi={1, 2})
    with pytest.raises(TypeError, match=r"must not be an object array"):
        config_fingerprint(mask=np.array([None]))


def state_and_expected():
    config = dict(world_size=2, rank=1, num_workers=4, worker=3, seed=5, n_patches=100, shuffle=1,
                  drop_remainder=0)
    state = make_state(epoch=3, position=17, fingerprint=config_fingerprint(**CONFIG), **config)
    return state, dict(fingerprint=state["fingerprint"]) | config


def test_state_round_trips_through_json():
    state, expected = state_and_expected()
    assert state["version"] == STATE_VERSION == 1
    assert all(type(value) is int for value in state.values())
    assert check_state(json.loads(json.dumps(state)), expected=expected) == (3, 17)
    assert make_state(epoch=0, position=0, fingerprint=1, shuffle=True)["shuffle"] == 1


def test_resume_equals_uninterrupted():
    order = epoch_order([5, 7, 3], seed=2, epoch=1, shuffle=True, draw_same_chunk=True)
    part = shard(order, rank=1, world_size=2, worker=0, num_workers=2)
    expected = dict(fingerprint=9, rank=1)
    state = make_state(epoch=1, position=2, fingerprint=9, rank=1)
    epoch, position = check_state(state, expected=expected)
    resumed = shard(epoch_order([5, 7, 3], seed=2, epoch=epoch, shuffle=True, draw_same_chunk=True),
                    rank=1, world_size=2, worker=0, num_workers=2)[position:]
    np.testing.assert_array_equal(np.concatenate([part[:2], resumed]), part)


def test_check_state_lists_every_difference():
    state, expected = state_and_expected()
    with pytest.raises(ZarrsampleError, match=r"does not match this configuration: world_size saved 2, now 4$"):
        check_state(state, expected=expected | {"world_size": 4})
    with pytest.raises(
        ZarrsampleError, match=r"world_size saved 2, now 4; worker saved 3, now 0; seed saved 5, now 6$"
    ):
        check_state(state, expected=expected | {"world_size": 4, "worker": 0, "seed": 6})
    with pytest.raises(ZarrsampleError, match=r"fingerprint saved \d+, now 12"):
        check_state(state, expected=expected | {"fingerprint": 12})
    with pytest.raises(ZarrsampleError, match=r"new_key saved nothing, now 1"):
        check_state(state, expected=expected | {"new_key": 1})


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"version": 2}, ZarrsampleError, r"state version must be 1, got 2"),
        ({"position": -1}, ZarrsampleError, r"state\['position'\] must be >= 0, got -1"),
        ({"epoch": "3"}, TypeError, r"state\['epoch'\] must be an int, got str '3'"),
    ],
)
def test_check_state_errors(change, error, match):
    state, expected = state_and_expected()
    with pytest.raises(error, match=match):
        check_state(state | change, expected=expected)


def test_check_state_structure_errors():
    state, expected = state_and_expected()
    del state["position"]
    with pytest.raises(ZarrsampleError, match=r"must hold the keys .* missing \['position'\]"):
        check_state(state, expected=expected)
    with pytest.raises(TypeError, match=r"state must be a mapping of str to int, got list"):
        check_state([1, 2], expected=expected)
    with pytest.raises(ZarrsampleError, match=r"reserved key 'version'"):
        make_state(epoch=0, position=0, fingerprint=0, version=2)
    with pytest.raises(ZarrsampleError, match=r"position must be >= 0, got -1"):
        make_state(epoch=0, position=-1, fingerprint=0)
    with pytest.raises(TypeError, match=r"seed must be an int, got float 1.5"):
        make_state(epoch=0, position=0, fingerprint=0, seed=1.5)
