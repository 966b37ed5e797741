"""The subscriber pages in headless Chromium: forms, buttons and POSTs as a person uses them."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from alerts.rulefile import RuleDefinition
from service.api.app import create_app
from service.catalogue import sync_rules
from service.db.models import Subscriber, Subscription
from service.notify.tokens import make_token
from service.runtime import Resources
from service.settings import Settings, SmtpSettings
from tests.support.asgi_server import serve_app
from tests.support.smtp_server import SmtpServer
from tests.support.worker_process import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RULES = [
    RuleDefinition(id="pk-ru-energy", name="Pakistan–Russia energy", description="", query="LNG"),
    RuleDefinition(id="pipelines", name="Pipelines", description="", query="pipeline"),
]


@pytest.fixture
def browser_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={"smtp": SmtpSettings(host="127.0.0.1", port=smtp_server.port, tls="none")}
    )


@pytest.fixture
def base_url(browser_settings: Settings, resources: Resources) -> Iterator[str]:
    # ``resources`` empties the database first; the served app opens its own resources.
    with serve_app(create_app(browser_settings)) as url:
        yield url


@pytest.fixture
async def page(base_url: str) -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = await browser.new_context(base_url=base_url)
        yield await context.new_page()
        await browser.close()


async def test_subscriber_pages_in_a_browser(
    page: Any, resources: Resources, browser_settings: Settings, smtp_server: SmtpServer
) -> None:
    async with resources.sessionmaker() as session:
        await sync_rules(session, RULES, now=datetime.now(UTC))
        await session.commit()

    await page.goto("/subscribe")
    await page.get_by_label("E-mail address").fill("reader@example.org")
    await page.get_by_label("Pakistan–Russia energy").check()
    await page.get_by_label("How often").select_option("daily")
    await page.get_by_label("Send time").fill("07:30")
    await page.get_by_label("Time zone", exact=True).fill("Asia/Karachi")
    await page.get_by_role("button", name="Subscribe").click()
    await page.wait_for_selector("text=Check your inbox")

    # The confirmation e-mail is sent after the response, as a background task.
    await wait_for(lambda: smtp_server.received, within=20, what="the confirmation e-mail")
    body = smtp_server.received[0].message.get_body(("plain",))
    assert body is not None
    found = re.search(r"http://dealwatch\.test(/confirm/\S+)", body.get_content())
    assert found is not None
    await page.goto(found.group(1))
    await page.get_by_role("button", name="Confirm my subscription").click()
    await page.wait_for_selector("text=Subscription confirmed")

    async with resources.sessionmaker() as session:
        subscriber = (await session.execute(select(Subscriber))).scalar_one()
        sub = (await session.execute(select(Subscription))).scalar_one()
    assert subscriber.status == "active"
    assert (sub.enabled, sub.send_time, sub.timezone) == (True, "07:30", "Asia/Karachi")

    secret = browser_settings.secret_key
    assert secret is not None
    key = secret.get_secret_value().encode()
    preferences = make_token(key, purpose="preferences", subject=str(sub.id), expires_at=None)
    await page.goto(f"/p/{preferences}")
    await page.get_by_label("Pipelines").check()
    await page.get_by_label("How often").select_option("weekly")
    await page.get_by_label("Day (weekly digests)").select_option("Friday")
    await page.get_by_role("button", name="Save preferences").click()
    await page.wait_for_selector("text=Preferences saved")
    async with resources.sessionmaker() as session:
        sub = (await session.execute(select(Subscription))).scalar_one()
    assert (sub.cadence, sub.weekday, sorted(sub.rule_ids)) == (
        "weekly",
        4,
        ["pipelines", "pk-ru-energy"],
    )

    await page.get_by_role("link", name="Back to your preferences").click()
    await page.get_by_role("link", name="Unsubscribe").click()
    await page.get_by_role("button", name="Unsubscribe").click()
    await page.wait_for_selector("text=You will receive no more e-mails")
    async with resources.sessionmaker() as session:
        subscriber = (await session.execute(select(Subscriber))).scalar_one()
    assert subscriber.status == "unsubscribed"
