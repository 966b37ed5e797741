"""A real HTTP server on 127.0.0.1 for tests: configurable routes, recorded requests.

Usage::

    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=b"<rss/>", headers={"ETag": '"v1"'}))
        server.route("/dyn", lambda request: Response(status=304))
        url = server.url("/feed")
        ...
        assert server.requests_for("/feed")[0].headers["user-agent"] == "..."

A ``Response`` body may be bytes or an iterable of chunks (streamed with chunked encoding, or
with ``Content-Length`` when the header is given); ``chunk_delay`` trickles the chunks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["Handler", "LocalHTTPServer", "RecordedRequest", "Response", "repeat_bytes"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    received_at: float
    """``time.monotonic()`` when the request line was read."""


@dataclass
class Response:
    """What a route answers."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunk_delay: float = 0.0
    delay: float = 0.0
    """Seconds to wait before sending the status line."""


Handler = Callable[[RecordedRequest], Response]


class LocalHTTPServer:
    """``ThreadingHTTPServer`` on an ephemeral port, run in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """Create (not start) the server; routes can be added before or after starting."""
        self._routes: dict[tuple[str, str], Handler] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return f"{self.base_url}{path}"

    def route(self, path: str, response: Response | Handler, *, method: str = "GET") -> None:
        """Answer ``method path`` (query string ignored) with a fixed or computed response."""
        handler: Handler = response if callable(response) else (lambda _request: response)
        with self._lock:
            self._routes[(method.upper(), path)] = handler

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """Requests received for ``path``, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> LocalHTTPServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _dispatch(self, request: RecordedRequest) -> Response:
        with self._lock:
            self.requests.append(request)
            handler = self._routes.get((request.method, request.path))
        if handler is None:
            return Response(status=404, body=b"not found", headers={"Content-Type": "text/plain"})
        return handler(request)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Keep test output quiet."""

            def _handle(self) -> None:
                received = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    received_at=received,
                )
                server._enter()
                try:
                    self._respond(server._dispatch(request))
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (byte cap, time limit): that is what tests provoke.
                    self.close_connection = True
                finally:
                    server._leave()

            def _respond(self, response: Response) -> None:
                if response.delay:
                    time.sleep(response.delay)
                self.send_response(response.status)
                headers = {k.lower(): v for k, v in response.headers.items()}
                for name, value in response.headers.items():
                    self.send_header(name, value)
                if isinstance(response.body, bytes):
                    if "content-length" not in headers:
                        self.send_header("Content-Length", str(len(response.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self._write_chunks([response.body], response.chunk_delay, chunked=False)
                    return
                chunked = "content-length" not in headers
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._write_chunks(iter(response.body), response.chunk_delay, chunked=chunked)

            def _write_chunks(
                self, chunks: Iterable[bytes], delay: float, *, chunked: bool
            ) -> None:
                for chunk in chunks:
                    if not chunk:
                        continue
                    if chunked:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        self.wfile.write(chunk)
                    self.wfile.flush()
                    if delay:
                        time.sleep(delay)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()

            do_GET = _handle  # noqa: N815 - http.server's naming
            do_POST = _handle  # noqa: N815
            do_PUT = _handle  # noqa: N815
            do_DELETE = _handle  # noqa: N815
            do_HEAD = _handle  # noqa: N815

        return _RequestHandler


def repeat_bytes(chunk: bytes, total: int) -> Iterator[bytes]:
    """Yield ``chunk`` until ``total`` bytes were produced (large bodies without the memory)."""
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece
