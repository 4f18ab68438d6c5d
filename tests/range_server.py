"""An HTTP server for tests: byte ranges (what sharded reads ask for), request counts, latency."""

from __future__ import annotations

import collections
import contextlib
import http.server
import os
import re
import threading
import time
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def _file(self) -> Path | None:
        path = Path(self.server.root, self.path.split("?")[0].lstrip("/"))
        return path if path.is_file() else None

    def do_HEAD(self):  # noqa: N802 - stdlib name
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):  # noqa: N802 - stdlib name
        server = self.server
        with server.lock:
            server.requests[self.path] += 1
        if server.required_header and self.headers.get(server.required_header[0]) != server.required_header[1]:
            self.send_error(403)
            return
        if server.latency:
            time.sleep(server.latency)
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        wanted = self.headers.get("Range")
        status, body = 200, data
        if wanted:
            match = _RANGE.match(wanted.strip())
            if match is None:
                self.send_error(416)
                return
            first, last = match.groups()
            if first == "":  # a suffix: the last n bytes
                start, stop = max(0, len(data) - int(last)), len(data)
            else:
                start, stop = int(first), len(data) if last == "" else int(last) + 1
            status, body = 206, data[start:stop]
            with server.lock:
                server.range_requests[self.path] += 1
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


@contextlib.contextmanager
def range_server(root, *, latency: float = 0.0, required_header: tuple[str, str] | None = None):
    """Serve ``root`` on 127.0.0.1 with byte ranges; yields ``(url, server)``.

    ``server.requests`` counts GETs per path, ``server.range_requests`` those
    with a Range header; ``server.latency`` seconds are added to each GET;
    with ``required_header`` (name, value), a GET without it is refused (403).
    """
    saved = dict(os.environ)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1"
    server = _Server(("127.0.0.1", 0), _RangeHandler)
    server.root, server.latency = str(root), latency
    server.required_header = required_header
    server.lock = threading.Lock()
    server.requests, server.range_requests = collections.Counter(), collections.Counter()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        os.environ.clear()
        os.environ.update(saved)  # the proxy settings of the process, as they were
