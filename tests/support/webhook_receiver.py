"""A real webhook receiver on 127.0.0.1 that verifies every request with ``standardwebhooks``.

Served by uvicorn in a thread (the httpx test-server pattern). Responses can be scripted per
path; anything that fails verification is answered 400 and counted in ``rejected``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Delivery:
    """A verified request."""

    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any


@dataclass
class Scripted:
    """A response the receiver gives instead of 200."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class WebhookReceiver:
    """Collects verified webhook deliveries; ``secret`` is the endpoint's ``whsec_`` secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.rejected: list[tuple[str, str]] = []
        self.scripts: dict[str, list[Scripted]] = {}
        self._lock = threading.Lock()
        self.port = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    def url(self, path: str = "hooks") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def script(self, path: str, *responses: Scripted) -> None:
        """Answer the next requests to ``path`` with ``responses``, then 200."""
        with self._lock:
            self.scripts.setdefault(path, []).extend(responses)

    def ids(self, path: str | None = None) -> list[str]:
        return [d.headers["webhook-id"] for d in self.deliveries if path in (None, d.path)]

    async def _handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        body = await request.body()
        headers = dict(request.headers)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self._lock:
                self.rejected.append((path, repr(exc)))
            return Response(status_code=400)
        with self._lock:
            self.deliveries.append(Delivery(path, headers, body, payload))
            queue = self.scripts.get(path)
            scripted = queue.pop(0) if queue else None
        if scripted is None:
            return Response(b'{"ok":true}', media_type="application/json")
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        return Response(scripted.body, status_code=scripted.status, headers=scripted.headers)


@contextmanager
def serve(receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """Serve ``receiver`` on a free 127.0.0.1 port for the duration of the block."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver.port = sock.getsockname()[1]
    config = uvicorn.Config(
        receiver.app, lifespan="off", log_level="warning", ws="none", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("webhook receiver did not start")
        time.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
