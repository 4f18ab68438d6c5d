"""The one error hierarchy of zarrsample."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ChunkReadError", "Hint", "ParameterTypeError", "ZarrsampleError", "ZarrsampleWarning", "is_transient",
    "spelled",
]

#: ``(parameter, value)``: a value to pass, written ``parameter=value!r`` in a message.
Hint = tuple[str, Any]


def spelled(parameter: str, value: Any) -> str:
    """How a message suggests a value: ``parameter=value!r`` (e.g. ``axes='CYX'``)."""
    return f"{parameter}={value!r}"


class ZarrsampleError(ValueError):
    """A value given to zarrsample breaks a documented rule.

    Subclasses ``ValueError`` so that ``except ValueError`` keeps working;
    the message names the parameter, the rule and the value received.
    ``hints`` lists the ``(parameter, value)`` pairs the message suggests
    (written as :func:`spelled` gives them), so that the command line can
    say them with its own options.
    """

    def __init__(self, *args: Any, hints: Sequence[Hint] = ()) -> None:
        super().__init__(*args)
        self.hints: tuple[Hint, ...] = tuple(hints)


class ZarrsampleWarning(UserWarning):
    """Input that zarrsample accepts but that is probably not what was meant.

    The message says what was assumed and how to say otherwise; ``hints``
    as for :class:`ZarrsampleError`. Turn them into errors with
    ``warnings.simplefilter("error", ZarrsampleWarning)``.
    """

    def __init__(self, *args: Any, hints: Sequence[Hint] = ()) -> None:
        super().__init__(*args)
        self.hints: tuple[Hint, ...] = tuple(hints)


class ParameterTypeError(TypeError, ValueError):
    """A parameter of the zarrdataset-compatible surface has a wrong type.

    A ``TypeError`` (zarrsample's rule for wrong types) that is also a
    ``ValueError``, which zarrdataset raises for the same inputs (a string
    ``patch_size``), so code written for either catches it.
    """


#: tensorstore status prefixes of errors worth retrying (its HTTP kvstore
#: reports 5xx, 429, resets and truncated bodies as UNAVAILABLE).
_TS_TRANSIENT = ("UNAVAILABLE:", "DEADLINE_EXCEEDED:", "ABORTED:", "RESOURCE_EXHAUSTED:")
_HTTP_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})


class ChunkReadError(ZarrsampleError):
    """A storage chunk could not be read or decoded.

    The message names the modality, the image (source and array path), the
    chunk's grid index and storage key (its URL for remote sources), the
    patch window (``window``; None for a mask read while planning, whose
    message names the mask rows instead) and, after retries, how many
    attempts were made; the
    original exception is chained as ``__cause__``. Attributes: ``image``,
    ``array_path``, ``chunk_index``, ``chunk_key``, ``window``,
    ``attempts``, ``transient``.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.image: str | None = details.get("image")
        self.array_path: str | None = details.get("array_path")
        self.chunk_index: tuple[int, ...] | None = details.get("chunk_index")
        self.chunk_key: str | None = details.get("chunk_key")
        self.window: Any = details.get("window")
        self.attempts: int = details.get("attempts", 1)
        self.transient: bool = details.get("transient", False)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is worth retrying.

    Transient: ``ConnectionError`` (reset, refused, aborted, broken pipe),
    ``TimeoutError`` (``asyncio.TimeoutError`` included), aiohttp's
    connection and payload errors (dropped connection, truncated body) and
    HTTP responses 408, 425, 429, 500, 502, 503, 504; tensorstore errors
    with status ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``ABORTED`` or
    ``RESOURCE_EXHAUSTED``. Everything else (decode errors, corrupt or
    truncated chunk files, missing permissions, ``ZarrsampleError``) is not.

    Examples
    --------
    >>> is_transient(ConnectionResetError()), is_transient(RuntimeError("Zstd decompression error"))
    (True, False)
    >>> is_transient(ValueError("UNAVAILABLE: Error reading http://h/a/c/0: [HTTP code 503]"))
    True
    """
    aiohttp = sys.modules.get("aiohttp")  # only errors it raised matter, so never import it
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ZarrsampleError):
            return False
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if aiohttp is not None:
            if isinstance(current, aiohttp.ClientResponseError):
                return current.status in _HTTP_RETRY
            if isinstance(current, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
                return True
        if type(current) is ValueError and str(current).startswith(_TS_TRANSIENT):
            return True
        current = current.__cause__ or current.__context__
    return False
