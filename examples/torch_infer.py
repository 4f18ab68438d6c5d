"""Run a model over a whole zarr image patch by patch and stitch its output.

Run ``python examples/torch_infer.py``. It writes a synthetic image (3 x 300 x
260 uint8, stored in 64 x 64 chunks) into a temporary zarr group, reads
overlapping 64 x 64 patches with 8 pixels of context on every side through a
DataLoader with two workers, applies a small convolutional "model" and
stitches the predictions (context cropped, overlaps blended) into a zarr
array. Because each patch carries enough context for the model's receptive
field, the stitched result equals running the model on the whole image at
once, which the script checks.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, Stitcher, open_image
from zarrsample_torch import PatchIterableDataset

PATCH, STRIDE, CONTEXT = 64, 48, 8


def model() -> torch.nn.Module:
    """A fixed net whose receptive field reaches 2 pixels (< CONTEXT).

    Only its first layer pads (with zeros, like the patches' padding outside
    the image), so whole-image inference is defined the same way at borders.
    """
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, padding=2), torch.nn.Tanh(), torch.nn.Conv2d(4, 2, 1)
    )
    return net.eval()


def main() -> float:
    """Stitch one epoch of predictions; return the largest difference to whole-image inference."""
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (3, 300, 260), dtype=np.uint8)
        zarr.create_array(Path(tmp, "image.zarr"), data=image, chunks=(3, 64, 64))
        collection = ImageCollection(
            {"images": open_image(Path(tmp, "image.zarr"), axes="CYX")}, spatial_axes="YX"
        )
        # Every pixel is covered (incomplete border patches kept); zero padding outside the
        # image is what the convolutions' own zero padding sees on the whole image.
        sampler = PatchSampler(PATCH, stride=STRIDE, pad=CONTEXT, allow_incomplete_patches=True,
                               spatial_axes="YX")
        patches = PatchDataset(collection, sampler, return_positions=True)
        loader = DataLoader(PatchIterableDataset(patches), batch_size=8, num_workers=2)
        net = model()

        start = time.perf_counter()
        out = Path(tmp, "prediction.zarr")
        windows = patches.plans[0].windows()  # every window the epoch delivers: chunks written early
        with Stitcher(out, shape=(2, 300, 260), chunks=(2, 64, 64), blend="gaussian", crop=CONTEXT,
                      positions=windows) as stitcher, torch.no_grad():
            for batch in loader:  # batches from both workers, in any order
                prediction = net(batch["images"].float() / 255)  # (B, 2, 80, 80)
                stitcher.add(prediction, batch["position"])  # (B, 2, 2) [start, stop) per axis
            written = stitcher.stats()["chunks_written"]
        stitched = zarr.open_array(out, mode="r")[...]
        with torch.no_grad():
            whole = net(torch.from_numpy(image).float()[None] / 255)[0].numpy()
        error = float(np.abs(stitched - whole).max())
        print(f"epoch 0: {len(patches)} patches of {PATCH} px (+{CONTEXT} px context) stitched into "
              f"{stitched.shape} in {time.perf_counter() - start:.1f} s, {written} chunks written")
        print(f"max |stitched - whole-image inference| = {error:.2e}")
        assert error < 1e-5, error
        return error


if __name__ == "__main__":
    main()
