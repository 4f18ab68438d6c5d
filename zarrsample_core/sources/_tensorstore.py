"""tensorstore specs of the arrays ``open_image`` found, and their opening in each process.

``tensorstore_spec`` turns an array's location (a local directory, an
http(s), ``s3://`` or ``gs://`` URL with fsspec's storage options) into a
picklable spec: tensorstore's JSON plus, for ``s3://`` keys given in the
options, the keys themselves. ``open_tensorstore`` opens it in the current
process (once per process: see :class:`._image.Image`).

fsspec's options are translated to tensorstore's kvstore members, never
guessed: an option without a tensorstore counterpart is an error naming it.

============================================  ==========================================
fsspec (s3fs)                                 tensorstore ``s3`` kvstore
============================================  ==========================================
``anon=True``                                 ``aws_credentials: {"type": "anonymous"}``
``key``, ``secret``, ``token`` (or            a credentials file written for this process
``client_kwargs.aws_access_key_id``, ...)     (``{"type": "profile", "credentials_file"}``)
``profile``                                   ``{"type": "profile", "profile": ...}``
``endpoint_url`` or ``client_kwargs.``        ``endpoint``
``endpoint_url``
``client_kwargs.region_name`` or ``region``   ``aws_region``
``requester_pays``                            ``requester_pays``
none of the above                             tensorstore's default chain: environment
                                              variables, ``~/.aws``, instance metadata,
                                              then anonymous
============================================  ==========================================

For ``gs://`` (gcsfs's options) tensorstore's ``gcs`` kvstore takes no
credentials in its spec: it uses Google's application default credentials
when it finds some (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's default
file, the GCE metadata server) and sends none otherwise. ``token="anon"``
(or ``anon=True``) and ``token="google_default"`` are therefore accepted
and mean that; ``requester_pays="project"`` bills that project
(``gcs_user_project``); any other option is refused.
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
from typing import Any

from .._errors import TRANSIENT_STATUS, ZarrsampleError

__all__ = [
    "TRANSIENT_STATUS", "check_tensorstore_options", "open_tensorstore", "tensorstore_message", "tensorstore_spec",
]


#: fsspec options that only tune fsspec's own caches and listings: nothing to translate.
_FSSPEC_ONLY = frozenset({
    "skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths",
    "default_block_size", "default_cache_type", "default_fill_cache",
})

# (pid, tensorstore.Context) of the process that first read with tensorstore:
# shared thread pools, and the marker that a fork()ed child must not use it.
_ts_context: tuple[int, Any] | None = None

# (pid, key, secret, token) -> the credentials file written for them in that process.
_credential_files: dict[tuple[int, str, str, str | None], str] = {}


def check_tensorstore_options(url: str, options: dict[str, Any] | None) -> None:
    """Raise the error :func:`tensorstore_spec` would raise for these options, before any I/O."""
    protocol = url.split("://", 1)[0].lower()
    if protocol in ("s3", "s3a", "gs", "gcs"):
        _kvstore(url.rstrip("/"), "", options, url)
    elif protocol in ("http", "https"):
        _http_headers(options or {}, url)
    elif options:
        _untranslatable(url, sorted(options))


def tensorstore_spec(
    location: tuple[str, str, dict[str, Any] | None] | None, path: str, zarr_format: int, name: str,
    store: str,
) -> tuple[Any, ...]:
    """``("tensorstore", json, path, aws_keys, zarr_spec)`` of the array at ``path`` inside ``location``.

    Parameters
    ----------
    location : tuple or None
        ``("file", root, None)`` or ``("url", root URL, fsspec options)``
        (see :func:`._locations.location`); None for a store that has neither.
    path : str
        Array path inside the root.
    zarr_format : int
        2 or 3.
    name : str
        The image's name, for messages.
    store : str
        The store's type name, for the message when ``location`` is None.

    Returns
    -------
    tuple
        Picklable: it holds no tensorstore object. ``aws_keys`` is None or
        ``{"key", "secret", "token"}``, kept out of the JSON so that each
        process writes its own credentials file (:func:`open_tensorstore`).
        ``zarr_spec`` is the ``("zarr", ...)`` spec of the same array, with
        which zarr reads its metadata again (see :mod:`._validate`).

    Raises
    ------
    ZarrsampleError
        A store tensorstore cannot read (memory, zip, an unknown protocol)
        or an fsspec option without a tensorstore counterpart.
    """
    if location is None:
        raise ZarrsampleError(
            f"backend='tensorstore' needs an array on a local path or an http(s), s3:// or gs:// "
            f"URL, but {name} is in a {store}; use backend='zarr'"
        )
    kind, root, options = location
    driver = "zarr3" if zarr_format == 3 else "zarr"
    keys = None
    if kind == "file":
        kvstore: dict[str, Any] = {"driver": "file", "path": os.path.join(root, path).rstrip("/") + "/"}
    elif root.startswith(("http://", "https://")):
        kvstore = {"driver": "http", "base_url": f"{root.rstrip('/')}/{path}".rstrip("/")}
        headers = _http_headers(options or {}, name)
        if headers:
            kvstore["headers"] = headers
    elif root.split("://", 1)[0].lower() in ("s3", "s3a", "gs", "gcs"):
        kvstore, keys = _kvstore(root, path, options, name)
    else:
        raise ZarrsampleError(
            f"backend='tensorstore' reads local paths and http(s), s3:// and gs:// URLs, but {name} "
            f"is a {root.split('://', 1)[0]}:// URL; use backend='zarr'"
        )
    zarr_spec = ("zarr", kind, root, path, zarr_format, options)  # for zarr's metadata checks
    return ("tensorstore", {"driver": driver, "kvstore": kvstore}, path, keys, zarr_spec)


def _http_headers(options: dict[str, Any], name: str) -> list[str]:
    """fsspec's http ``headers`` (top level or in ``client_kwargs``) as tensorstore's ``"Name: value"`` list."""
    rest = {k: v for k, v in options.items() if k not in ("headers", "client_kwargs")}
    client = dict(options.get("client_kwargs") or {})
    headers = {**(client.pop("headers", None) or {}), **(options.get("headers") or {})}
    rest.update({f"client_kwargs.{k}": v for k, v in client.items()})
    if rest:
        _untranslatable(name, sorted(rest))
    return [f"{key}: {value}" for key, value in headers.items()]


def _kvstore(
    root: str, path: str, options: dict[str, Any] | None, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """tensorstore's ``s3`` or ``gcs`` kvstore for ``root/path``, and the AWS keys to write."""
    protocol, _, rest = root.partition("://")
    bucket, _, prefix = rest.strip("/").partition("/")
    key_path = "/".join(p for p in (prefix, path.strip("/")) if p)
    kvstore: dict[str, Any] = {"bucket": bucket, "path": key_path + "/" if key_path else ""}
    opts = dict(options or {})
    for option in _FSSPEC_ONLY & set(opts):
        del opts[option]
    if protocol.lower() in ("gs", "gcs"):
        return {"driver": "gcs", **kvstore, **_gcs_members(opts, name)}, None
    members, keys = _s3_members(opts, name)
    return {"driver": "s3", **kvstore, **members}, keys


