"""A fork()ed child takes recycled buffers even if another thread held the pool's lock (forking session)."""

from __future__ import annotations

import threading

from zarrsample_core.sources._buffers import BufferPool

_FORKED: dict = {}


def test_a_forked_child_takes_buffers_even_if_the_parent_held_the_lock():
    import multiprocessing as mp

    pool = _FORKED["pool"] = BufferPool(1000)
    keep = pool.take(100)
    del keep  # one spare buffer for the child
    held, done = threading.Event(), threading.Event()

    def inside_the_pool():  # another thread holds the pool's lock at fork()
        with pool._lock:
            held.set()
            done.wait(30)

    thread = threading.Thread(target=inside_the_pool)
    thread.start()
    assert held.wait(10)
    try:
        with mp.get_context("fork").Pool(1) as workers:
            assert workers.apply_async(_take_in_child).get(timeout=30) == (100, 1)
    finally:
        done.set()
        thread.join()


def _take_in_child():
    pool = _FORKED["pool"]
    return pool.take(100).nbytes, pool.reused
