"""Where a zarr node lives: opening a local path or URL read-only, and the location an Image re-opens.

``open_path`` opens the zarr node at a path or URL (fsspec's storage
options for URLs) and turns the storage's refusals into one-line errors
naming the path: a missing bucket, no zarr metadata, refused credentials,
an unreachable endpoint. ``location`` is where an opened array can be
opened again in another process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import zarr
from zarr.errors import NodeNotFoundError
from zarr.storage import FsspecStore, LocalStore

from .._errors import ZarrsampleError
from ._image import url_store
from ._tensorstore import check_tensorstore_options
from ._validate import metadata_error

__all__ = ["PICTURE_SUFFIXES", "check_storage_options", "location", "open_path", "source_text"]


#: File endings read with Pillow, into memory.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

def source_text(source: str | os.PathLike[str]) -> str:
    text = os.fspath(source)
    if not isinstance(text, str):
        raise TypeError(f"source must be a str path or URL, got bytes {text!r}")
    return text

def check_storage_options(options: Any, source: Any, backend: str) -> dict[str, Any] | None:
    """``storage_options`` as a dict, refused where they cannot apply."""
    if options is None:
        return None
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"storage_options must be a dict of fsspec option names to values, got {options!r}")
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if not isinstance(text, str) or "://" not in text or text.startswith("file://"):
        given = repr(text) if isinstance(text, str) else f"a {type(source).__name__}"
        raise ZarrsampleError(
            f"storage_options apply to URLs (s3://, gs://, http(s)://, ...), but the source is {given}"
        )
    if backend == "tensorstore":
        check_tensorstore_options(text, dict(options))
    return dict(options)

def open_path(source: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> zarr.Array | zarr.Group:
    """Open the zarr node at a local path or URL, read-only."""
    text = source_text(source)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        store: Any = None
        try:
            store = url_store(text.rstrip("/"), storage_options)
            return zarr.open(store=store, mode="r")
        except NodeNotFoundError:
            raise FileNotFoundError(f"source {text!r}: {_nothing_at(store, text)}") from None
        except FileNotFoundError as exc:  # a missing bucket
            raise FileNotFoundError(f"source {text!r}: {_one_line(exc)}") from None
        except PermissionError as exc:  # refused keys, or anonymous on a private bucket
            raise ZarrsampleError(
                f"cannot open {text!r}: access denied ({_one_line(exc)}); check the credentials: "
                "storage_options (key and secret, anon, profile) or the AWS_* environment variables"
            ) from None
        except (ValueError, TypeError) as exc:  # unknown codec or dtype, bad shape or chunks
            raise metadata_error(repr(text), exc) from exc
        except Exception as exc:  # noqa: BLE001 - credentials, endpoint (botocore, aiohttp), missing package
            raise ZarrsampleError(f"cannot open {text!r}: {_one_line(exc)}") from None
    if not os.path.exists(text):
        raise FileNotFoundError(f"source path {text!r} does not exist")
    if not os.path.isdir(text):
        raise ZarrsampleError(
            f"source path {text!r} is a file, not a zarr array or group directory, and not a "
            f"TIFF file (no TIFF header) or a picture ({', '.join(PICTURE_SUFFIXES)})"
        )
    try:
        return zarr.open(store=LocalStore(os.path.abspath(text), read_only=True), mode="r")
    except NodeNotFoundError:
        raise ZarrsampleError(
            f"source path {text!r} is not a zarr array or group: it holds no zarr.json, "
            ".zarray or .zgroup"
        ) from None
    except (ValueError, TypeError) as exc:  # unknown codec or dtype, bad shape or chunks
        raise metadata_error(repr(text), exc) from exc

def _nothing_at(store: FsspecStore, url: str) -> str:
    """Why a URL holds no zarr node: its bucket does not exist, or no metadata file is there."""
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    if not url.startswith(("http://", "https://")):
        from zarr.core.sync import sync

        try:  # one more request, on the error path only
            sync(store.fs._info(bucket))
        except FileNotFoundError:
            return f"bucket {bucket!r} does not exist"
        except Exception:  # noqa: BLE001 - e.g. no permission to look at the bucket itself
            pass
    return "no zarr array or group found at this URL (no zarr.json, .zarray or .zgroup)"

def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())

def location(array: zarr.Array) -> tuple[str, str, dict[str, Any] | None] | None:
    """``("file", absolute root, None)`` or ``("url", root URL, fsspec options)`` of the array's store."""
    store = array.store
    if isinstance(store, LocalStore):
        return "file", os.path.abspath(store.root), None
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        if {"file", "local"} & set(protocols):
            return "file", os.path.abspath(store.path), None
        options = {k: v for k, v in dict(getattr(store.fs, "storage_options", {})).items() if k != "asynchronous"}
        client = {k: v for k, v in dict(options.pop("client_kwargs", {})).items() if k != "timeout"}
        if client:  # the http timeout is set again by url_store in each process
            options["client_kwargs"] = client
        if {"http", "https"} & set(protocols) and str(store.path).startswith("http"):
            return "url", str(store.path).rstrip("/"), options or None
        if protocols and "://" not in str(store.path):  # s3, gs, az, ...: the filesystem's own options
            return "url", f"{protocols[0]}://{str(store.path).strip('/')}", options or None
    return None
