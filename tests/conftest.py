"""Shared fixtures and helpers: small images built in memory."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, settings
from zarr.storage import MemoryStore

from zarrsample_core import ImageCollection, open_image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# CI runs more examples than a developer's quick loop, within its time budget
# (~4 minutes on 2 cores: at 150 examples the 53 property tests took 86 s of it).
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def chunked_image(shape, chunks, axes, dtype="uint8"):
    """An Image with the given storage chunks and no pixel data (in memory)."""
    array = zarr.create_array(store=MemoryStore(), shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return open_image(array, axes=axes)


def collection(shape, chunks, axes, mask=None, mask_axes=None, spatial_axes=None):
    """A reference image of ``shape``/``chunks`` and an optional numpy mask."""
    modalities = {"images": chunked_image(shape, chunks, axes)}
    if mask is not None:
        modalities["masks"] = open_image(np.asarray(mask), axes=mask_axes or axes)
    return ImageCollection(modalities, spatial_axes=spatial_axes or axes)
settings.register_profile(
    "thorough", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


@contextlib.contextmanager
def serve_directory(root, monkeypatch):
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_METADATA_FILES = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


class _FlakyHandler(_QuietHandler):
    """Fails every ``server.fail_every``-th chunk request (metadata is always served)."""

    def do_GET(self):  # noqa: N802 - stdlib name
        server = self.server
        if not self.path.rstrip("/").endswith(_METADATA_FILES) and server.fail_every:
            with server.lock:
                server.chunk_requests += 1
                fail = server.chunk_requests % server.fail_every == 0
                server.failures += fail
            if fail and server.mode == "503":
                self.send_error(503, "Service Unavailable")
                return
            if fail and server.mode == "stall":  # accept, then never answer (until shutdown)
                server.release.wait(60)
                self.close_connection = True
                return
            if fail:  # "drop": close the connection without a response
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
        super().do_GET()


class _BusyServer(http.server.ThreadingHTTPServer):
    # The default backlog (5) overflows when a reader fetches many chunks at
    # once, and each dropped SYN costs the client a 1 s retransmit.
    request_queue_size = 128
    daemon_threads = True


@contextlib.contextmanager
def flaky_server(root, monkeypatch, *, fail_every=3, mode="503"):
    """Serve ``root`` like :func:`serve_directory`, failing every ``fail_every``-th chunk GET.

    ``mode`` is ``"503"`` (HTTP 503 response), ``"drop"`` (connection
    closed with no response) or ``"stall"`` (no response until the server
    shuts down). Yields ``(url, server)``; ``server.failures``
    and ``server.chunk_requests`` count, ``server.fail_every = 0`` stops failing.
    """
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    handler = functools.partial(_FlakyHandler, directory=str(root))
    server = _BusyServer(("127.0.0.1", 0), handler)
    server.lock, server.chunk_requests, server.failures = threading.Lock(), 0, 0
    server.fail_every, server.mode = fail_every, mode
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


#: Test files that fork (DataLoader workers, a process pool): collected first (see below).
FORKING_TESTS = (
    "test_torch.py", "test_torch_random.py", "test_soak.py", "test_workers.py", "test_s3.py", "test_buffers_fork.py",
)


def pytest_ignore_collect(collection_path, config):
    """Each session of ``make test`` imports only the test files it runs.

    With ``-m forking`` each xdist worker would otherwise import tensorflow,
    jax and the rest for tests it deselects: about 8 s of CPU per worker.
    """
    name, wanted = collection_path.name, config.getoption("markexpr")
    if collection_path.suffix == ".py" and name.startswith("test_") and wanted in ("forking", "not forking"):
        if (name in FORKING_TESTS) != (wanted == "forking"):
            return True
    return None  # pytest's own rules (--ignore, ...) decide


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Run the tests that fork DataLoader workers before any test uses jax; mark them ``forking``.

    jax starts threads once it computes; a later ``fork()`` in the same
    process (the default start method of torch's DataLoader workers) may
    deadlock. In one process the order below keeps them apart. pytest-xdist
    hands files to its workers in its own order, so ``make test`` runs
    ``-m forking`` and ``-m "not forking"`` as two sessions.
    """
    for item in items:
        if item.path.name in FORKING_TESTS:
            item.add_marker(pytest.mark.forking)
    items.sort(key=lambda item: 0 if item.path.name in FORKING_TESTS else 1)


def tree_snapshot(root):
    """Every path under root (root included) with mtime, size and mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            info = os.stat(entry)
            out[os.path.relpath(entry, root)] = (info.st_mtime_ns, info.st_size, info.st_mode)
    return out


@contextlib.contextmanager
def read_only_tree(root):
    """Remove write permission from ``root`` and everything under it; restored on exit."""
    modes = {}
    for dirpath, _, filenames in os.walk(root):
        for p in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            modes[p] = os.stat(p).st_mode
            os.chmod(p, modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)


def _no_proxy():
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)


@contextlib.contextmanager
def moto_server():
    """A moto server (S3, IAM, ...) in a subprocess on 127.0.0.1; yields its endpoint URL."""
    _no_proxy()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def s3_options(endpoint, key="testing", secret="testing"):
    """fsspec's storage options for a moto endpoint."""
    return {"key": key, "secret": secret,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1 (a subprocess, stopped after the module): yields its storage options.

    It checks no signature (any keys are accepted), but it does check
    bucket policies and ACLs for anonymous requests.
    """
    with moto_server() as endpoint:
        yield s3_options(endpoint)


@pytest.fixture(scope="module")
def s3_auth_server():
    """A second moto server whose endpoint URL is yielded; the caller turns its authentication on.

    Until ``enable_moto_auth(endpoint)`` moto accepts any keys (so buckets
    and IAM users can be set up); from then on every request must be signed
    with the keys of an IAM user that moto created.
    """
    with moto_server() as endpoint:
        yield endpoint


def enable_moto_auth(endpoint):
    """Make moto check the signature and IAM policy of every later request (its server-mode switch)."""
    import requests

    answer = requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=30)
    assert answer.status_code == 200, answer.text


_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message></Error>")


class _S3ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards to moto; fails every ``server.fail_every``-th chunk GET (503 SlowDown or a dropped connection)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def _forward(self):
        import http.client

        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        key = self.path.split("?")[0].rstrip("/")
        if self.command == "GET" and server.fail_every and not key.endswith(_METADATA_FILES) and key.count("/") > 1:
            with server.lock:
                server.chunk_requests += 1
                fail = server.chunk_requests % server.fail_every == 0
                server.failures += fail
            if fail and server.mode == "503":
                self.send_response(503, "Slow Down")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(_SLOW_DOWN)
                return
            if fail:  # "drop": the connection closes without a response
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
        upstream = http.client.HTTPConnection(*server.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        length = answer.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length if length is not None else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 - stdlib names


@contextlib.contextmanager
def flaky_s3_proxy(endpoint, *, fail_every=3, mode="503"):
    """An S3 endpoint in front of moto's ``endpoint`` failing every ``fail_every``-th chunk GET.

    ``mode`` is ``"503"`` (S3's ``SlowDown`` answer) or ``"drop"`` (the
    connection closes with no answer). Yields ``(url, server)`` with the
    counters of :func:`flaky_server`.
    """
    host, port = endpoint.split("://")[1].split(":")
    server = _BusyServer(("127.0.0.1", 0), _S3ProxyHandler)
    server.upstream = (host, int(port))
    server.lock, server.chunk_requests, server.failures = threading.Lock(), 0, 0
    server.fail_every, server.mode = fail_every, mode
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
