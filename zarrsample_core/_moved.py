"""Old module paths of the flat layout, still importable for pickles written before.

A pickle names each class by module and name (``zarrsample_core._image
Image``). The modules now live in stage subpackages; :func:`install` adds an
import finder that answers the old dotted names with the new modules (the
same module objects, imported on demand), so such pickles load unchanged.
New pickles name the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["MOVED", "install"]

_STAGES = {
    "sources": ("_axes", "_collection", "_image", "_io", "_ome", "_roi", "_thumbnail", "_validate"),
    "planning": (
        "_bluenoise", "_bluenoise_grid", "_bluenoise_sampler", "_coverage", "_grid", "_plan",
        "_plan_io", "_planning", "_sampler",
    ),
    "reading": ("_cache", "_chunk_reads", "_faults", "_padding", "_reader", "_reader_checks"),
    "epochs": ("_dataset", "_epoch", "_order", "_spec", "_state"),
    "inference": ("_stitch", "_stitch_blocks", "_stitch_checks", "_stitch_writer", "_tissue"),
    "cli": ("_describe", "_preview", "demo"),
}

#: Old dotted module name -> the module that holds its code now.
MOVED: dict[str, str] = {
    f"zarrsample_core.{name}": f"zarrsample_core.{stage}.{name}"
    for stage, names in _STAGES.items()
    for name in names
}
MOVED["zarrsample_core._cli"] = "zarrsample_core.cli._main"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old dotted name and loads it as the module it moved to."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # The moved module itself: its __name__ and __spec__ stay the new ones.
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its new name."""


def install() -> None:
    """Add the finder once (idempotent)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
