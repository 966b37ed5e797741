from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from alerts.render import render_email
from service.notify.email import DkimSigner, Mailer, SmtpOptions, build_message
from service.runtime import smtp_options
from service.settings import SmtpSettings
from tests.support.digests import sample_digest
from tests.support.smtp_server import LocalCertificate, RecordingHandler, SmtpServer, running

pytestmark = pytest.mark.integration

UNSUB = "https://dealwatch.example.org/unsubscribe/" + "t" * 90


def digest_message(number: int, to: str = "reader@example.com") -> EmailMessage:
    rendered = render_email(
        sample_digest(),
        subject_prefix="[dealwatch]",
        unsubscribe_url=UNSUB,
        preferences_url="https://dealwatch.example.org/p/x",
        tz="Asia/Karachi",
    )
    return build_message(
        rendered,
        sender="dealwatch <digest@news.example.org>",
        to=to,
        message_id=f"<delivery-{number}@news.example.org>",
        list_id="Daily digest <daily.news.example.org>",
        unsubscribe_url=UNSUB,
        date=datetime(2026, 11, 1, 4, tzinfo=UTC),
    )


def options(server: SmtpServer, **overrides: Any) -> SmtpOptions:
    values: dict[str, Any] = {"host": server.host, "port": server.port, "tls": "none"}
    values.update(overrides)
    return SmtpOptions(**values)


async def test_batch_reuses_one_connection_and_keeps_headers(smtp_server: SmtpServer) -> None:
    mailer = Mailer(options(smtp_server))
    async with mailer.connection() as conn:
        outcomes = [
            await conn.send(digest_message(i), envelope_from=f"bounces+d{i}@news.example.org")
            for i in range(3)
        ]
    assert [o.status for o in outcomes] == ["sent"] * 3
    assert outcomes[2].code == 250
    assert "queued as Q3" in outcomes[2].message
    assert conn.connections_opened == 1
    assert len(smtp_server.handler.peers) == 1
    for number, item in enumerate(smtp_server.received):
        assert item.mail_from == f"bounces+d{number}@news.example.org"
        assert item.rcpt_tos == ["reader@example.com"]
        assert f"List-Unsubscribe: <{UNSUB}>\r\n".encode() in item.raw
        message = item.message
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["Message-ID"] == f"<delivery-{number}@news.example.org>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Date"] == "Sun, 01 Nov 2026 04:00:00 +0000"
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        assert "<mark>&lt;LNG&gt;</mark>" in html.get_content()


async def test_reconnects_after_the_message_cap(smtp_server: SmtpServer) -> None:
    mailer = Mailer(options(smtp_server, max_messages_per_connection=2))
    async with mailer.connection() as conn:
        for i in range(5):
            assert (await conn.send(digest_message(i))).status == "sent"
    assert conn.connections_opened == 3
    assert len(smtp_server.handler.peers) == 3


