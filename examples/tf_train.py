"""Train a tiny Keras segmentation net on patches of a zarr image, on CPU, in seconds.

Run ``python examples/tf_train.py``. It writes a synthetic image (3 x 256 x
256 uint8, stored in 64 x 64 chunks), its labels and a tissue mask at 1/8
scale into a temporary zarr group, samples 32 x 32 patches inside the mask,
and trains for one epoch from a ``tf.data`` pipeline with four concurrent
reads.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import zarr  # noqa: E402

from zarrsample_core import ImageCollection, PatchDataset, PatchSampler, open_image  # noqa: E402
from zarrsample_tf import as_tf_dataset  # noqa: E402


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
    keras.utils.set_random_seed(0)
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
        # Patches whose window is at least half inside the mask, shuffled chunk-wise;
        # channels last for Keras (labels get a size-1 channel axis).
        sampler = PatchSampler(32, stride=8, min_area=0.5, spatial_axes="YX")
        patches = PatchDataset(collection, sampler, shuffle=True, seed=0,
                               output_axes={"images": "YXC", "labels": "YXC"})
        # One epoch per call; for more, call again with epoch=1, 2, ... (a new shuffle each).
        data = as_tf_dataset(patches, epoch=0, num_parallel_reads=4)  # uint8 (32, 32, 3), static
        data = data.map(lambda s: (tf.cast(s["images"], tf.float32) / 255, tf.cast(s["labels"], tf.float32)))
        data = data.batch(16).prefetch(2)

        model = keras.Sequential([
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(1, 3, padding="same"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(0.05),
                      loss=keras.losses.BinaryCrossentropy(from_logits=True))
        print(f"{len(patches)} patches in the mask, {int(data.cardinality())} batches of 16")
        start = time.perf_counter()
        losses = model.fit(data, epochs=1, verbose=0, shuffle=False,  # the core shuffles
                           callbacks=[keras.callbacks.LambdaCallback(
                               on_train_batch_end=lambda step, logs: print(
                                   f"step {step:3d}  loss {logs['loss']:.4f}") if step % 10 == 0 else None)])
        final = float(losses.history["loss"][-1])
        print(f"epoch 0: {int(data.cardinality())} steps in {time.perf_counter() - start:.1f} s, "
              f"mean loss {final:.4f}")
        return final


if __name__ == "__main__":
    main()
