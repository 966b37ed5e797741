"""Local sinks for the delivery benchmark, each run in its own process.

Separate processes keep the sinks from competing with the measured client for the GIL, so
the measured loops see the same server whichever of them runs.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import socket
import threading
import time
from typing import Any


def free_port() -> int:
    """Return a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        return "250 OK"


def _run_smtp(port: int, ready: multiprocessing.synchronize.Event) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(_CountingHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    # Serve until the parent terminates this process.
    threading.Event().wait()


async def _http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _run_http(port: int, ready: multiprocessing.synchronize.Event) -> None:
    import uvicorn

    config = uvicorn.Config(
        _http_app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="error",
        access_log=False,
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    ready.set()
    thread.join()


class Sink:
    """A sink process: ``smtp`` (aiosmtpd, counts messages) or ``http`` (answers 204)."""

    def __init__(self, kind: str) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        target = _run_smtp if kind == "smtp" else _run_http
        self._process = context.Process(target=target, args=(self.port, ready), daemon=True)
        self._process.start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError(f"{kind} sink did not start")

    def stop(self) -> None:
        """Terminate the sink process."""
        self._process.terminate()
        self._process.join(10)
