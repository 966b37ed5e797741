"""E-mail transport: build RFC 5322 messages and hand them to an SMTP relay with aiosmtplib.

Two traps shape this module (delivery standards §0):

* aiosmtplib's ``send_message()`` re-flattens messages with ``policy.SMTP`` (78 columns), which
  turns a long ``List-Unsubscribe`` into RFC 2047 encoded-words that mail clients ignore. We
  flatten once with a 998-column policy and send the raw bytes.
* aiosmtplib adds neither ``Message-ID`` nor ``Date``; the caller passes a Message-ID that
  stays the same across retries (EM-03) and the date of the attempt.

The SMTP transaction runs as explicit ``MAIL``/``RCPT``/``DATA`` steps so an outcome can say
whether the failure happened after the message was fully transmitted (the ambiguous window of
RFC 5321 §4.5.3.2.6, where a retry may deliver a second copy).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

import aiosmtplib
import dkim
from aiosmtplib.protocol import SMTPProtocol

from alerts.render import RenderedEmail

#: Flattening policy: CRLF line ends, and headers up to RFC 5322's 998-character limit so
#: ``List-Unsubscribe`` stays on one physical line, unencoded (EM-15).
SMTP_POLICY = policy.SMTP.clone(max_line_length=998)

TlsMode = Literal["none", "starttls", "tls"]
SendStatus = Literal["sent", "retry", "permanent"]

# Replies that blame our relay set-up (TLS required, authentication), not the recipient:
# classifying them as permanent would suppress a good address for our own mistake.
_CONFIGURATION_CODES = frozenset({530, 534, 535, 538})


_ID_LEFT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+\Z")


def make_message_id(key: str, *, domain: str) -> str:
    """Return ``<key@domain>``, a Message-ID derived from a delivery key.

    Deriving it from the stored delivery (``delivery-<id>``) rather than generating it per
    attempt keeps it identical across retries (EM-03); pass the sending domain explicitly so
    no internal host name leaks (EM-01).

    Raises:
        ValueError: ``key`` or ``domain`` contains characters a Message-ID cannot carry.
    """
    if not _ID_LEFT.match(key) or not re.match(r"^[A-Za-z0-9.-]+\Z", domain):
        raise ValueError(f"cannot build a Message-ID from {key!r} and {domain!r}")
    return f"<{key}@{domain}>"


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    to: str,
    message_id: str,
    list_id: str | None,
    unsubscribe_url: str | None,
    unsubscribe_mailto: str | None = None,
    date: datetime,
    reply_to: str | None = None,
) -> EmailMessage:
    """Build a ``multipart/alternative`` message (text first, HTML last, EM-02).

    Args:
        rendered: subject and both bodies.
        sender: the ``From`` header, e.g. ``dealwatch <digest@news.example.org>``.
        to: the recipient address.
        message_id: ``<unique@domain>``; reuse the same one on every retry of a delivery.
        list_id: RFC 2919 list id, e.g. ``Daily digest <daily.news.example.org>``; ``None``
            for transactional mail (the confirmation e-mail), which is not list mail.
        unsubscribe_url: HTTPS one-click unsubscribe URL (RFC 8058); ``None`` only for
            transactional mail.
        unsubscribe_mailto: optional ``mailto:`` alternative listed second.
        date: the ``Date`` header (timezone-aware).
        reply_to: optional ``Reply-To``.

    Raises:
        ValueError: a malformed Message-ID or a naive date.
    """
    if not (message_id.startswith("<") and message_id.endswith(">") and "@" in message_id):
        raise ValueError(f"Message-ID must look like <local@domain>: {message_id!r}")
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if reply_to:
        message["Reply-To"] = reply_to
    if list_id:
        message["List-Id"] = list_id
    if unsubscribe_url:
        targets = [f"<{unsubscribe_url}>"]
        if unsubscribe_mailto:
            targets.append(f"<{unsubscribe_mailto}>")
        message["List-Unsubscribe"] = ", ".join(targets)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps the body 7-bit: no dependence on the relay's 8BITMIME support.
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return message


def flatten(message: EmailMessage) -> bytes:
    """Return the wire bytes of ``message`` (CRLF, long header lines kept whole)."""
    return message.as_bytes(policy=SMTP_POLICY)


# Headers a DKIM signature covers. RFC 8058 §4: List-Unsubscribe and List-Unsubscribe-Post
# MUST be covered. Message-ID and Date are left out because relays such as SES rewrite them.
DKIM_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"subject",
    b"mime-version",
    b"content-type",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


@dataclass(frozen=True, slots=True)
class DkimSigner:
    """Signs wire bytes with the PEM private key whose public half is published in DNS at
    ``<selector>._domainkey.<domain>`` (the settings check the key when they are read)."""

    domain: str
    selector: str
    private_key: bytes = field(repr=False)

    def sign(self, raw: bytes) -> bytes:
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line and not line[:1].isspace()
        }
        signature: bytes = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            include_headers=[name for name in DKIM_HEADERS if name in present],
        )
        return signature + raw


def verp_sender(message_id: str, bounce_domain: str) -> str:
    """``bounces+<left part>@bounce_domain`` for ``<left part@domain>`` (EM-05)."""
    left = message_id.strip().strip("<>").split("@", 1)[0]
    return f"bounces+{left}@{bounce_domain}"


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """How to reach the SMTP relay.

    Attributes:
        host: relay host name.
        port: 587 for STARTTLS, 465 for implicit TLS, 25 for ``none`` (tests only).
        tls: exactly one TLS mode; never opportunistic (EM-40).
        username: optional login.
        password: optional password.
        timeout: connect and command timeout in seconds.
        final_timeout: timeout for the reply to the end of DATA; RFC 5321 asks for 10 minutes
            because giving up early there is what produces duplicate deliveries (EM-42).
        pace_seconds: minimum spacing between messages on one connection (EM-43).
        max_messages_per_connection: reconnect after this many messages (EM-41).
        tls_context: custom trust store (tests); ``None`` uses the system defaults.
        bounce_domain: when set, each message's envelope sender is
            ``bounces+<Message-ID left part>@bounce_domain`` (VERP, EM-05), so a bounce names
            the delivery it is about.
        dkim: sign each message before relaying it (EM-16), for relays that do not sign.
    """

    host: str
    port: int
    tls: TlsMode
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 15.0
    final_timeout: float = 600.0
    pace_seconds: float = 0.0
    max_messages_per_connection: int = 100
    bounce_domain: str | None = None
    dkim: DkimSigner | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What happened to one message.

    Attributes:
        status: ``sent``; ``retry`` (4xx, connection or relay set-up problems); ``permanent``
            (5xx about the message or recipient: suppress or fail, do not retry).
        code: the SMTP reply code, when there was one.
        message: the server's reply text (the queue id on success) or the error.
        ambiguous: the failure came after the whole message was transmitted, so the relay
            may have accepted it; a retry (same Message-ID) may deliver a duplicate.
    """

    status: SendStatus
    code: int | None
    message: str
    ambiguous: bool = False


