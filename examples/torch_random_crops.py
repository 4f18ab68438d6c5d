"""Train on class-balanced random crops, each with a wider context from a coarser level, on CPU.

Run ``python examples/torch_random_crops.py``. It writes a synthetic slide
(3 x 512 x 512 uint8 in 128 x 128 chunks, and its level 2), labels with a
rare class, and a tissue mask at 1/16 scale into a temporary zarr group.
Every epoch draws new crops: half of them cover the rare class, and each
comes with 32 x 32 pixels of level 2 around the same centre (HookNet-style
target and context). Two epochs with two DataLoader workers.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader

from zarrsample_core import ClassBalancedPatchSampler, ImageCollection, PatchDataset, open_image
from zarrsample_torch import PatchIterableDataset

SIDE = 512


def write_slide(path: Path) -> None:
    """A zarr v3 group: ``image`` (3, SIDE, SIDE), ``level2`` (4x smaller), ``labels``, ``mask`` (1/16)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    labels = np.zeros((SIDE, SIDE), np.uint8)
    labels[(yy - 300) ** 2 + (xx - 200) ** 2 < 40**2] = 1  # a rare class: 2 % of the slide
    image = rng.normal(110, 20, (3, SIDE, SIDE)) + 70 * labels
    image = np.clip(image, 0, 255).astype(np.uint8)
    low = SIDE // 16
    my, mx = np.mgrid[0:low, 0:low]
    mask = (my - low / 2) ** 2 + (mx - low / 2) ** 2 < (0.45 * low) ** 2  # a disc of "tissue"
    group = zarr.open_group(path, mode="w-", zarr_format=3)
    group.create_array("image", data=image, chunks=(3, 128, 128))
    level2 = image.reshape(3, SIDE // 4, 4, SIDE // 4, 4).mean(axis=(2, 4)).astype(np.uint8)
    group.create_array("level2", data=level2, chunks=(3, 128, 128))
    group.create_array("labels", data=labels, chunks=(128, 128))
    group.create_array("mask", data=mask, chunks=(low, low))


def main() -> float:
    """Train two epochs; return the mean loss of the last batches."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slide.zarr"
        write_slide(path)
        collection = ImageCollection(
            {
                "images": open_image(path, data_group="image", axes="CYX"),
                "context": open_image(path, data_group="level2", axes="CYX"),
                "labels": open_image(path, data_group="labels", axes="YX"),
                "masks": open_image(path, data_group="mask", axes="YX"),
            },
            spatial_axes="YX",
        )
        # 256 crops of 32 px per epoch inside the tissue; half of them hold >= 25 % of class 1.
        sampler = ClassBalancedPatchSampler(32, 256, class_ratios={0: 0.5, 1: 0.5}, min_class_area=0.25,
                                            min_area=0.9, spatial_axes="YX", seed=0)
        patches = PatchDataset(collection, sampler, shuffle=True, draw_same_chunk=True, seed=0,
                               window={"context": 32}, padding_mode="reflect")
        dataset = PatchIterableDataset(patches)
        loader = DataLoader(dataset, batch_size=16, num_workers=2, persistent_workers=True)

        class TargetAndContext(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.target = torch.nn.Conv2d(3, 8, 3, padding=1)
                self.context = torch.nn.Conv2d(3, 8, 3, padding=1)
                self.head = torch.nn.Conv2d(8, 1, 1)

            def forward(self, images: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
                # The context's mean feature (its field of view is 4x wider) biases every pixel.
                features = self.target(images) + self.context(context).mean(dim=(2, 3), keepdim=True)
                return self.head(torch.relu(features))

        model = TargetAndContext()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        losses: list[float] = []
        for epoch in range(2):
            dataset.set_epoch(epoch)  # new crops every epoch, in every worker
            start, rare = time.perf_counter(), 0.0
            for batch in loader:
                images = (batch["images"].float() - 128) / 40  # (B, 3, 32, 32) from uint8
                context = (batch["context"].float() - 128) / 40  # (B, 3, 32, 32): level 2, 4x the area
                target = batch["labels"].float().unsqueeze(1)
                rare += float((target.mean(dim=(1, 2, 3)) >= 0.25).sum())
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images, context), target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            print(f"epoch {epoch}: {len(patches)} crops, {rare / len(patches):.0%} of them >= 25 % class 1, "
                  f"{time.perf_counter() - start:.1f} s, loss {losses[-1]:.4f}")
        return float(np.mean(losses[-5:]))


if __name__ == "__main__":
    main()
