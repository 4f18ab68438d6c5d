"""Progress bars for the command line: tqdm on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it", quiet: bool = False
) -> Iterator[T]:
    """Iterate over ``items``, with a tqdm bar on stderr when it is a terminal.

    No bar when ``quiet``, when stderr is not a TTY (pipes, files, CI logs)
    or when tqdm is not installed; the items are the same either way.

    Examples
    --------
    >>> list(progress(range(3), desc="demo"))
    [0, 1, 2]
    """
    if quiet or not getattr(sys.stderr, "isatty", lambda: False)():
        return iter(items)
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return iter(items)
    return iter(tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr))
