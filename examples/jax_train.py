"""Fit a per-pixel logistic model with jax.grad on patches of a zarr image, in seconds.

Run ``python examples/jax_train.py``. It writes a synthetic image (3 x 256 x
256 uint8, stored in 64 x 64 chunks), its labels and a tissue mask at 1/8
scale into a temporary zarr group, samples 32 x 32 patches inside the mask,
and runs one epoch of plain SGD on batches from a Grain pipeline.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import zarr

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image
from zarrsample_jax import as_grain_dataset, to_jax


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


def loss_fn(params: dict, images: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy of a 1 x 1 convolution (per-pixel logistic regression)."""
    x = images.astype(jnp.float32) / 255 - 0.5  # (B, 3, 32, 32) from uint8
    logits = jnp.einsum("bcyx,c->byx", x, params["w"]) + params["b"]
    return jnp.mean(jnp.logaddexp(0, logits) - labels * logits)


@jax.jit
def sgd_step(params: dict, images: jax.Array, labels: jax.Array) -> tuple[dict, jax.Array]:
    loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
    return jax.tree.map(lambda p, g: p - 2.0 * g, params, grads), loss


def main() -> float:
    """Train one epoch; return the mean loss of its last batches."""
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
        # The core's epoch order, this process's shard (jax.process_index of process_count).
        epochs = as_grain_dataset(patches, num_epochs=1)
        # Four read threads; add .mp_prefetch(grain.MultiprocessingOptions(num_workers=2))
        # after to_iter_dataset() for worker processes. Checkpoint with it.get_state().
        batches = (
            epochs.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=32))
            .batch(16, drop_remainder=True)  # fixed shapes: sgd_step compiles once
            .map(to_jax)
        )
        params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
        print(f"{len(patches)} patches in the mask, {epochs.epoch_length // 16} batches of 16")
        start, losses = time.perf_counter(), []
        for step, batch in enumerate(batches):
            params, loss = sgd_step(params, batch["images"], batch["labels"])
            losses.append(float(loss))
            if step % 10 == 0:
                print(f"step {step:3d}  loss {losses[-1]:.4f}")
        final = float(np.mean(losses[-5:]))
        print(f"epoch 0: {len(losses)} steps in {time.perf_counter() - start:.1f} s, "
              f"loss {losses[0]:.4f} -> {final:.4f}")
        return final


if __name__ == "__main__":
    main()