def _s3_members(opts: dict[str, Any], name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    client = opts.pop("client_kwargs", None) or {}
    if not isinstance(client, dict):
        raise ZarrsampleError(f"storage option client_kwargs must be a dict, got {client!r}")
    client = dict(client)

    def take(option: str, client_option: str | None = None) -> Any:
        value = opts.pop(option, None)
        other = client.pop(client_option, None) if client_option else None
        if value is not None and other is not None and value != other:
            raise ZarrsampleError(f"storage options {option} and client_kwargs.{client_option} disagree; give one")
        return value if value is not None else other

    endpoint = take("endpoint_url", "endpoint_url")
    region = take("region", "region_name")
    key = take("key", "aws_access_key_id")
    secret = take("secret", "aws_secret_access_key")
    token = take("token", "aws_session_token")
    anon, profile, requester_pays = opts.pop("anon", False), opts.pop("profile", None), opts.pop("requester_pays", None)
    left = sorted(opts) + [f"client_kwargs.{k}" for k in sorted(client)]
    if left:
        _untranslatable(name, left)
    members: dict[str, Any] = {}
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ZarrsampleError(f"storage option endpoint_url must be an http(s) URL, got {endpoint!r}")
        members["endpoint"] = endpoint.rstrip("/")
    if region is not None:
        members["aws_region"] = _text(region, "region_name")
    if requester_pays is not None:
        if not isinstance(requester_pays, bool):
            raise ZarrsampleError(f"storage option requester_pays must be True or False, got {requester_pays!r}")
        members["requester_pays"] = requester_pays
    if not isinstance(anon, bool):
        raise ZarrsampleError(f"storage option anon must be True or False, got {anon!r}")
    given = [o for o, v in (("anon", anon or None), ("key", key), ("profile", profile)) if v is not None]
    if len(given) > 1:
        raise ZarrsampleError(f"storage options {' and '.join(given)} exclude each other; give one")
    if (key is None) != (secret is None) or (token is not None and key is None):
        raise ZarrsampleError("storage options key and secret go together (token only with both)")
    keys = None
    if anon:
        members["aws_credentials"] = {"type": "anonymous"}
    elif profile is not None:
        members["aws_credentials"] = {"type": "profile", "profile": _text(profile, "profile")}
    elif key is not None:
        keys = {"key": _text(key, "key"), "secret": _text(secret, "secret"),
                "token": None if token is None else _text(token, "token")}
    return members, keys


def _gcs_members(opts: dict[str, Any], name: str) -> dict[str, Any]:
    token, anon, requester_pays = opts.pop("token", None), opts.pop("anon", None), opts.pop("requester_pays", None)
    left = sorted(opts)
    if token not in (None, "anon", "google_default"):
        left.insert(0, "token")
    if anon not in (None, True, False):
        raise ZarrsampleError(f"storage option anon must be True or False, got {anon!r}")
    if left:
        raise ZarrsampleError(
            f"storage options {left} of {name} cannot be given to backend='tensorstore': its gcs driver "
            "takes no credentials or endpoint in its spec (it uses Google application default "
            "credentials when it finds some, none otherwise; only token='anon', "
            "token='google_default' and requester_pays='project' translate); use backend='zarr'"
        )
    if requester_pays is None or requester_pays is False:
        return {}
    if not isinstance(requester_pays, str) or not requester_pays:
        raise ZarrsampleError(
            f"storage option requester_pays must name the project to bill for backend='tensorstore', "
            f"got {requester_pays!r}"
        )
    return {"gcs_user_project": {"project_id": requester_pays}}


def _untranslatable(name: str, options: list[str]) -> None:
    raise ZarrsampleError(
        f"storage options {options} of {name} have no tensorstore counterpart and cannot be given "
        "to backend='tensorstore' (s3:// translates anon, key, secret, token, profile, "
        "endpoint_url, region_name and requester_pays; http(s) translates headers); use backend='zarr'"
    )


def _text(value: Any, option: str) -> str:
    if not isinstance(value, str) or not value or "\n" in value or "\r" in value:
        raise ZarrsampleError(f"storage option {option} must be a non-empty one-line string, got a {type(value).__name__}")
    return value


def _credentials_file(key: str, secret: str, token: str | None) -> str:
    """A credentials file holding these keys, readable by this process only.

    On Linux an anonymous in-memory file (``memfd``), so the keys never
    reach a disk; elsewhere a private temporary file removed at exit.
    """
    pid = os.getpid()
    known = _credential_files.get((pid, key, secret, token))
    if known is not None:
        return known
    text = f"[zarrsample]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    if token is not None:
        text += f"aws_session_token = {token}\n"
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("zarrsample-aws-credentials", os.MFD_CLOEXEC)
        os.write(fd, text.encode())
        path = f"/proc/{pid}/fd/{fd}"  # open for the life of the process
    else:  # pragma: no cover - macOS, Windows
        fd, path = tempfile.mkstemp(prefix="zarrsample-aws-")  # mode 0600
        with os.fdopen(fd, "w") as file:
            file.write(text)
        atexit.register(os.remove, path)
    _credential_files[(pid, key, secret, token)] = path
    return path


def _aws_files() -> dict[str, str]:
    """This process' AWS credentials and config files, as botocore finds them.

    tensorstore's ``profile`` credentials do not resolve them by themselves
    (0.1.86 fails to "resolve credentials file path"); a missing file reads
    as an empty one.
    """
    files = {}
    for member, variable, default in [("credentials_file", "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
                                      ("config_file", "AWS_CONFIG_FILE", "config")]:
        path = os.path.expanduser(os.environ.get(variable) or os.path.join("~", ".aws", default))
        files[member] = path if os.path.isfile(path) else os.devnull
    return files


def open_tensorstore(spec: tuple[Any, ...], name: str) -> Any:
    """Open the array of a :func:`tensorstore_spec` spec in this process, read-only.

    Raises
    ------
    ZarrsampleError
        In a child ``fork()``ed after its parent used tensorstore; when
        tensorstore refuses the spec or the store (missing, forbidden), in
        one line naming the image.
    ValueError
        tensorstore's own error when it is transient (``UNAVAILABLE``, ...),
        so that ``on_error="retry"`` retries it.
    """
    import tensorstore as ts

    global _ts_context
    if _ts_context is not None and _ts_context[0] != os.getpid():
        raise ZarrsampleError(
            f"cannot read {name} with backend='tensorstore' in process {os.getpid()}: it was "
            f"fork()ed after process {_ts_context[0]} used tensorstore, and tensorstore aborts "
            "after fork(). Start workers with the 'spawn' or 'forkserver' method (e.g. torch "
            "DataLoader(multiprocessing_context='spawn')), do not read with tensorstore before "
            "forking, or use backend='zarr'"
        )
    if _ts_context is None:
        # No retries inside tensorstore: a failing server errors at once (instead of
        # tensorstore's minutes of backoff) and PatchReader's `retries` apply to every backend.
        _ts_context = (os.getpid(), ts.Context({
            "http_request_retries": {"max_retries": 0},
            "s3_request_retries": {"max_retries": 0},
            "gcs_request_retries": {"max_retries": 0},
        }))
    json = spec[1]
    keys = spec[3] if len(spec) > 3 else None  # specs pickled before s3 had three members
    credentials = json["kvstore"].get("aws_credentials")
    if keys is not None:
        credentials = {"type": "profile", "profile": "zarrsample", "config_file": os.devnull,
                       "credentials_file": _credentials_file(keys["key"], keys["secret"], keys["token"])}
    elif credentials is not None and credentials.get("type") == "profile":
        credentials = {**credentials, **_aws_files()}
    if credentials is not None:
        json = {**json, "kvstore": {**json["kvstore"], "aws_credentials": credentials}}
    try:
        return ts.open(json, read=True, open=True, context=_ts_context[1]).result()
    except ValueError as exc:
        if str(exc).startswith(TRANSIENT_STATUS):
            raise
        raise ZarrsampleError(f"tensorstore could not open {name}: {tensorstore_message(exc)}") from None


#: tensorstore's bracketed annotations: ``[name='value']`` with backslash escapes.
_ANNOTATION = re.compile(r"\s*\[([\w\- ]+)='((?:[^'\\]|\\.)*)'\]")


def tensorstore_message(exc: BaseException) -> str:
    """tensorstore's error text on one line, without its spec, response body and request ids.

    The HTTP status (``http_response_code``) is kept.
    """
    text = _ANNOTATION.sub(lambda m: f" [HTTP {m.group(2)}]" if m.group(1) == "http_response_code" else "", str(exc))
    return " ".join(text.split())
