"""Refuse to read sources whose metadata changed on storage since they were opened."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._errors import ZarrsampleError
from ..sources._validate import source_changes, stored_metadata
from ._faults import _Exhausted, is_transient

__all__ = ["check_sources"]

#: Up to this many images are checked one after the other; more use threads.
_SERIAL_CHECKS = 4
_CHECK_THREADS = 16


def check_sources(images: Sequence[tuple[str, Any, tuple[Any, ...] | None]], load: Any) -> None:
    """Refuse images whose stored metadata changed since they were recorded.

    Parameters
    ----------
    images : sequence of (label, image, recorded)
        ``recorded`` from :func:`..sources._validate.recorded_metadata` (None: not checked).
    load : callable
        ``load(fn, what)`` runs ``fn`` (e.g. :meth:`._faults.RetryPolicy.call`).

    Raises
    ------
    ZarrsampleError
        An image's shape, dtype or chunks differ from when it was opened, or
        its metadata can no longer be read for a reason other than a
        transient I/O error (which leaves the check to the next call); the
        first such image in input order.

    Notes
    -----
    One metadata read per image; more than a few images are read by up to
    16 threads at once (remote stores answer in parallel).
    """
    def check(entry: tuple[str, Any, tuple[Any, ...] | None]) -> None:
        label, image, recorded = entry
        if recorded is None:
            return
        try:
            now = load(lambda: stored_metadata(image), f"{image.name} metadata")
        except ZarrsampleError:
            raise
        except Exception as exc:
            if isinstance(exc, _Exhausted) or is_transient(exc):
                return  # unreachable now; chunk reads will retry, skip or raise as configured
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ZarrsampleError(
                f"{label} ({image.name}) can no longer be opened as it was when the dataset was "
                f"made: {text}"
            ) from exc
        change = source_changes(recorded, now)
        if change:
            raise ZarrsampleError(
                f"{label} ({image.name}) changed on storage since it was opened ({change}); reading "
                "it would mix old and new metadata: open it again and build a new PatchDataset"
            )

    checked = [entry for entry in images if entry[2] is not None]
    if len(checked) <= _SERIAL_CHECKS:
        for entry in checked:
            check(entry)
        return
    # One small metadata read per image, mostly waiting on storage: many at once. The
    # first failure in input order is raised, as in the serial loop.
    with ThreadPoolExecutor(min(_CHECK_THREADS, len(checked)), thread_name_prefix="zarrsample-check") as pool:
        for _ in pool.map(check, checked):
            pass
