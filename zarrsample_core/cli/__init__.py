"""The ``zarrsample`` command line: ``info``, ``plan`` (with previews), ``demo``.

May import every stage; nothing imports ``cli``.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
