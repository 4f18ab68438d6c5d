"""Writing the Stitcher's finished blocks: normalise, cast and store, in background threads.

A finished block (its accumulator no longer changes) is handed to a
:class:`BlockWriter`, which turns it into output values and stores them in
the output array, either at once or in a small pool of threads. zarr-python
3 encodes chunks in codecs that release the GIL, so while one block is
compressed and written the caller keeps blending the next patches.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from zarr.core.sync import sync

from ._stitch_blocks import Block, cast_output, normalise

__all__ = ["BlockWriter", "block_values"]


def block_values(
    block: Block | None, blend: str, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """The output values of a finished block: normalised and cast, zeros for ``None``.

    Parameters
    ----------
    block : Block or None
        The accumulator (None: no patch touched the block).
    blend : {"mean", "gaussian", "max"}
        How it was accumulated.
    dtype : numpy.dtype
        The output's element type (integers are rounded and clipped).
    shape : tuple of int
        ``(*leading, *block)`` shape of the values.

    Returns
    -------
    numpy.ndarray
        ``shape``-shaped, of type ``dtype``.

    Examples
    --------
    >>> block = Block(np.array([[4.0, 0.0]]), np.array([2.0, 0.0]))
    >>> block_values(block, "mean", np.dtype("uint8"), (1, 2)).tolist()
    [[2, 0]]
    >>> block_values(None, "mean", np.dtype("float32"), (1, 2)).tolist()
    [[0.0, 0.0]]
    """
    if block is None:
        return np.zeros(shape, dtype)
    return cast_output(normalise(block, blend), dtype)


class BlockWriter:
    """Store finished blocks in an output array, a batch at a time, in background threads.

    Parameters
    ----------
    array : zarr.Array or numpy.ndarray
        The output; ``array[selection] = values`` stores one block.
    blend : {"mean", "gaussian", "max"}
        How blocks were accumulated.
    dtype : numpy.dtype
        The output's element type.
    threads : int
        Background threads that store batches; 0 stores them in the caller's
        thread.
    batch : int
        Blocks stored together: a zarr output encodes and writes them
        concurrently in one call of its event loop (its codecs release the
        GIL), which costs much less than one call per block.
    batch_bytes : int
        A batch is also stored once its values hold this many bytes.

    Notes
    -----
    :meth:`submit` turns a block into output values at once (so the float64
    accumulator is freed) and queues them. Blocks are disjoint regions of
    the output (one chunk or shard each), so concurrent writes never touch
    the same stored chunk. At most ``threads + 1`` batches wait or are being
    stored; :meth:`flush` waits for one of them otherwise, so the writer
    holds at most ``threads + 2`` batches of values.

    The first write error is kept: :meth:`check`, :meth:`submit` and
    :meth:`wait` raise it (the original exception, every time they are
    called) and no further batch is stored. The threads exist from the first
    batch handed over until :meth:`close`, which also drops queued batches.

    Examples
    --------
    >>> out = np.zeros((1, 4))
    >>> writer = BlockWriter(out, blend="mean", dtype=out.dtype, threads=1)
    >>> writer.submit((slice(None), slice(0, 2)), Block(np.ones((1, 2)), np.ones(2)), (1, 2))
    >>> writer.submit((slice(None), slice(2, 4)), None, (1, 2))
    >>> writer.wait()
    >>> writer.close()
    >>> out.tolist()
    [[1.0, 1.0, 0.0, 0.0]]
    """

    def __init__(
        self, array: Any, *, blend: str, dtype: np.dtype, threads: int, batch: int = 8,
        batch_bytes: int = 16 * 2**20,
    ) -> None:
        self._array, self._blend, self._dtype = array, blend, dtype
        self.threads, self.batch, self.batch_bytes = threads, batch, batch_bytes
        self._pending: list[tuple[tuple[slice, ...], np.ndarray]] = []
        self._pending_bytes = 0
        self._executor: ThreadPoolExecutor | None = None
        self._changed = threading.Condition()
        self._in_flight = 0
        self._error: BaseException | None = None

    def submit(self, selection: tuple[slice, ...], block: Block | None, shape: tuple[int, ...]) -> None:
        """Store ``block`` (see :func:`block_values`) at ``selection`` of the output, soon.

        Raises
        ------
        Exception
            The error of an earlier write (see :meth:`check`).
        """
        self.check()
        values = block_values(block, self._blend, self._dtype, shape)
        self._pending.append((selection, values))
        self._pending_bytes += values.nbytes
        if len(self._pending) >= self.batch or self._pending_bytes >= self.batch_bytes:
            self.flush()

    def flush(self) -> None:
        """Hand the values submitted so far over to be stored."""
        items, self._pending, self._pending_bytes = self._pending, [], 0
        if not items:
            return
        if self.threads == 0:
            try:
                self._store(items)
            except Exception as exc:
                self._error = self._error or exc
                raise
            return
        with self._changed:  # a bounded queue: wait for a free slot
            self._changed.wait_for(lambda: self._in_flight <= self.threads or self._error is not None)
            self.check()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="zarrsample-stitch")
            self._executor.submit(self._store_in_background, items)
            self._in_flight += 1

    def _store(self, items: list[tuple[tuple[slice, ...], np.ndarray]]) -> None:
        target = getattr(self._array, "async_array", None)
        if target is None or len(items) == 1:
            for selection, values in items:
                self._array[selection] = values
            return

        async def store_all() -> list[BaseException | None]:
            return await asyncio.gather(
                *(target.setitem(selection, values) for selection, values in items), return_exceptions=True
            )

        errors = [error for error in sync(store_all()) if error is not None]
        if errors:  # raised once every write of the batch is over
            raise errors[0]

    def _store_in_background(self, items: list[tuple[tuple[slice, ...], np.ndarray]]) -> None:
        try:
            if self._error is None:
                self._store(items)
        except Exception as exc:  # noqa: BLE001 - raised in the caller's thread
            with self._changed:
                self._error = self._error or exc
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def check(self) -> None:
        """Raise the error of a failed write, if any."""
        if self._error is not None:
            raise self._error

    def wait(self) -> None:
        """Store every submitted block and wait until it is stored; raise the first write error."""
        self.flush()
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight == 0)
        self.check()

    def close(self) -> None:
        """Drop queued batches, wait for running ones and end the threads (errors are dropped)."""
        self._pending, self._pending_bytes = [], 0
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._in_flight = 0
