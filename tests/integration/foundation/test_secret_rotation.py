"""`dealwatch init` re-encrypts signing secrets after a key rotation; old links still work."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from service.commands import initialise
from service.db.models import WebhookEndpoint
from service.notify.tokens import make_token
from service.notify.webhook import generate_secret
from service.runtime import Resources, open_resources
from service.secretbox import SecretBox
from service.settings import Settings
from service.storage.subscriptions import create_subscriber, create_subscription
from tests.support.app import api_client

pytestmark = pytest.mark.integration


async def test_init_reencrypts_secrets_under_the_new_key(
    settings: Settings, resources: Resources
) -> None:
    old_key = resources.secret_key
    legacy_secret, sealed_secret = generate_secret(), generate_secret()
    now = resources.clock()
    async with resources.sessionmaker() as session:
        session.add_all(
            [
                WebhookEndpoint(
                    name="legacy",
                    url="https://hooks.example.org/a",
                    secrets=[{"secret": legacy_secret, "created_at": now.isoformat()}],
                    created_at=now,
                    updated_at=now,
                ),
                WebhookEndpoint(
                    name="old-key",
                    url="https://hooks.example.org/b",
                    secrets=[{**resources.secret_box.seal(sealed_secret), "expires_at": None}],
                    created_at=now,
                    updated_at=now,
                ),
            ]
        )
        await session.commit()

    rotated = settings.model_copy(
        update={
            "secret_key": SecretStr("a-brand-new-master-key-" + "z" * 32),
            "previous_secret_keys": [SecretStr(old_key.decode())],
        }
    )
    report = await initialise(rotated)
    assert report.resealed_endpoints == 2
    assert (await initialise(rotated)).resealed_endpoints == 0

    only_new = SecretBox(b"a-brand-new-master-key-" + b"z" * 32)
    async with resources.sessionmaker() as session:
        rows = (await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))).all()
        entries = [row.secrets[0] for row in rows]
        versions = [row.version for row in rows]
    assert [only_new.open(entry) for entry in entries] == [legacy_secret, sealed_secret]
    assert all(only_new.is_current(entry) for entry in entries)
    assert versions == [1, 1]
    assert entries[1]["expires_at"] is None


async def test_links_signed_with_the_previous_key_still_open(
    settings: Settings, resources: Resources
) -> None:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        subscriber = await create_subscriber(
            session, email="reader@example.org", status="active", now=now
        )
        subscription = await create_subscription(
            session, subscriber_id=subscriber.id, rule_tags=["energy"], now=now
        )
        await session.commit()
    token = make_token(
        resources.secret_key, purpose="preferences", subject=str(subscription.id), expires_at=None
    )
    rotated = settings.model_copy(
        update={
            "secret_key": SecretStr("a-brand-new-master-key-" + "z" * 32),
            "previous_secret_keys": [SecretStr(resources.secret_key.decode())],
        }
    )
    forgotten = settings.model_copy(
        update={"secret_key": SecretStr("a-brand-new-master-key-" + "z" * 32)}
    )
    async with open_resources(rotated) as opened, api_client(opened) as client:
        assert (await client.get(f"/p/{token}")).status_code == 200
    async with open_resources(forgotten) as opened, api_client(opened) as client:
        assert (await client.get(f"/p/{token}")).status_code == 404
