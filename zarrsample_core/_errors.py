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
#: tensorstore status prefixes of errors worth retrying (its http, s3 and gcs
#: kvstores report 5xx, 429, resets and truncated bodies as UNAVAILABLE, and
#: transient errors that outlived their retries as ABORTED).
TRANSIENT_STATUS = ("UNAVAILABLE:", "DEADLINE_EXCEEDED:", "ABORTED:", "RESOURCE_EXHAUSTED:")
_HTTP_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})
#: S3 error codes of answers worth retrying (whatever their HTTP status).
_S3_RETRY = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
})


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
    HTTP responses 408, 425, 429, 500, 502, 503, 504; botocore's connection,
    read-timeout and truncated-body errors and its ``ClientError`` for those
    statuses or S3's ``SlowDown``, ``ServiceUnavailable``, ``InternalError``,
    ``RequestTimeout`` and throttling codes (s3fs raises them as the cause of
    an ``OSError``); tensorstore errors with status ``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED``, ``ABORTED`` or ``RESOURCE_EXHAUSTED``. Everything
    else (decode errors, corrupt or truncated chunk files, missing keys or
    buckets, refused credentials, TLS certificate errors,
    ``ZarrsampleError``) is not.

    Examples
    --------
    >>> is_transient(ConnectionResetError()), is_transient(RuntimeError("Zstd decompression error"))
    (True, False)
    >>> is_transient(ValueError("UNAVAILABLE: Error reading http://h/a/c/0: [HTTP code 503]"))
    True
    """
    aiohttp = sys.modules.get("aiohttp")  # only errors they raised matter, so never import them
    botocore = sys.modules.get("botocore.exceptions")
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ZarrsampleError):
            return False
        if botocore is not None:
            verdict = _botocore_transient(current, botocore)
            if verdict is not None:
                return verdict
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if aiohttp is not None:
            if isinstance(current, aiohttp.ClientResponseError):
                return current.status in _HTTP_RETRY
            if isinstance(current, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
                return True
        if type(current) is ValueError and str(current).startswith(TRANSIENT_STATUS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _botocore_transient(exc: BaseException, botocore: Any) -> bool | None:
    """Whether a botocore error is transient; None for other exceptions."""
    if isinstance(exc, botocore.SSLError):  # a certificate does not heal by waiting
        return False
    if isinstance(exc, (botocore.ConnectionError, botocore.HTTPClientError, botocore.IncompleteReadError)):
        return True  # refused, reset, closed, read or connect timeouts, truncated bodies
    if isinstance(exc, botocore.ClientError):
        response = getattr(exc, "response", None) or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code")
        return status in _HTTP_RETRY or code in _S3_RETRY or str(code) in {str(s) for s in _HTTP_RETRY}
    if isinstance(exc, botocore.BotoCoreError):
        return False  # missing credentials, bad parameters, unknown regions
    return None

