"""The contract every way of iterating a PatchDataset keeps.

Subclass :class:`IterationContract` once per adapter (core iterator, torch,
tf.data, Grain) and implement its three hooks; the tests are inherited.
A delivered sample is identified by its key ``(image_index, *topleft)``,
taken from ``"position"`` (the dataset is built with ``return_positions``).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from zarrsample_core import (
    ImageCollection,
    PatchDataset,
    PatchSampler,
    RandomPatchSampler,
    ZarrsampleError,
    open_image,
)

CONFIGS = [(1, 1), (2, 1), (2, 2)]  # (world_size, num_workers)


def make_dataset(seed: int = 7, patch: int = 8, random_crops: bool = False, **kwargs) -> PatchDataset:
    """Two small images, each with labels at half scale (45 patches of 8 px; or 23 random crops each)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (3, 40, 48), dtype=np.uint8)
    b = rng.integers(0, 255, (3, 24, 40), dtype=np.uint8)
    colls = [
        ImageCollection(
            {"images": open_image(a, axes="CYX"), "labels": open_image(a[0, ::2, ::2].copy(), axes="YX")},
            spatial_axes="YX",
        ),
        ImageCollection(
            {"images": open_image(b, axes="CYX"), "labels": open_image(b[0, ::2, ::2].copy(), axes="YX")},
            spatial_axes="YX",
        ),
    ]
    kwargs.setdefault("shuffle", True)
    sampler = (
        RandomPatchSampler(patch, 23, spatial_axes="YX", seed=seed + 100) if random_crops
        else PatchSampler(patch, spatial_axes="YX")
    )
    return PatchDataset(colls, sampler, seed=seed, return_positions=True, **kwargs)


def sample_key(sample) -> tuple[int, ...]:
    """``(image_index, *topleft)`` of a delivered sample (tensors accepted)."""
    position = np.asarray(sample["position"])
    return (int(np.asarray(sample["image_index"])), *position[..., 0].astype(int).tolist())


class IterationContract:
    """Inherited tests; subclasses implement the hooks below."""

    def rank_keys(self, ds: PatchDataset, *, epoch: int, rank: int, world_size: int, num_workers: int) -> list:
        """Keys of every sample one rank (all its workers) delivers in one epoch."""
        raise NotImplementedError

    def resumed_keys(self, ds: PatchDataset, *, epoch: int, stop: int) -> tuple[list, list]:
        """Deliver ``stop`` samples, checkpoint with the framework's API, resume
        in a fresh iterator from the checkpoint, deliver the rest: ``(head, tail)``."""
        raise NotImplementedError

    def restore_foreign_state(self, ds: PatchDataset, other: PatchDataset) -> None:
        """Checkpoint an iterator over ``ds`` and restore it into one over ``other``."""
        raise NotImplementedError

    # -- inherited tests ---------------------------------------------------

    @pytest.mark.parametrize("world_size, num_workers", CONFIGS)
    def test_epoch_multiset_matches_the_core(self, world_size, num_workers):
        ds = make_dataset()
        per_rank = [
            self.rank_keys(ds, epoch=1, rank=r, world_size=world_size, num_workers=num_workers)
            for r in range(world_size)
        ]
        assert len({len(keys) for keys in per_rank}) == 1, "ranks must get equal counts"
        expected = collections.Counter()
        for r in range(world_size):
            for w in range(num_workers):
                expected.update(
                    sample_key(s)
                    for s in ds.epoch(1, rank=r, world_size=world_size, worker=w, num_workers=num_workers)
                )
        assert collections.Counter(k for keys in per_rank for k in keys) == expected
        # Every patch of the epoch at least once.
        assert {sample_key(ds[i]) for i in range(len(ds))} <= set(expected)

    @pytest.mark.parametrize("stop", [0, 3, 20])
    def test_resume_equals_the_uninterrupted_run(self, stop):
        ds = make_dataset()
        whole = self.rank_keys(ds, epoch=2, rank=0, world_size=1, num_workers=1)
        head, tail = self.resumed_keys(make_dataset(), epoch=2, stop=stop)
        assert len(head) == stop
        assert head + tail == whole

    def test_a_state_from_another_configuration_is_refused(self):
        with pytest.raises((ZarrsampleError, ValueError), match="fingerprint|configuration"):
            self.restore_foreign_state(make_dataset(), make_dataset(patch=4))

    def test_random_crops_match_the_core_in_each_epoch(self):
        # Two ranks in-process (worker processes over random crops: tests/test_torch_random.py).
        ds = make_dataset(random_crops=True)
        seen = []
        for epoch in (1, 2):
            keys = [self.rank_keys(ds, epoch=epoch, rank=r, world_size=2, num_workers=1) for r in range(2)]
            expected = collections.Counter(
                sample_key(s) for r in range(2) for s in ds.epoch(epoch, rank=r, world_size=2)
            )
            assert collections.Counter(k for part in keys for k in part) == expected
            seen.append(set(expected))
        assert seen[0] != seen[1], "random crops must change between epochs"

    def test_random_crops_resume_equals_the_uninterrupted_run(self):
        whole = self.rank_keys(make_dataset(random_crops=True), epoch=2, rank=0, world_size=1, num_workers=1)
        head, tail = self.resumed_keys(make_dataset(random_crops=True), epoch=2, stop=7)
        assert head + tail == whole
