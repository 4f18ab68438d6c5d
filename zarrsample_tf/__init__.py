"""zarrsample for TensorFlow: a ``tf.data.Dataset`` over a PatchDataset.

``import zarrsample_tf`` is cheap: TensorFlow is imported the first time
:func:`as_tf_dataset` or :func:`output_signature` is accessed, so that the
core stays usable without it.

Examples
--------
>>> import zarrsample_tf
>>> zarrsample_tf.__all__
['as_tf_dataset', 'output_signature']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zarrsample_core._lazy import lazy_exports

__all__ = ["as_tf_dataset", "output_signature"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from ._dataset import as_tf_dataset, output_signature


__getattr__, __dir__ = lazy_exports(
    __name__, __all__, implementation="._dataset", requires=["tensorflow"], extra="tf"
)
