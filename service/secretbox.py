"""Webhook signing secrets encrypted at rest (delivery standard SEC-07).

A signing secret must be readable to sign with, so it cannot be hashed like an API key. Each
one is stored as a Fernet token (AES-128-CBC with HMAC-SHA256) under a key derived from the
process secret (``DEALWATCH_SECRET_KEY``), with the id of that key next to it. Keys listed in
``previous_secret_keys`` still decrypt, so the master secret can be rotated: set the new one,
list the old one, run ``dealwatch init`` (which re-encrypts every entry under the new key), then
drop the old one.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.exceptions import ServiceError

__all__ = ["SecretBox", "SecretBoxError"]

# Changing this would make every stored secret undecryptable: it names the purpose, so the
# same master secret never yields the same key for two uses.
_INFO = b"dealwatch webhook signing secrets v1"


class SecretBoxError(ServiceError):
    """A stored secret cannot be decrypted with any configured key."""

    default_message = "a stored secret cannot be decrypted with the configured keys"


def _derive(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master)


class SecretBox:
    """Seals and opens secret entries: ``{"ciphertext", "key_id", ...}`` dicts.

    Args:
        current: the master secret that encrypts new entries.
        previous: older master secrets, only to decrypt entries not yet re-encrypted.
    """

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        self._fernets: dict[str, Fernet] = {}
        for master in (current, *previous):
            key = _derive(master)
            self._fernets.setdefault(
                hashlib.sha256(key).hexdigest()[:12], Fernet(base64.urlsafe_b64encode(key))
            )
        self.key_id = next(iter(self._fernets))
        # Signing a batch of deliveries to one endpoint opens the same token many times; a
        # decryption costs tens of microseconds, a cache hit almost nothing.
        self._open_token = lru_cache(maxsize=4096)(self._decrypt)

    def seal(self, secret: str) -> dict[str, str]:
        """Encrypt ``secret`` under the current key."""
        token = self._fernets[self.key_id].encrypt(secret.encode())
        return {"ciphertext": token.decode("ascii"), "key_id": self.key_id}

    def open(self, entry: Mapping[str, Any]) -> str:
        """Return the plaintext secret of a stored entry.

        Entries written before encryption (``{"secret": ...}``) are read as they are until
        ``dealwatch init`` re-seals them.

        Raises:
            SecretBoxError: the entry's key is not configured or the token is corrupt.
        """
        if "ciphertext" not in entry:
            return str(entry["secret"])
        return self._open_token(str(entry.get("key_id", "")), str(entry["ciphertext"]))

    def is_current(self, entry: Mapping[str, Any]) -> bool:
        """Whether ``entry`` is already encrypted under the current key."""
        return "ciphertext" in entry and entry.get("key_id") == self.key_id

    def reseal(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``entry`` with its secret encrypted under the current key (dates kept)."""
        rest = {k: v for k, v in entry.items() if k not in {"secret", "ciphertext", "key_id"}}
        return {**self.seal(self.open(entry)), **rest}

    def _decrypt(self, key_id: str, ciphertext: str) -> str:
        fernet = self._fernets.get(key_id)
        if fernet is None:
            raise SecretBoxError(
                f"secret encrypted with key {key_id!r}, which is neither DEALWATCH_SECRET_KEY "
                "nor one of DEALWATCH_PREVIOUS_SECRET_KEYS"
            )
        try:
            return fernet.decrypt(ciphertext.encode("ascii")).decode()
        except InvalidToken as exc:
            raise SecretBoxError(f"corrupt secret encrypted with key {key_id!r}") from exc
