from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from service.notify.tokens import (
    InvalidTokenError,
    hash_token,
    make_token,
    new_single_use_token,
    subscription_link,
    token_matches,
    verify_token,
)

SECRET = b"k" * 32
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_round_trip() -> None:
    token = make_token(
        SECRET, purpose="preferences", subject="sub-42", expires_at=NOW + timedelta(days=30)
    )
    assert verify_token(SECRET, token, purpose="preferences", now=NOW) == "sub-42"
    assert all(c.isalnum() or c in "-_." for c in token)


def test_unsubscribe_tokens_without_expiry_stay_valid_and_short() -> None:
    token = make_token(SECRET, purpose="unsubscribe", subject="123456", expires_at=None)
    assert (
        verify_token(SECRET, token, purpose="unsubscribe", now=NOW + timedelta(days=3650))
        == "123456"
    )
    # Keeps https://news.example.org/u/<token> near the 74-character guideline.
    assert len(token) <= 40


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "x" + t,
        lambda t: t.replace(".", ""),
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "!!!.???",
    ],
)
def test_tampered_tokens_are_refused(mutate) -> None:
    token = make_token(SECRET, purpose="unsubscribe", subject="7", expires_at=None)
    with pytest.raises(InvalidTokenError):
        verify_token(SECRET, mutate(token), purpose="unsubscribe", now=NOW)


def test_purpose_secret_and_expiry_are_bound() -> None:
    token = make_token(SECRET, purpose="confirm", subject="7", expires_at=NOW + timedelta(hours=72))
    with pytest.raises(InvalidTokenError):
        verify_token(SECRET, token, purpose="unsubscribe", now=NOW)
    with pytest.raises(InvalidTokenError):
        verify_token(b"o" * 32, token, purpose="confirm", now=NOW)
    with pytest.raises(InvalidTokenError):
        verify_token(SECRET, token, purpose="confirm", now=NOW + timedelta(hours=72))
    assert verify_token(SECRET, token, purpose="confirm", now=NOW + timedelta(hours=71)) == "7"


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        make_token(b"short", purpose="confirm", subject="1", expires_at=None)
    with pytest.raises(ValueError, match="NUL"):
        make_token(SECRET, purpose="confirm", subject="a\x00b", expires_at=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_token(SECRET, purpose="confirm", subject="a", expires_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_single_use_tokens_store_only_a_hash() -> None:
    token, stored = new_single_use_token()
    assert token not in stored
    assert stored == hash_token(token)
    assert len(stored) == 64
    assert token_matches(token, stored)
    assert not token_matches(token + "x", stored)
    assert new_single_use_token()[0] != token


@pytest.mark.parametrize(("purpose", "path"), [("unsubscribe", "/u/"), ("preferences", "/p/")])
def test_subscription_link_opens_its_page_with_a_lasting_token(
    purpose: Literal["unsubscribe", "preferences"], path: str
) -> None:
    link = subscription_link(SECRET, purpose, 42, base_url="https://dealwatch.example")
    prefix = f"https://dealwatch.example{path}"
    assert link.startswith(prefix)
    token = link.removeprefix(prefix)
    far_future = NOW + timedelta(days=3650)
    assert verify_token(SECRET, token, purpose=purpose, now=far_future) == "42"
    assert subscription_link(SECRET, purpose, 42) == f"{path}{token}"