async def test_rcpt_replies_are_classified_and_the_connection_survives(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.rcpt_replies = {
        "gone@example.com": "550 5.1.1 No such user",
        "busy@example.com": "451 4.2.0 Try later",
    }
    async with Mailer(options(smtp_server)).connection() as conn:
        gone = await conn.send(digest_message(1, "gone@example.com"))
        busy = await conn.send(digest_message(2, "busy@example.com"))
        fine = await conn.send(digest_message(3))
    assert (gone.status, gone.code) == ("permanent", 550)
    assert (busy.status, busy.code) == ("retry", 451)
    assert "Try later" in busy.message
    assert fine.status == "sent"
    assert conn.connections_opened == 1
    assert [r.rcpt_tos for r in smtp_server.received] == [["reader@example.com"]]


async def test_data_replies_are_classified(smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_replies = ["452 4.3.1 Insufficient storage", "554 5.7.1 Rejected"]
    async with Mailer(options(smtp_server)).connection() as conn:
        first = await conn.send(digest_message(1))
        second = await conn.send(digest_message(2))
        third = await conn.send(digest_message(3))
    assert (first.status, first.code, first.ambiguous) == ("retry", 452, False)
    assert (second.status, second.code) == ("permanent", 554)
    assert third.status == "sent"
    assert len(smtp_server.received) == 1


async def test_slow_final_reply_is_an_ambiguous_retry(smtp_server: SmtpServer) -> None:
    # RFC 5321 gives the final reply 10 minutes; a client that gives up earlier cannot tell
    # whether the relay kept the message (delivery standards finding 7).
    smtp_server.handler.data_delay = 1.0
    async with Mailer(options(smtp_server, final_timeout=0.2)).connection() as conn:
        outcome = await conn.send(digest_message(1))
    assert outcome.status == "retry"
    assert outcome.ambiguous is True
    assert len(smtp_server.received) == 1


async def test_smtp_down_then_up_retries_then_sends_once() -> None:
    server = SmtpServer()
    mailer = Mailer(options(server, timeout=5))
    message = digest_message(1)
    async with mailer.connection() as conn:
        down = await conn.send(message)
    assert down.status == "retry"
    assert down.code is None
    server.start()
    try:
        async with mailer.connection() as conn:
            up = await conn.send(message)
    finally:
        server.stop()
    assert up.status == "sent"
    assert [m.message["Message-ID"] for m in server.received] == ["<delivery-1@news.example.org>"]


async def test_server_restart_mid_batch_reconnects(smtp_server: SmtpServer) -> None:
    async with Mailer(options(smtp_server)).connection() as conn:
        assert (await conn.send(digest_message(1))).status == "sent"
        smtp_server.stop()
        lost = await conn.send(digest_message(2))
        smtp_server.start()
        again = await conn.send(digest_message(2))
    assert lost.status == "retry"
    assert again.status == "sent"
    assert len(smtp_server.received) == 2


@pytest.fixture
def starttls_server(certificate: LocalCertificate) -> Iterator[SmtpServer]:
    yield from running(SmtpServer(tls_context=certificate.server_context(), require_starttls=True))


async def test_starttls_mode_sends(
    starttls_server: SmtpServer, certificate: LocalCertificate
) -> None:
    mailer = Mailer(
        options(starttls_server, tls="starttls", tls_context=certificate.client_context())
    )
    async with mailer.connection() as conn:
        outcome = await conn.send(digest_message(1))
    assert outcome.status == "sent"
    assert len(starttls_server.received) == 1


@pytest.mark.parametrize("tls", ["none", "starttls"])
async def test_the_socket_is_closed_when_the_connection_block_ends(
    tls: str, smtp_server: SmtpServer, starttls_server: SmtpServer, certificate: LocalCertificate
) -> None:
    # A TLS close waits for the relay's close_notify: a socket still open here would outlive
    # an event loop that ends next (asyncio.run in the CLI), unclosed.
    server = starttls_server if tls == "starttls" else smtp_server
    mailer = Mailer(options(server, tls=tls, tls_context=certificate.client_context()))
    async with mailer.connection() as conn:
        assert (await conn.send(digest_message(1))).status == "sent"
        assert conn._smtp is not None
        sock = conn._smtp.get_transport_info("socket")
    assert sock.fileno() == -1


async def test_plaintext_refused_by_a_starttls_server_is_a_retry(
    starttls_server: SmtpServer,
) -> None:
    async with Mailer(options(starttls_server, tls="none")).connection() as conn:
        outcome = await conn.send(digest_message(1))
    # 530 blames our configuration, not the recipient: never a suppression.
    assert (outcome.status, outcome.code) == ("retry", 530)
    assert starttls_server.received == []


async def test_starttls_required_against_a_server_without_it(smtp_server: SmtpServer) -> None:
    async with Mailer(options(smtp_server, tls="starttls")).connection() as conn:
        outcome = await conn.send(digest_message(1))
    assert outcome.status == "retry"
    assert "STARTTLS" in outcome.message
    assert smtp_server.received == []


async def test_untrusted_certificate_is_refused(starttls_server: SmtpServer) -> None:
    async with Mailer(options(starttls_server, tls="starttls")).connection() as conn:
        outcome = await conn.send(digest_message(1))
    assert outcome.status == "retry"
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.message
    assert starttls_server.received == []


async def test_implicit_tls(certificate: LocalCertificate) -> None:
    server = SmtpServer(ssl_context=certificate.server_context())
    server.start()
    try:
        mailer = Mailer(options(server, tls="tls", tls_context=certificate.client_context()))
        async with mailer.connection() as conn:
            outcome = await conn.send(digest_message(1))
    finally:
        server.stop()
    assert outcome.status == "sent"
    assert len(server.received) == 1


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"relay",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)


# Plain AUTH keeps the fixture simple; production pairs auth with a TLS mode.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize(
    ("password", "status", "code"), [("s3cret", "sent", 250), ("wrong", "retry", 535)]
)
async def test_authentication(password: str, status: str, code: int) -> None:
    server = SmtpServer(
        RecordingHandler(),
        authenticator=_authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    server.start()
    try:
        mailer = Mailer(options(server, username="relay", password=password))
        async with mailer.connection() as conn:
            outcome = await conn.send(digest_message(1))
    finally:
        server.stop()
    assert (outcome.status, outcome.code) == (status, code)
    assert len(server.received) == (1 if status == "sent" else 0)


def _dkim_key() -> tuple[bytes, str]:
    """A fresh RSA key: the PEM private key and the DNS TXT value publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


async def test_messages_are_dkim_signed_and_carry_a_verp_sender(smtp_server: SmtpServer) -> None:
    private, txt = _dkim_key()
    signer = DkimSigner(domain="news.example.org", selector="dw1", private_key=private)
    mailer = Mailer(options(smtp_server, dkim=signer, bounce_domain="bounces.example.org"))
    async with mailer.connection() as conn:
        assert (await conn.send(digest_message(7))).status == "sent"
    received = smtp_server.received[0]
    assert received.mail_from == "bounces+delivery-7@bounces.example.org"
    message = received.message
    signature = str(message["DKIM-Signature"])
    tags = dict(
        part.strip().split("=", 1) for part in "".join(signature.split()).split(";") if part
    )
    assert (tags["d"], tags["s"]) == ("news.example.org", "dw1")
    signed = tags["h"].lower().split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(signed)
    assert "message-id" not in signed

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return txt.encode() if name == b"dw1._domainkey.news.example.org." else None

    assert dkim.verify(received.raw, dnsfunc=dns)
    # A changed List-Unsubscribe breaks the signature: the header is really covered.
    tampered = received.raw.replace(b"/unsubscribe/ttt", b"/unsubscribe/xxx", 1)
    assert tampered != received.raw
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_settings_must_be_complete_and_the_key_valid() -> None:
    private, _ = _dkim_key()
    complete = SmtpSettings(
        dkim_domain="news.example.org", dkim_selector="dw1", dkim_private_key=private.decode()
    )
    assert smtp_options(complete).dkim is not None
    assert smtp_options(SmtpSettings()).dkim is None
    with pytest.raises(ValidationError, match="together"):
        SmtpSettings(dkim_domain="news.example.org")
    with pytest.raises(ValidationError, match="not an unencrypted PEM key"):
        SmtpSettings(
            dkim_domain="news.example.org", dkim_selector="dw1", dkim_private_key="not a key"
        )
