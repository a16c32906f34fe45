"""A thin stdlib HTTP shell around an app object, served from a daemon thread (for test servers).

Why: a test double's protocol logic (`eigendspy.testing.vllm_server.LocalServer.handle`) stays a plain
method, testable without sockets, while tests still talk to it over real HTTP with real clients. Every
request gets its own thread (``ThreadingHTTPServer``), so concurrent clients are served concurrently.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class App(Protocol):
    """Answers one request: ``(status, content type or "", body)``."""

    def handle(self, method: str, path: str, authorization: str | None, raw: bytes) -> tuple[int, str, bytes]: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the stdlib's 5 resets bursts of concurrent clients; uvicorn's backlog is 2048


class AppServer:
    """Serve ``app`` on ``host:port`` (0: a free port) until `stop`.

    Args:
        app: The request handler.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        name: The serving thread's name.
    """

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, name: str = "test-http-server") -> None:
        self.app, self.host, self.port, self.name = app, host, port, name
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> str:
        """Bind and serve in a daemon thread (idempotent); returns `url`."""
        if self._httpd is None:
            self._httpd = _Server((self.host, self.port), _Handler)
            self._httpd.app = self.app  # type: ignore[attr-defined]
            self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.name, daemon=True)
            self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and free the port (in-flight requests finish in their daemon threads)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the stdlib's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # the stdlib's naming
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, content_type, payload = self.server.app.handle(  # type: ignore[attr-defined]
            method, self.path, self.headers.get("Authorization"), raw)
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        logger.debug("%s - %s", self.address_string(), format % args)
