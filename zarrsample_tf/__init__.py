"""zarrsample for TensorFlow: a ``tf.data.Dataset`` over a PatchDataset.

``import zarrsample_tf`` is cheap: TensorFlow is imported the first time
:func:`as_tf_dataset` is accessed, so that the core stays usable without it.

Examples
--------
>>> import zarrsample_tf
>>> zarrsample_tf.__all__
['as_tf_dataset']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["as_tf_dataset"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from ._dataset import as_tf_dataset


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"zarrsample_tf.{name} needs TensorFlow, which is not installed: "
            'pip install "zarrsample[tf]"'
        ) from exc
    from . import _dataset

    value = getattr(_dataset, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
