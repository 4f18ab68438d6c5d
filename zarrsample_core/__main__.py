"""``python -m zarrsample_core``: the ``zarrsample`` command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
