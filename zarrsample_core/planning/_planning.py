"""plan_collections: the plans of many images, on any concurrent.futures executor."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from typing import Any, Literal, overload

from .._checks import check_bool
from .._errors import ZarrsampleError
from .._progress import progress as progress_bar
from ..sources._collection import ImageCollection
from ._plan import PatchPlan

__all__ = ["PlanningError", "plan_collections"]

_ERRORS = ("raise", "return")


class PlanningError(ZarrsampleError):
    """Planning failed for some images; the others' plans are kept.

    Attributes
    ----------
    plans : list of PatchPlan or None
        One entry per collection, in input order; None where planning failed.
    errors : dict of int to Exception
        The exception raised for each failed collection index.
    """

    def __init__(self, message: str, plans: list[PatchPlan | None], errors: dict[int, BaseException]):
        super().__init__(message)
        self.plans = plans
        self.errors = errors


def _plan_one(sampler: Any, collection: ImageCollection) -> PatchPlan:
    """One task: runs in the executor's worker (a process, a thread or a dask worker)."""
    plan = sampler.plan(collection)
    if not isinstance(plan, PatchPlan):
        raise TypeError(f"sampler.plan returned {type(plan).__name__}, not a PatchPlan")
    return plan


def _describe(index: int, collection: ImageCollection) -> str:
    return f"collection {index} ({collection.reference.name})"


@overload
def plan_collections(
    collections: Sequence[ImageCollection] | ImageCollection, sampler: Any, *,
    executor: Executor | None = ..., progress: bool = ..., errors: Literal["raise"] = ...,
) -> list[PatchPlan]: ...
@overload
def plan_collections(
    collections: Sequence[ImageCollection] | ImageCollection, sampler: Any, *,
    executor: Executor | None = ..., progress: bool = ..., errors: Literal["return"],
) -> list[PatchPlan | Exception]: ...


