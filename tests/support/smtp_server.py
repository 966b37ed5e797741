"""A real SMTP server for tests: aiosmtpd's Controller on 127.0.0.1 with a recording handler."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """Return a port that was free a moment ago (aiosmtpd cannot bind port 0, finding 9)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    """One message as the server accepted it."""

    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """Records accepted messages; replies can be scripted per recipient or per DATA."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    data_delay: float = 0.0
    hold_next: list[float] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        content = envelope.original_content or envelope.content
        self.received.append(
            Received(session.peer, envelope.mail_from, list(envelope.rcpt_tos), bytes(content))
        )
        delay = self.hold_next.pop(0) if self.hold_next else self.data_delay
        if delay:
            # The message is already kept: a client that gives up now cannot know it.
            await asyncio.sleep(delay)
        return f"250 OK queued as Q{len(self.received)}"

    @property
    def peers(self) -> set[Any]:
        return {item.peer for item in self.received}


class SmtpServer:
    """Start, stop and restart an aiosmtpd server on one fixed local port."""

    def __init__(self, handler: RecordingHandler | None = None, **controller_options: Any) -> None:
        self.handler = handler or RecordingHandler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self._options = controller_options
        self._controller: Controller | None = None

    def start(self) -> None:
        controller = Controller(self.handler, hostname=self.host, port=self.port, **self._options)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@dataclass(frozen=True)
class LocalCertificate:
    """A self-signed certificate for 127.0.0.1 and the contexts that use it."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(directory: Path) -> LocalCertificate | None:
    """Create a self-signed certificate with the openssl CLI, or ``None`` without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return LocalCertificate(cert, key)


def running(server: SmtpServer) -> Iterator[SmtpServer]:
    """Run ``server`` for the duration of a fixture."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
