"""Array handles from an Image's picklable description: stores, timeouts, tensorstore reads.

What :class:`._image.Image` re-opens in each process (:func:`open_spec`), the
fsspec store of a URL with its storage options, and how long an HTTP(S)
read may stall (``ZARRSAMPLE_HTTP_TIMEOUT``) on either backend.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import zarr
from zarr.storage import FsspecStore, LocalStore

from .._errors import ZarrsampleError
from ._buffers import take
from ._tensorstore import open_tensorstore

__all__ = [
    "HTTP_TIMEOUT", "HTTP_TIMEOUT_ENV", "TS_LOW_SPEED_ENV", "http_timeout", "open_spec", "spec_store",
    "ts_deadline", "ts_result", "url_store",
]


#: Seconds an HTTP(S) request may wait to connect or for more data before it
#: fails (as a transient error: ``on_error="retry"`` retries it). With
#: ``backend="tensorstore"`` it becomes tensorstore's low-speed limit (see
#: :data:`TS_LOW_SPEED_ENV`; unless already set in the environment) when
#: the process first reads over HTTP with tensorstore, and a read is given
#: up after twice the timeout.
HTTP_TIMEOUT_ENV = "ZARRSAMPLE_HTTP_TIMEOUT"
HTTP_TIMEOUT = 60.0


def http_timeout() -> float:
    """The HTTP timeout in seconds: ``$ZARRSAMPLE_HTTP_TIMEOUT``, else :data:`HTTP_TIMEOUT`."""
    text = os.environ.get(HTTP_TIMEOUT_ENV)
    if text is None:
        return HTTP_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ZarrsampleError(f"${HTTP_TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


#: tensorstore's (libcurl's) low-speed limit: a transfer below ``LIMIT`` bytes/s for
#: ``TIME`` seconds fails with ``DEADLINE_EXCEEDED``. Read once per process, when
#: tensorstore first speaks HTTP.
TS_LOW_SPEED_ENV = ("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", "TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES")


def _is_http(spec: tuple[Any, ...] | None) -> bool:
    return spec is not None and spec[0] == "tensorstore" and spec[1].get("kvstore", {}).get("driver") == "http"


def ts_deadline(spec: tuple[Any, ...] | None) -> float | None:
    """When a tensorstore read begun now is given up: twice :func:`http_timeout` from now for http(s)."""
    return time.monotonic() + 2 * http_timeout() if _is_http(spec) else None


def ts_read_into(array: Any, index: tuple[slice, ...]) -> tuple[np.ndarray, Any]:
    """Start reading ``array[index]`` (a tensorstore) into a recycled buffer: ``(buffer, future)``.

    The buffer (:mod:`._buffers`) holds the values once the future
    is done. Reading into memory of ours, rather than into arrays
    tensorstore allocates in its own threads, keeps the chunk cache's memory
    reused from chunk to chunk instead of spread over the allocator's
    per-thread arenas; it is as fast.
    """
    import tensorstore as ts

    view = array[index]
    dtype = np.dtype(view.dtype.numpy_dtype)
    shape = tuple(view.shape)
    out = take(dtype.itemsize * math.prod(shape)).view(dtype).reshape(shape)
    return out, ts.array(out, copy=False, write=True).write(view)


def ts_result(future: Any, deadline: float | None, name: str) -> Any:
    """A tensorstore future's result, or a ``TimeoutError`` naming ``name`` once ``deadline`` passed.

    The stalled transfers themselves end by tensorstore's low-speed limit
    (:data:`TS_LOW_SPEED_ENV`, set from :func:`http_timeout`); the deadline
    is the backstop for what that limit does not cover (a connection that
    never opens, a limit set otherwise before zarrsample's first read). The
    future is cancelled when given up.
    """
    if deadline is None:
        return future.result()
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        future.cancel()
        raise TimeoutError(
            f"{name}: no answer within {2 * http_timeout():g} s (twice ${HTTP_TIMEOUT_ENV}, backend='tensorstore')"
        ) from None


def url_store(url: str, storage_options: dict[str, Any] | None = None) -> FsspecStore:
    """A read-only fsspec store at ``url`` with fsspec's ``storage_options`` for its protocol.

    http(s) requests time out after :func:`http_timeout` unless the options
    set ``client_kwargs["timeout"]``: without it a server that accepts a
    request and never answers would block a read for aiohttp's default five
    minutes.
    """
    options = dict(storage_options or {})
    if url.startswith(("http://", "https://")) and "timeout" not in options.get("client_kwargs", {}):
        import aiohttp

        seconds = http_timeout()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
        options["client_kwargs"] = {**options.get("client_kwargs", {}), "timeout": timeout}
    return FsspecStore.from_url(url, storage_options=options or None, read_only=True)


def spec_store(spec: tuple[Any, ...]) -> Any:
    """A new read-only store for a ``("zarr", kind, root, path, format[, storage_options])`` spec."""
    kind, root = spec[1], spec[2]
    options = spec[5] if len(spec) > 5 else None  # specs pickled before storage options had five
    return LocalStore(root, read_only=True) if kind == "file" else url_store(root, options)


def open_spec(spec: tuple[Any, ...], name: str) -> Any:
    """Open a read-only array handle from a picklable spec."""
    if spec[0] == "tiff":
        from ._tiff import open_tiff_level

        _, path, series, level = spec
        return open_tiff_level(path, series, level)
    if spec[0] == "zarr":
        return zarr.open_array(store=spec_store(spec), path=spec[3], mode="r", zarr_format=spec[4])
    if _is_http(spec):  # before tensorstore's first HTTP request in this process, which reads them
        os.environ.setdefault(TS_LOW_SPEED_ENV[0], str(max(1, math.ceil(http_timeout()))))
        os.environ.setdefault(TS_LOW_SPEED_ENV[1], "1")
    return open_tensorstore(spec, name)
