"""Lazy public names for the framework adapters.

An adapter package exports names from a private module that imports its
framework; the package itself imports nothing heavy, so ``import
zarrsample_torch`` stays cheap in spawned workers, and a missing framework
is reported only when a name is used, with the extra to install.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Sequence[str], *, implementation: str, requires: Sequence[str], extra: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for an adapter package.

    Parameters
    ----------
    package : str
        The adapter package's ``__name__``.
    names : sequence of str
        Its public names, all defined in ``implementation``.
    implementation : str
        The private module (relative, e.g. ``"._datasets"``) defining them.
    requires : sequence of str
        Framework modules imported first; if one is missing, an
        ``ImportError`` names ``pip install "zarrsample[<extra>]"``.
    extra : str
        The distribution extra that installs the framework.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            for module in requires:
                importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(
                f"{package}.{name} needs {' and '.join(requires)}, which is not installed: "
                f'pip install "zarrsample[{extra}]"'
            ) from exc
        value = getattr(importlib.import_module(implementation, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
