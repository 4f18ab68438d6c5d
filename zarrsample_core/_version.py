"""The installed version of the zarrsample distribution."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version"]


def package_version() -> str:
    """``zarrsample``'s version from the package metadata; ``"0+unknown"`` when it is not installed."""
    try:
        return version("zarrsample")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"
