"""The public names of each package are pinned."""

from __future__ import annotations

import zarrsample_core


def test_core_all_is_pinned_and_sorted():
    assert zarrsample_core.__all__ == sorted(zarrsample_core.__all__)
    assert zarrsample_core.__all__ == [
        "BlueNoisePatchSampler",
        "ChunkReadError",
        "ClassBalancedPatchSampler",
        "EpochIterator",
        "Image",
        "ImageCollection",
        "PatchDataset",
        "PatchPlan",
        "PatchReader",
        "PatchSampler",
        "PlanningError",
        "RandomPatchSampler",
        "Stitcher",
        "ZarrsampleError",
        "ZarrsampleWarning",
        "open_image",
        "plan_collections",
        "poisson_disk_positions",
        "sample_spec",
        "tissue_mask",
    ]
    for name in zarrsample_core.__all__:
        assert getattr(zarrsample_core, name).__doc__, f"{name} has no docstring"
