"""Bounce and complaint reports as relays send them (RFC 3464 DSN, RFC 5965 ARF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.bounces import parse_bounce, verp_token

DATA = Path(__file__).parents[2] / "data" / "bounces"


@pytest.mark.parametrize(
    ("name", "kind", "recipient", "status", "token"),
    [
        ("postfix-hard.eml", "hard", "reader@example.com", "5.1.1", "msg_42"),
        ("postfix-soft.eml", "soft", "reader@example.com", "4.2.2", "msg_42"),
        ("postfix-delayed.eml", None, "reader@example.com", "4.4.1", "msg_42"),
        ("arf-complaint.eml", "complaint", "analyst@example.org", "", "msg_43"),
        ("auto-reply.eml", None, "", "", "msg_44"),
    ],
)
def test_reports_are_read(
    name: str, kind: str | None, recipient: str, status: str, token: str
) -> None:
    report = parse_bounce((DATA / name).read_bytes())
    assert (report.kind, report.recipient, report.status, report.token) == (
        kind,
        recipient,
        status,
        token,
    )


def test_the_quoted_message_and_the_diagnostic_are_kept() -> None:
    report = parse_bounce((DATA / "postfix-hard.eml").read_bytes())
    assert report.message_id == "<msg_42@dealwatch.example.org>"
    assert report.detail == (
        "smtp; 550 5.1.1 <reader@example.com>: Recipient address rejected: User unknown"
    )


def test_without_a_verp_address_the_token_comes_from_the_quoted_message_id() -> None:
    raw = (DATA / "postfix-hard.eml").read_bytes()
    plain = raw.replace(b"bounces+msg_42@bounces.", b"postmaster@")
    report = parse_bounce(plain)
    assert (report.kind, report.token) == ("hard", "msg_42")


def test_garbage_is_no_report() -> None:
    report = parse_bounce(b"\x00\xffnot an e-mail at all")
    assert report.kind is None


@pytest.mark.parametrize(
    ("address", "token"),
    [
        ("bounces+msg_7@b.example.org", "msg_7"),
        ("<BOUNCES+confirm-3-abcdef@b.example.org>", "confirm-3-abcdef"),
        ("reader@example.org", ""),
    ],
)
def test_verp_tokens(address: str, token: str) -> None:
    assert verp_token(address) == token
