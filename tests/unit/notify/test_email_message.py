from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from alerts.render import RenderedEmail
from service.notify.email import build_message, classify_reply, flatten, make_message_id

LONG_UNSUB = "https://dealwatch.example.org/unsubscribe/" + "A" * 120
RENDERED = RenderedEmail(
    subject="[dealwatch] Пакистан: 2 new stories",
    text="Hello\nUnsubscribe: x\n",
    html="<p>Hello</p>",
)


def message(**overrides: Any) -> EmailMessage:
    arguments: dict[str, Any] = {
        "sender": "dealwatch <digest@news.example.org>",
        "to": "reader@example.com",
        "message_id": "<d-1.2026-11-01@news.example.org>",
        "list_id": "Daily digest <daily.news.example.org>",
        "unsubscribe_url": LONG_UNSUB,
        "unsubscribe_mailto": "mailto:unsubscribe@news.example.org?subject=d-1",
        "date": datetime(2026, 11, 1, 4, tzinfo=UTC),
    }
    arguments.update(overrides)
    return build_message(RENDERED, **arguments)


def test_structure_and_headers() -> None:
    raw = flatten(message())
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Subject"] == RENDERED.subject
    assert parsed["Message-ID"] == "<d-1.2026-11-01@news.example.org>"
    assert parsed["Date"] == "Sun, 01 Nov 2026 04:00:00 +0000"
    assert parsed["List-Id"] == "Daily digest <daily.news.example.org>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == RENDERED.text


def test_list_unsubscribe_stays_on_one_physical_line() -> None:
    raw = flatten(message())
    expected = (
        f"List-Unsubscribe: <{LONG_UNSUB}>, <mailto:unsubscribe@news.example.org?subject=d-1>\r\n"
    ).encode()
    assert expected in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"Subject:")[0]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()


def test_date_keeps_the_given_offset() -> None:
    local = datetime(2026, 11, 1, 9, tzinfo=timezone(timedelta(hours=5)))
    assert message(date=local)["Date"] == "Sun, 01 Nov 2026 09:00:00 +0500"


def test_invalid_message_id_or_date() -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        message(message_id="d-1@news.example.org")
    with pytest.raises(ValueError, match="timezone-aware"):
        message(date=datetime(2026, 11, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (250, "sent"),
        (421, "retry"),
        (451, "retry"),
        (454, "retry"),
        (530, "retry"),
        (535, "retry"),
        (550, "permanent"),
        (552, "permanent"),
        (554, "permanent"),
    ],
)
def test_classify_reply(code: int, status: str) -> None:
    assert classify_reply(code, "text").status == status


def test_make_message_id() -> None:
    assert make_message_id("delivery-42", domain="news.example.org") == (
        "<delivery-42@news.example.org>"
    )
    with pytest.raises(ValueError, match="Message-ID"):
        make_message_id("a b", domain="news.example.org")
    with pytest.raises(ValueError, match="Message-ID"):
        make_message_id("a", domain="news example")
    # "$" would accept a trailing newline: a header injection.
    with pytest.raises(ValueError, match="Message-ID"):
        make_message_id("a\n", domain="news.example.org")
    with pytest.raises(ValueError, match="Message-ID"):
        make_message_id("a", domain="news.example.org\n")
