"""Tokens carried by subscriber links.

Two kinds:

* **Signed tokens** (unsubscribe, preferences, confirm pages): HMAC-SHA256 over the subject,
  the expiry and the purpose, with a secret the caller passes in. Nothing is stored; a token
  for one purpose never verifies for another, and comparison is constant-time.
* **Single-use tokens** (double opt-in): random, 256 bits; the caller stores only their hash
  and deletes it once used (EM-31, SEC-10).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Literal

from service.exceptions import ServiceError

Purpose = Literal["confirm", "unsubscribe", "preferences"]
PURPOSES: tuple[Purpose, ...] = ("confirm", "unsubscribe", "preferences")
# 128 bits of MAC: unforgeable in practice and keeps unsubscribe URLs short (EM-15).
_MAC_BYTES = 16
_MIN_SECRET_BYTES = 32


class InvalidTokenError(ServiceError, ValueError):
    """A link token is malformed, forged, expired or meant for another purpose.

    The message is deliberately the same for every cause, so responses do not tell an
    attacker which part was wrong (EM-13).
    """

    default_message = "invalid or expired link"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: Purpose, payload: bytes) -> bytes:
    if len(secret) < _MIN_SECRET_BYTES:
        raise ValueError(f"token secret must be at least {_MIN_SECRET_BYTES} bytes")
    message = purpose.encode("ascii") + b"\x00" + payload
    return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(
    secret: bytes, *, purpose: Purpose, subject: str, expires_at: datetime | None
) -> str:
    """Return a URL-safe signed token binding ``subject`` to ``purpose`` until ``expires_at``.

    Args:
        secret: at least 32 random bytes, kept server-side.
        purpose: what the link may do.
        subject: what it applies to (for example a subscription id); may not contain NUL.
        expires_at: expiry (timezone-aware), or ``None`` for links that must keep working
            in old e-mails (unsubscribe).

    Raises:
        ValueError: a short secret, a NUL in ``subject`` or a naive ``expires_at``.
    """
    if "\x00" in subject:
        raise ValueError("token subject may not contain NUL")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    expiry = 0 if expires_at is None else int(expires_at.timestamp())
    payload = subject.encode("utf-8") + b"\x00" + str(expiry).encode("ascii")
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify_token(secret: bytes, token: str, *, purpose: Purpose, now: datetime) -> str:
    """Return the subject of a valid token.

    Raises:
        InvalidTokenError: malformed, wrong signature or purpose, or expired at ``now``.
    """
    try:
        encoded_payload, encoded_mac = token.split(".")
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (ValueError, binascii.Error) as exc:
        raise InvalidTokenError from exc
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        raise InvalidTokenError
    try:
        subject_bytes, expiry_bytes = payload.rsplit(b"\x00", 1)
        subject, expiry = subject_bytes.decode("utf-8"), int(expiry_bytes)
    except ValueError as exc:
        raise InvalidTokenError from exc
    if expiry and now.astimezone(UTC).timestamp() >= expiry:
        raise InvalidTokenError
    return subject


def new_single_use_token() -> tuple[str, str]:
    """Return ``(token, token_hash)``: send the token, store only the hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """Return the stored form of a single-use token (SHA-256, hex).

    A fast hash is enough: the token has 256 bits of entropy, so there is nothing to brute
    force (SEC-10).
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented single-use token with a stored hash in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)


# The public routes that take a subscription's never-expiring token (see service.api.public).
_LINK_PATHS: dict[Purpose, str] = {"unsubscribe": "u", "preferences": "p"}


def subscription_link(
    secret: bytes,
    purpose: Literal["unsubscribe", "preferences"],
    subscription_id: int,
    *,
    base_url: str = "",
) -> str:
    """The link that unsubscribes or opens the preferences of a subscription.

    Its token never expires, so links in old e-mails keep working.

    Args:
        secret: the token secret (see ``make_token``).
        purpose: which page the link opens.
        subscription_id: the subscription it applies to.
        base_url: the public origin without a trailing slash; empty for a site-relative link.
    """
    token = make_token(secret, purpose=purpose, subject=str(subscription_id), expires_at=None)
    return f"{base_url}/{_LINK_PATHS[purpose]}/{token}"
