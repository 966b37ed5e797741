"""Signing secrets encrypted at rest: round trip, key rotation, legacy rows, wrong keys."""

from __future__ import annotations

import pytest

from service.notify.webhook import generate_secret
from service.secretbox import SecretBox, SecretBoxError

OLD = b"old-master-secret-" + b"o" * 32
NEW = b"new-master-secret-" + b"n" * 32


def test_a_sealed_secret_opens_and_does_not_show() -> None:
    box = SecretBox(NEW)
    secret = generate_secret()
    sealed = box.seal(secret)
    assert secret not in str(sealed)
    assert secret.removeprefix("whsec_") not in str(sealed)
    assert box.open(sealed) == secret
    # A fresh IV each time: equal secrets do not give equal ciphertexts.
    assert box.seal(secret)["ciphertext"] != sealed["ciphertext"]
    assert sealed["key_id"] == SecretBox(NEW).key_id != SecretBox(OLD).key_id


def test_a_rotated_master_key_still_opens_old_entries_and_reseals_them() -> None:
    secret = generate_secret()
    entry = {**SecretBox(OLD).seal(secret), "created_at": "2026-11-01T00:00:00+00:00"}
    rotated = SecretBox(NEW, [OLD])
    assert not rotated.is_current(entry)
    assert rotated.open(entry) == secret
    resealed = rotated.reseal(entry)
    assert rotated.is_current(resealed)
    assert resealed["created_at"] == entry["created_at"]
    assert SecretBox(NEW).open(resealed) == secret


def test_an_entry_under_an_unknown_key_is_a_clear_error() -> None:
    entry = SecretBox(OLD).seal(generate_secret())
    with pytest.raises(SecretBoxError, match=entry["key_id"]):
        SecretBox(NEW).open(entry)
    corrupt = {**entry, "ciphertext": entry["ciphertext"][:-4] + "AAAA"}
    with pytest.raises(SecretBoxError, match="corrupt"):
        SecretBox(OLD).open(corrupt)


def test_a_plaintext_entry_from_before_encryption_is_read_and_resealed() -> None:
    secret = generate_secret()
    legacy = {"secret": secret, "created_at": "2026-11-01T00:00:00+00:00", "expires_at": None}
    box = SecretBox(NEW)
    assert box.open(legacy) == secret
    assert not box.is_current(legacy)
    resealed = box.reseal(legacy)
    assert "secret" not in resealed
    assert box.open(resealed) == secret
    assert resealed["expires_at"] is None
