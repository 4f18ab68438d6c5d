"""zarrsample for JAX: a Grain data source and MapDataset over a PatchDataset.

``import zarrsample_jax`` is cheap: jax and Grain are imported the first
time one of its names is accessed, so that the core stays usable without
them.

Examples
--------
>>> import zarrsample_jax
>>> zarrsample_jax.__all__
['EpochMapDataset', 'GrainSource', 'as_grain_dataset', 'to_jax']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EpochMapDataset", "GrainSource", "as_grain_dataset", "to_jax"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from ._grain import EpochMapDataset, GrainSource, as_grain_dataset, to_jax


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import grain  # noqa: F401
        import jax  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"zarrsample_jax.{name} needs jax and grain, which are not installed: "
            'pip install "zarrsample[jax]"'
        ) from exc
    from . import _grain

    value = getattr(_grain, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
