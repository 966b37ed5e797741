"""The subscriber's whole life through the public pages, with a real SMTP server and database."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from alerts.rulefile import RuleDefinition
from service.catalogue import sync_rules
from service.db.models import Delivery, Subscriber, Subscription
from service.jobs.confirmations import resend_due_confirmations
from service.jobs.digests import run_due_deliveries
from service.runtime import Resources, open_resources
from service.settings import Settings, SmtpSettings
from service.storage.lifecycle import Consent, Preferences, request_subscription
from tests.support.app import api_client
from tests.support.clock import FakeClock
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.integration

RULE = RuleDefinition(
    id="pk-ru-energy", name="Pakistan–Russia energy", description="", query="Pakistan Russia LNG"
)
FORM = {
    "email": "Reader@Example.org",
    "rule_ids": "pk-ru-energy",
    "cadence": "daily",
    "send_time": "08:00",
    "timezone": "Asia/Karachi",
    "heartbeat": "1",
}


@pytest.fixture
def public_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={"smtp": SmtpSettings(host="127.0.0.1", port=smtp_server.port, tls="none")}
    )


@pytest.fixture
async def res(
    public_settings: Settings, resources: Resources, clock: FakeClock
) -> AsyncIterator[Resources]:
    # ``resources`` empties the database; these resources talk to the test's SMTP server.
    clock.set(datetime(2026, 11, 2, 1, 0, tzinfo=UTC))  # 06:00 in Karachi
    async with open_resources(public_settings, clock=clock) as opened:
        async with opened.sessionmaker() as session:
            await sync_rules(session, [RULE], now=clock())
            await session.commit()
        yield opened


@pytest.fixture
async def client(res: Resources) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(res) as opened:
        yield opened


def link(text: str, prefix: str) -> str:
    found = re.search(re.escape(prefix) + r"[A-Za-z0-9_.\-]+", text)
    assert found, f"no {prefix} link in {text!r}"
    return found.group(0).removeprefix("http://dealwatch.test")


def plain(server: SmtpServer, index: int) -> str:
    body = server.received[index].message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def subscriber(res: Resources) -> Subscriber:
    async with res.sessionmaker() as session:
        return (await session.execute(select(Subscriber))).scalar_one()


async def subscriber_by_email(res: Resources, email: str) -> Subscriber:
    async with res.sessionmaker() as session:
        return (
            await session.execute(select(Subscriber).where(Subscriber.email == email))
        ).scalar_one()


async def subscription(res: Resources) -> Subscription:
    async with res.sessionmaker() as session:
        return (await session.execute(select(Subscription))).scalar_one()


async def test_sign_up_confirm_receive_change_and_leave(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    page = await client.get("/subscribe")
    assert page.status_code == 200
    assert 'value="pk-ru-energy"' in page.text

    response = await client.post("/subscribe", data=FORM, headers={"user-agent": "pytest"})
    assert response.status_code == 202
    assert "confirmation e-mail" in response.text
    pending = await subscriber(res)
    assert (pending.email, pending.status) == ("reader@example.org", "pending")
    assert (pending.consent_ip, pending.consent_user_agent) == ("127.0.0.1", "pytest")
    assert pending.confirm_token_hash is not None
    assert not (await subscription(res)).enabled

    # The confirmation e-mail: transactional, not list mail.
    assert len(smtp_server.received) == 1
    confirmation = smtp_server.received[0].message
    assert confirmation["To"] == "reader@example.org"
    assert confirmation["List-Unsubscribe"] is None
    confirm_url = link(plain(smtp_server, 0), "http://dealwatch.test/confirm/")
    assert link(plain(smtp_server, 0), "http://dealwatch.test/confirm/").split("/")[-1] not in (
        pending.confirm_token_hash
    )

    # A link scanner's GET does not confirm.
    shown = await client.get(confirm_url)
    assert shown.status_code == 200
    assert '<form method="post"' in shown.text
    assert (await subscriber(res)).status == "pending"

    confirmed = await client.post(confirm_url)
    assert confirmed.status_code == 200
    active = await subscriber(res)
    assert active.status == "active"
    assert active.confirm_token_hash is None
    sub = await subscription(res)
    assert sub.enabled
    assert sub.next_due_at == datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # 08:00 in Karachi
    # Single use.
    assert (await client.post(confirm_url)).status_code == 404

    # The digest at 08:00 local (a "nothing new" heartbeat, as the form asked).
    clock.set(datetime(2026, 11, 2, 3, 0, tzinfo=UTC))
    report = await run_due_deliveries(res)
    assert report.delivered == 1
    digest = smtp_server.received[1]
    message = digest.message
    assert "nothing new" in message["Subject"]
    header = message["List-Unsubscribe"]
    assert header.startswith("<http://dealwatch.test/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = header.strip("<>").removeprefix("http://dealwatch.test")
    preferences_url = link(plain(smtp_server, 1), "http://dealwatch.test/p/")
    assert f"Unsubscribe: http://dealwatch.test{unsubscribe_url}" in plain(smtp_server, 1)

    # Preferences through the signed link.
    form = await client.get(preferences_url)
    assert form.status_code == 200
    assert "reader@example.org" in form.text
    invalid = await client.post(preferences_url, data={**FORM, "cadence": "weekly", "weekday": ""})
    assert invalid.status_code == 422
    assert "day of the week" in invalid.text
    saved = await client.post(
        preferences_url,
        data={**FORM, "cadence": "weekly", "weekday": "0", "timezone": "Europe/Berlin"},
    )
    assert saved.status_code == 200
    sub = await subscription(res)
    assert (sub.cadence, sub.weekday, sub.timezone) == ("weekly", 0, "Europe/Berlin")
    assert sub.next_due_at == datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # this Monday 08:00 CET

    # Leaving: a GET shows a button, the one-click POST unsubscribes, twice is fine.
    shown = await client.get(unsubscribe_url)
    assert shown.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in shown.text
    assert (await subscriber(res)).status == "active"
    left = await client.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200
    assert "location" not in left.headers
    assert "set-cookie" not in left.headers
    assert (await subscriber(res)).status == "unsubscribed"
    assert not (await subscription(res)).enabled
    again = await client.post(unsubscribe_url, files={"List-Unsubscribe": (None, "One-Click")})
    assert again.status_code == 200

    # Nothing more is planned or sent.
    clock.set(datetime(2026, 11, 9, 7, 0, tzinfo=UTC))
    report = await run_due_deliveries(res)
    assert (report.planned, report.delivered) == (0, 0)
    assert len(smtp_server.received) == 2


async def test_unsubscribe_requires_the_one_click_body(
    res: Resources, client: httpx.AsyncClient
) -> None:
    from service.notify.tokens import make_token

    token = make_token(res.secret_key, purpose="unsubscribe", subject="1", expires_at=None)
    assert (await client.post(f"/u/{token}", data={})).status_code == 400
    # A token for another purpose, a forged one and garbage get the same 404.
    other = make_token(res.secret_key, purpose="preferences", subject="1", expires_at=None)
    for bad in (other, token[:-2] + "xx", "garbage"):
        response = await client.post(f"/u/{bad}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 404
        assert (await client.get(f"/u/{bad}")).status_code == 404


async def test_confirmation_expires(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    await client.post("/subscribe", data=FORM)
    confirm_url = link(plain(smtp_server, 0), "http://dealwatch.test/confirm/")
    clock.advance(hours=72)
    assert (await client.get(confirm_url)).status_code == 404
    assert (await client.post(confirm_url)).status_code == 404
    assert (await subscriber(res)).status == "pending"


async def test_same_answer_for_known_addresses_and_a_per_address_limit(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    answers = []
    for _ in range(4):
        response = await client.post("/subscribe", data=FORM)
        answers.append((response.status_code, response.text))
        clock.advance(minutes=1)
    assert len(set(answers)) == 1
    # Three confirmation e-mails per address per day, however often the form is sent.
    assert len(smtp_server.received) == 3
    clock.advance(hours=24)
    await client.post("/subscribe", data=FORM)
    assert len(smtp_server.received) == 4
    # The last link is the valid one.
    assert (
        await client.post(link(plain(smtp_server, 0), "http://dealwatch.test/confirm/"))
    ).status_code == 404
    assert (
        await client.post(link(plain(smtp_server, 3), "http://dealwatch.test/confirm/"))
    ).status_code == 200
    # An active subscriber gets no new confirmation, and the same answer.
    response = await client.post("/subscribe", data=FORM)
    assert (response.status_code, response.text) == answers[0]
    assert len(smtp_server.received) == 4


async def test_sign_up_is_rate_limited_per_client(
    res: Resources, client: httpx.AsyncClient
) -> None:
    statuses = []
    for number in range(7):
        response = await client.post("/subscribe", data={**FORM, "email": f"r{number}@example.org"})
        statuses.append(response.status_code)
    assert statuses == [202] * 5 + [429] * 2
    assert int(response.headers["retry-after"]) > 0
    async with res.sessionmaker() as session:
        assert (
            await session.execute(select(func.count()).select_from(Subscriber))
        ).scalar_one() == 5


async def test_json_sign_up_and_validation(
    res: Resources, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    accepted = await client.post(
        "/subscribe",
        json={"email": "api@example.org", "rule_ids": ["pk-ru-energy"], "cadence": "hourly"},
    )
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "accepted"
    for body, field in [
        ({"email": "not-an-address", "rule_ids": ["pk-ru-energy"]}, "email"),
        ({"email": "a@example.org", "rule_ids": ["nope"]}, "rule_ids"),
        (
            {"email": "a@example.org", "rule_ids": ["pk-ru-energy"], "timezone": "Mars/Base"},
            "timezone",
        ),
        (
            {"email": "a@example.org", "rule_ids": ["pk-ru-energy"], "send_time": "25:00"},
            "send_time",
        ),
    ]:
        response = await client.post("/subscribe", json=body)
        assert response.status_code == 422
        assert response.json()["field"] == field
    clock.advance(minutes=10)  # invalid attempts count against the per-client limit too
    broken = await client.post(
        "/subscribe", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    html = await client.post("/subscribe", data={**FORM, "email": "bad"})
    assert html.status_code == 422
    assert "valid e-mail" in html.text


async def test_unsubscribe_cancels_queued_deliveries(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    await client.post("/subscribe", data=FORM)
    await client.post(link(plain(smtp_server, 0), "http://dealwatch.test/confirm/"))
    sub = await subscription(res)
    async with res.sessionmaker() as session:
        session.add(
            Delivery(
                subscription_id=sub.id,
                channel="email",
                event_type="digest.published",
                period_key="2026-11-01",
                status="retry_wait",
                next_attempt_at=clock(),
                message_id="msg_test",
                created_at=clock(),
            )
        )
        await session.commit()
    from service.notify.tokens import make_token

    token = make_token(res.secret_key, purpose="unsubscribe", subject=str(sub.id), expires_at=None)
    await client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    async with res.sessionmaker() as session:
        statuses = (await session.execute(select(Delivery.status))).scalars().all()
    assert statuses == ["cancelled"]


async def test_the_sign_up_limit_is_a_setting(res: Resources) -> None:
    api = res.settings.api.model_copy(update={"signup_limit": 2, "signup_window_minutes": 60})
    settings = res.settings.model_copy(update={"api": api})
    statuses = []
    async with api_client(dataclasses.replace(res, settings=settings)) as client:
        for number in range(3):
            response = await client.post(
                "/subscribe", data={**FORM, "email": f"s{number}@example.org"}
            )
            statuses.append(response.status_code)
    assert statuses == [202, 202, 429]
    # The window is an hour: the wait reported is most of it, not the default ten minutes.
    assert int(response.headers["retry-after"]) > 3000


async def test_a_confirmation_the_relay_could_not_take_is_sent_again(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    smtp_server.stop()
    assert (await client.post("/subscribe", data=FORM)).status_code == 202
    waiting = await subscriber(res)
    assert (waiting.status, waiting.confirm_attempts) == ("pending", 1)
    assert waiting.confirm_retry_at == clock.now + timedelta(minutes=1)
    assert "delayed" in (waiting.status_reason or "")
    assert await resend_due_confirmations(res) == []

    smtp_server.start()
    clock.advance(minutes=1)
    assert await resend_due_confirmations(res) == ["done"]
    assert await resend_due_confirmations(res) == []
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0].message
    assert f"confirm-{waiting.id}-" in str(message["Message-ID"])
    confirmed = await client.post(link(plain(smtp_server, 0), "http://dealwatch.test/confirm/"))
    assert confirmed.status_code == 200
    active = await subscriber(res)
    assert (active.status, active.status_reason, active.confirm_token_sealed) == (
        "active",
        None,
        None,
    )


async def test_a_sign_up_whose_process_died_before_sending_is_sent_by_a_worker(
    res: Resources, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    async with res.sessionmaker() as session:
        await request_subscription(
            session,
            email="reader@example.org",
            prefs=Preferences(rule_ids=("pk-ru-energy",)),
            consent=Consent(ip="127.0.0.1", user_agent=None, source="form"),
            box=res.secret_box,
            now=clock(),
        )
        await session.commit()
    clock.advance(minutes=4)
    assert await resend_due_confirmations(res) == []
    clock.advance(minutes=1)
    assert await resend_due_confirmations(res) == ["done"]
    assert smtp_server.received[0].rcpt_tos == ["reader@example.org"]


async def test_a_refused_address_is_bounced_and_a_dead_relay_is_given_up(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    smtp_server.handler.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
    await client.post("/subscribe", data={**FORM, "email": "nobody@example.org"})
    bounced = await subscriber_by_email(res, "nobody@example.org")
    assert (bounced.status, bounced.confirm_retry_at) == ("bounced", None)
    assert "550" in (bounced.status_reason or "")

    smtp_server.stop()
    await client.post("/subscribe", data=FORM)
    results = []
    for _ in range(10):
        due = (await subscriber_by_email(res, "reader@example.org")).confirm_retry_at
        if due is None:
            break
        clock.set(due)
        results += await resend_due_confirmations(res)
    assert results == ["retrying"] * 6 + ["given_up"]
    gave_up = await subscriber_by_email(res, "reader@example.org")
    assert (gave_up.status, gave_up.confirm_retry_at, gave_up.confirm_attempts) == (
        "pending",
        None,
        8,
    )
    assert "not delivered" in (gave_up.status_reason or "")


async def test_retries_stop_when_the_link_would_have_expired(
    res: Resources, client: httpx.AsyncClient, smtp_server: SmtpServer, clock: FakeClock
) -> None:
    smtp_server.stop()
    await client.post("/subscribe", data=FORM)
    results = []
    for _ in range(4):
        clock.advance(hours=25)
        results += await resend_due_confirmations(res)
    # Tries at 25 h and 50 h; at 75 h the link has expired, so nothing is sent any more.
    assert results == ["retrying", "retrying", "given_up"]
    gave_up = await subscriber_by_email(res, "reader@example.org")
    assert (gave_up.confirm_attempts, gave_up.status_reason) == (
        4,
        "confirmation e-mail not delivered: the link expired",
    )
