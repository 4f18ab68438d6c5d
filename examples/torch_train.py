"""Train a tiny segmentation net on patches of a zarr image, on CPU, in seconds.

Run ``python examples/torch_train.py``. It writes a synthetic image (3 x 256 x
256 uint8, stored in 64 x 64 chunks), its labels and a tissue mask at 1/8
scale into a temporary zarr group, samples 32 x 32 patches inside the mask,
and trains for one epoch with two DataLoader workers.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_torch import PatchIterableDataset


def write_image(path: Path, side: int = 256) -> None:
    """A zarr v3 group with ``image`` (3, side, side), ``labels`` and ``mask`` (1/8 scale)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    labels = ((yy // 24 + xx // 24) % 2).astype(np.uint8)  # a checkerboard to segment
    image = rng.normal(100, 20, (3, side, side)) + 60 * labels
    low = side // 8
    my, mx = np.mgrid[0:low, 0:low]
    mask = (my - low / 2) ** 2 + (mx - low / 2) ** 2 < (0.4 * low) ** 2  # a disc of "tissue"
    group = zarr.open_group(path, mode="w-", zarr_format=3)
    group.create_array("image", data=np.clip(image, 0, 255).astype(np.uint8), chunks=(3, 64, 64))
    group.create_array("labels", data=labels, chunks=(64, 64))
    group.create_array("mask", data=mask, chunks=(low, low))


def main() -> float:
    """Train one epoch; return the mean loss of its last batches."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slide.zarr"
        write_image(path)
        collection = ImageCollection(
            {
                "images": open_image(path, data_group="image", axes="CYX"),
                "labels": open_image(path, data_group="labels", axes="YX"),
                "masks": open_image(path, data_group="mask", axes="YX"),
            },
            spatial_axes="YX",
        )
        # Patches whose window is at least half inside the mask, shuffled chunk-wise.
        sampler = PatchSampler(32, stride=8, min_area=0.5, spatial_axes="YX")
        patches = PatchDataset(collection, sampler, shuffle=True, seed=0)
        dataset = PatchIterableDataset(patches, epoch=0)
        loader = DataLoader(dataset, batch_size=16, num_workers=2)

        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        print(f"{len(patches)} patches in the mask, {len(dataset)} per epoch on this rank")
        start, losses = time.perf_counter(), []
        dataset.set_epoch(0)  # call before every epoch, as with DistributedSampler
        for step, batch in enumerate(loader):
            images = (batch["images"].float() - 128) / 40  # (B, 3, 32, 32) from uint8
            target = batch["labels"].float().unsqueeze(1)  # (B, 1, 32, 32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step % 10 == 0:
                print(f"step {step:3d}  loss {loss.item():.4f}")
        final = float(np.mean(losses[-5:]))
        print(f"epoch 0: {len(losses)} steps in {time.perf_counter() - start:.1f} s, "
              f"loss {losses[0]:.4f} -> {final:.4f}")
        return final


if __name__ == "__main__":
    main()
