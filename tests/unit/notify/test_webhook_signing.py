from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from service.notify.webhook import (
    classify_response,
    encode_payload,
    generate_secret,
    parse_retry_after,
    retry_delay,
    secret_key,
    should_disable,
    sign,
    signed_headers,
)
from service.settings import DeliverySettings, Settings

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
DEFAULTS = DeliverySettings()
RETRY_SCHEDULE = DEFAULTS.retry_schedule


def default_retry_delay(
    attempt: int, *, retry_after: timedelta | None, rng: random.Random
) -> timedelta | None:
    return retry_delay(
        attempt,
        retry_after=retry_after,
        rng=rng,
        schedule=RETRY_SCHEDULE,
        jitter=DEFAULTS.retry_jitter,
    )


def test_standard_webhooks_test_vector() -> None:
    # Vector from the Standard Webhooks library test suites (delivery standards WH-04).
    assert (
        sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_generated_secret_decodes_to_32_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 32
    assert generate_secret() != secret


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!!", "whsec_YWJj"])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        secret_key(bad)


def test_headers_verify_with_the_library_from_a_non_utc_clock() -> None:
    secret = generate_secret()
    body = encode_payload({"type": "digest.published", "data": {"title": "Пакистан — LNG"}})
    # An aware +05:00 time must give the same integer seconds (finding 2).
    attempt = datetime.now(timezone(timedelta(hours=5)))
    headers = signed_headers(
        msg_id="msg_42", timestamp=int(attempt.timestamp()), body=body, secrets=[secret]
    )
    assert headers["webhook-timestamp"] == str(int(attempt.timestamp()))
    assert Webhook(secret).verify(body, headers) == {
        "type": "digest.published",
        "data": {"title": "Пакистан — LNG"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_rotation_signs_with_every_active_secret() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"type":"match.created"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers(msg_id="msg_1", timestamp=now, body=body, secrets=[new, old])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


@given(st.text(min_size=1, max_size=30))
def test_message_ids_never_carry_dots(msg_id: str) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    if all(c.isascii() and (c.isalnum() or c in "_-") for c in msg_id):
        assert signed_headers(msg_id=msg_id, timestamp=1, body=b"", secrets=[secret])
    else:
        with pytest.raises(ValueError, match="webhook-id"):
            signed_headers(msg_id=msg_id, timestamp=1, body=b"", secrets=[secret])


def test_a_trailing_newline_is_not_a_valid_message_id() -> None:
    with pytest.raises(ValueError, match="webhook-id"):
        signed_headers(
            msg_id="msg_1\n",
            timestamp=1,
            body=b"",
            secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        )


def test_no_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        signed_headers(msg_id="msg_1", timestamp=1, body=b"", secrets=[])


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, "delivered"),
        (204, {}, "delivered"),
        (301, {}, "failed"),
        (302, {}, "failed"),
        (400, {}, "failed"),
        (404, {}, "failed"),
        (410, {}, "disabled"),
        (429, {}, "retry"),
        (500, {}, "retry"),
        (502, {}, "retry"),
        (503, {"webhook-delivery": "abort-message"}, "failed"),
        (500, {"webhook-delivery": "disable"}, "disabled"),
    ],
)
def test_classify_response(status: int, headers: dict[str, str], expected: str) -> None:
    assert classify_response(status, httpx.Headers(headers)) == expected


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", now=NOW) == timedelta(seconds=120)
    assert parse_retry_after("Sun, 01 Nov 2026 12:10:00 GMT", now=NOW) == timedelta(minutes=10)
    assert parse_retry_after("Sun, 01 Nov 2026 11:00:00 GMT", now=NOW) == timedelta(0)
    assert parse_retry_after("999999", now=NOW) == timedelta(hours=24)
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def test_retry_schedule_spans_more_than_a_day() -> None:
    rng = random.Random(7)
    delays = []
    attempt = 1
    while (delay := default_retry_delay(attempt, retry_after=None, rng=rng)) is not None:
        delays.append(delay)
        attempt += 1
    assert len(delays) == len(RETRY_SCHEDULE) == 7
    for delay, base in zip(delays, RETRY_SCHEDULE, strict=True):
        assert base <= delay <= base * 1.2
    assert sum(delays, timedelta()) > timedelta(days=1)
    # Jitter: the same attempt does not always wait the same time.
    assert len({default_retry_delay(3, retry_after=None, rng=rng) for _ in range(5)}) > 1


class _LowestDraw(random.Random):
    """Jitter at the bottom of its range every time: the shortest schedule possible."""

    def uniform(self, a: float, b: float) -> float:
        return min(a, b)


def test_retries_span_more_than_a_day_even_with_the_shortest_jitter() -> None:
    delays = [default_retry_delay(n, retry_after=None, rng=_LowestDraw()) for n in range(1, 8)]
    assert sum((delay for delay in delays if delay is not None), timedelta()) > timedelta(days=1)


def test_retry_after_lengthens_the_delay() -> None:
    rng = random.Random(1)
    assert default_retry_delay(1, retry_after=timedelta(minutes=7), rng=rng) == timedelta(minutes=7)
    delay = default_retry_delay(5, retry_after=timedelta(seconds=1), rng=rng)
    assert delay is not None
    assert delay > timedelta(hours=3)
    with pytest.raises(ValueError, match="attempt"):
        default_retry_delay(0, retry_after=None, rng=rng)


def test_should_disable() -> None:
    assert should_disable(status="disabled", failing_since=None, now=NOW)
    assert not should_disable(status="delivered", failing_since=NOW - timedelta(days=9), now=NOW)
    assert not should_disable(status="retry", failing_since=None, now=NOW)
    assert not should_disable(status="retry", failing_since=NOW - timedelta(days=4), now=NOW)
    assert should_disable(status="retry", failing_since=NOW - timedelta(days=5), now=NOW)
    assert should_disable(status="failed", failing_since=NOW - timedelta(days=6), now=NOW)


def test_the_retry_schedule_is_svix_s_by_default_and_read_from_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DEFAULTS.retry_schedule_seconds == [5, 300, 1800, 7200, 18000, 36000, 36000]
    # config/defaults.toml states the same schedule as the model.
    assert Settings().delivery.retry_schedule_seconds == DEFAULTS.retry_schedule_seconds
    monkeypatch.setenv("DEALWATCH_DELIVERY__RETRY_SCHEDULE_SECONDS", "[60, 3600]")
    monkeypatch.setenv("DEALWATCH_DELIVERY__RETRY_JITTER", "0")
    delivery = Settings().delivery
    assert delivery.retry_schedule == (timedelta(minutes=1), timedelta(hours=1))
    rng = random.Random(3)
    delays = [
        retry_delay(n, retry_after=None, rng=rng, schedule=delivery.retry_schedule, jitter=0.0)
        for n in (1, 2, 3)
    ]
    assert delays == [timedelta(minutes=1), timedelta(hours=1), None]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retry_schedule_seconds", [], "at least 1 item"),
        ("retry_schedule_seconds", [5, 0], "greater than or equal to 1"),
        ("retry_schedule_seconds", [-5], "greater than or equal to 1"),
        ("retry_schedule_seconds", [8 * 86400], "less than or equal to 604800"),
        ("retry_jitter", -0.1, "greater than or equal to 0"),
        ("retry_jitter", 1.5, "less than or equal to 1"),
    ],
)
def test_a_bad_retry_setting_is_refused_with_its_name(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as refused:
        DeliverySettings.model_validate({field: value})
    assert field in str(refused.value)