def plan_collections(
    collections: Sequence[ImageCollection] | ImageCollection,
    sampler: Any,
    *,
    executor: Executor | None = None,
    progress: bool = True,
    errors: Literal["raise", "return"] = "raise",
) -> list[PatchPlan] | list[PatchPlan | Exception]:
    """Plan the patches of many images, in this process or on an executor.

    Parameters
    ----------
    collections : sequence of ImageCollection
        The images to plan (a single collection is taken as a list of one).
    sampler : PatchSampler
        Any sampler with a ``plan(collection)`` method
        (:class:`~zarrsample_core.PatchSampler`,
        :class:`~zarrsample_core.BlueNoisePatchSampler`).
    executor : concurrent.futures.Executor, optional
        Where to run: None plans in this process, one image after the other;
        otherwise one task per image is submitted, e.g. to a
        ``ProcessPoolExecutor`` (prefer the ``"forkserver"`` or ``"spawn"``
        start method) or to a dask cluster through ``Client.get_executor()``.
        Except for a ``ThreadPoolExecutor``, the sampler and each collection
        are checked to pickle before anything is submitted.
    progress : bool
        Show a tqdm progress bar when tqdm is installed and stderr is a
        terminal (silently nothing otherwise).
    errors : {"raise", "return"}
        What to do when some images fail: ``"raise"`` waits for all the
        others, then raises one :class:`PlanningError` naming every failed
        image; ``"return"`` puts each exception in place of its plan.

    Returns
    -------
    list of PatchPlan
        One plan per collection, in input order, identical whichever
        executor ran them (with ``errors="return"``, exceptions where
        planning failed; each carries a note naming the image).

    Raises
    ------
    TypeError
        ``collections``, ``sampler``, ``executor``, ``progress`` or ``errors``
        of a wrong type, or a collection or sampler that does not pickle
        (the message gives its index).
    ZarrsampleError
        ``errors`` is not one of the allowed values.
    PlanningError
        With ``errors="raise"``, planning failed for at least one image;
        ``.plans`` holds the other plans and ``.errors`` the exceptions.

    Notes
    -----
    Each task sends one collection (a few hundred bytes for images opened
    from a path or URL: arrays are reopened lazily in the worker) and a copy
    of the sampler, and returns a plan of ``8 * (D + 1)`` bytes per patch.
    The work per image is that of ``sampler.plan`` (one pass over the mask).

    Examples
    --------
    >>> import numpy as np
    >>> from zarrsample_core import ImageCollection, PatchSampler, open_image
    >>> colls = [ImageCollection({"images": open_image(np.zeros((n, 8)), axes="YX")},
    ...                          spatial_axes="YX") for n in (8, 16)]
    >>> [len(p) for p in plan_collections(colls, PatchSampler(4, spatial_axes="YX"))]
    [4, 8]
    """
    if isinstance(collections, ImageCollection):
        collections = [collections]
    if isinstance(collections, (str, bytes)) or not isinstance(collections, Sequence) or not all(
        isinstance(c, ImageCollection) for c in collections
    ):
        raise TypeError(
            f"collections must be a sequence of ImageCollection, got {type(collections).__name__}"
        )
    if not callable(getattr(sampler, "plan", None)):
        raise TypeError(f"sampler must have a plan(collection) method (a PatchSampler), got {sampler!r}")
    if executor is not None and not isinstance(executor, Executor):
        hint = "; for dask, pass client.get_executor()" if hasattr(executor, "get_executor") else ""
        raise TypeError(
            f"executor must be None or a concurrent.futures.Executor (ProcessPoolExecutor, "
            f"ThreadPoolExecutor, dask's Client.get_executor()), got {type(executor).__name__}{hint}"
        )
    check_bool(progress, "progress")
    if not isinstance(errors, str):
        raise TypeError(f"errors must be one of {list(_ERRORS)}, got {errors!r}")
    if errors not in _ERRORS:
        raise ZarrsampleError(f"errors must be one of {list(_ERRORS)}, got {errors!r}")
    collections = list(collections)
    if executor is not None and not isinstance(executor, ThreadPoolExecutor):
        _check_pickles(collections, sampler)

    results: list[Any] = [None] * len(collections)
    failed: dict[int, Exception] = {}
    if executor is None:
        for i in progress_bar(range(len(collections)), total=len(collections), desc="planning",
                              unit="image", quiet=not progress):
            try:
                results[i] = _plan_one(sampler, collections[i])
            except Exception as exc:  # noqa: BLE001 - recorded, reported with the others
                failed[i] = exc
    else:
        _run(executor, collections, sampler, results, failed, progress)
    for i, error in failed.items():
        error.add_note(f"while planning {_describe(i, collections[i])}")
        results[i] = error
    if failed and errors == "raise":
        lines = [
            f"  {_describe(i, collections[i])}: {type(error).__name__}: {error}"
            for i, error in sorted(failed.items())
        ]
        plans = [None if i in failed else p for i, p in enumerate(results)]
        raise PlanningError(
            f"planning failed for {len(failed)} of {len(collections)} collections:\n" + "\n".join(lines),
            plans, dict(sorted(failed.items())),
        ) from failed[min(failed)]
    return results


def _check_pickles(collections: list[ImageCollection], sampler: Any) -> None:
    """TypeError naming what cannot be sent to a worker process."""
    try:
        pickle.dumps(sampler)
    except Exception as exc:
        raise TypeError(f"sampler must pickle to run on an executor: {type(exc).__name__}: {exc}") from exc
    for i, coll in enumerate(collections):
        try:
            pickle.dumps(coll)
        except Exception as exc:
            raise TypeError(
                f"collections[{i}] ({coll.reference.name}) must pickle to run on an executor "
                f"(open images from a path or URL): {type(exc).__name__}: {exc}"
            ) from exc


def _run(
    executor: Executor,
    collections: list[ImageCollection],
    sampler: Any,
    results: list[Any],
    failed: dict[int, Exception],
    progress: bool,
) -> None:
    """Submit one task per collection and collect them as they finish."""
    futures: dict[Future, int] = {}
    try:
        for i, coll in enumerate(collections):
            # A private copy per task: samplers keep a small cache of their last plan.
            futures[executor.submit(_plan_one, copy.copy(sampler), coll)] = i
        done = as_completed(futures)
        for future in progress_bar(done, total=len(futures), desc="planning", unit="image",
                                   quiet=not progress):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # noqa: BLE001 - recorded, reported with the others
                failed[i] = exc
    finally:
        for future in futures:
            future.cancel()  # no-op for finished tasks; stops the rest on an interrupt