def classify_reply(code: int, message: str) -> SendOutcome:
    """Map an SMTP reply to an outcome: 2xx sent, 4xx retry, 5xx permanent (EM-50).

    Replies about our own relay set-up (530 TLS required, 534/535/538 authentication) are
    ``retry`` even though they are 5xx: they are not the recipient's fault.
    """
    if 200 <= code < 300:
        return SendOutcome("sent", code, message)
    if code in _CONFIGURATION_CODES or code < 500:
        return SendOutcome("retry", code, message)
    return SendOutcome("permanent", code, message)


def _needs_utf8(address: str) -> bool:
    return not address.isascii()


async def _connection_gone(protocol: SMTPProtocol | None) -> None:
    """Return once ``protocol`` has seen its aborted connection end and its socket closed.

    An abort closes the socket in the event loop's next rounds (two with TLS: the socket's
    transport, then the TLS layer above it); a bound keeps a misbehaving transport from
    holding the caller.
    """
    for _ in range(8):
        if protocol is None or protocol.transport is None:
            return
        await asyncio.sleep(0)


class MailerConnection:
    """One SMTP connection reused for a batch; opened lazily, reopened when lost."""

    def __init__(self, options: SmtpOptions) -> None:
        self._options = options
        self._smtp: aiosmtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._last_send: float | None = None
        self.connections_opened = 0

    def _client(self) -> aiosmtplib.SMTP:
        options = self._options
        return aiosmtplib.SMTP(
            hostname=options.host,
            port=options.port,
            username=options.username,
            password=options.password,
            timeout=options.timeout,
            use_tls=options.tls == "tls",
            # False, not None: None means "STARTTLS if offered", a silent plaintext fallback.
            start_tls=options.tls == "starttls",
            tls_context=options.tls_context,
        )

    async def _ensure_connected(self) -> aiosmtplib.SMTP:
        if (
            self._smtp is not None
            and self._smtp.is_connected
            and self._sent_on_connection < self._options.max_messages_per_connection
        ):
            return self._smtp
        await self.close()
        smtp = self._client()
        try:
            await smtp.connect()
        except BaseException:
            # aiosmtplib closes its socket on the failures it expects (no greeting, a refused
            # EHLO), not on every exception: the socket must not outlive a failed connect.
            smtp.close()
            raise
        self._smtp = smtp
        self._sent_on_connection = 0
        self.connections_opened += 1
        return smtp

    async def _pace(self) -> None:
        if self._options.pace_seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._last_send is not None:
            wait = self._last_send + self._options.pace_seconds - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        self._last_send = loop.time()

    async def send(self, message: EmailMessage, *, envelope_from: str | None = None) -> SendOutcome:
        """Send one message and classify the result; never raises for SMTP failures.

        Args:
            message: a message from :func:`build_message`.
            envelope_from: the ``MAIL FROM`` address (a per-delivery VERP address, EM-05);
                defaults to the ``From`` address.
        """
        recipients = [address.addr_spec for address in message["To"].addresses]
        sender = envelope_from or message["From"].addresses[0].addr_spec
        if envelope_from is None and self._options.bounce_domain and message["Message-ID"]:
            sender = verp_sender(str(message["Message-ID"]), self._options.bounce_domain)
        raw = flatten(message)
        if self._options.dkim is not None:
            raw = self._options.dkim.sign(raw)
        await self._pace()
        try:
            smtp = await self._ensure_connected()
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            return classify_reply(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused, TLS failures, STARTTLS missing: nothing was sent.
            await self.close()
            return SendOutcome("retry", None, f"{type(exc).__name__}: {exc}")
        utf8 = _needs_utf8(sender) or any(_needs_utf8(r) for r in recipients)
        options = ["SMTPUTF8"] if utf8 else None
        encoding = "utf-8" if utf8 else "ascii"
        in_data = False
        try:
            await smtp.mail(sender, options=options, encoding=encoding)
            for recipient in recipients:
                await smtp.rcpt(recipient, encoding=encoding)
            in_data = True
            response = await smtp.data(raw, timeout=self._options.final_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            # The server answered, so it did not keep the message: never ambiguous.
            await self._reset_after_error()
            return classify_reply(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            return SendOutcome("retry", None, f"{type(exc).__name__}: {exc}", ambiguous=in_data)
        self._sent_on_connection += 1
        return classify_reply(response.code, response.message)

    async def _reset_after_error(self) -> None:
        if self._smtp is None or not self._smtp.is_connected:
            await self.close()
            return
        try:
            await self._smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self.close()

    async def close(self) -> None:
        """Say ``QUIT`` if still connected, close the socket and forget the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        protocol, transport = smtp.protocol, smtp.transport
        if smtp.is_connected:
            # A relay that fails the QUIT has nothing more to say either: the socket goes anyway.
            with suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
        smtp.close()
        if isinstance(transport, asyncio.WriteTransport):
            # After QUIT nothing more is said: drop the socket now, as smtplib does, instead of
            # a TLS close that waits up to 30 s for the relay's close_notify and leaves the
            # socket open past this call (and past the event loop, when the loop ends next).
            transport.abort()
        await _connection_gone(protocol)


class Mailer:
    """Sends messages through one SMTP relay described by :class:`SmtpOptions`."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[MailerConnection]:
        """Yield a connection reused for every message sent inside the block.

        The connection opens on the first send, so a relay that is down shows up as ``retry``
        outcomes rather than an exception here.
        """
        conn = MailerConnection(self.options)
        try:
            yield conn
        finally:
            await conn.close()
