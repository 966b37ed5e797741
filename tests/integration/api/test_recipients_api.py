"""Subscribers, webhook endpoints, subscriptions, deliveries, API keys and the audit log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from service.runtime import Resources
from tests.integration.api.seed import add_delivery
from tests.support.clock import FakeClock

pytestmark = pytest.mark.integration


async def _subscriber(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    response = await client.post(
        "/subscribers", json={"email": "Analyst@Example.org", "name": "Analyst"}, headers=admin
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _rule(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    body = {"id": "lng", "name": "LNG", "query": "LNG", "tags": ["energy"]}
    assert (await client.post("/rules", json=body, headers=admin)).status_code == 201


async def test_subscriber_lifecycle(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    subscriber_id = await _subscriber(client, admin)
    read = await client.get(f"/subscribers/{subscriber_id}", headers=admin)
    assert read.json()["email"] == "analyst@example.org"
    assert read.json()["status"] == "pending"
    again = await client.post("/subscribers", json={"email": "analyst@example.org"}, headers=admin)
    assert again.status_code == 409
    invalid = await client.post("/subscribers", json={"email": "not-an-address"}, headers=admin)
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["loc"] == ["body", "email"]

    activated = await client.patch(
        f"/subscribers/{subscriber_id}",
        json={"status": "active"},
        headers={**admin, "If-Match": read.headers["ETag"]},
    )
    assert activated.status_code == 200
    assert activated.json()["confirmed_at"] is not None
    listed = await client.get("/subscribers", params={"status": "active"}, headers=admin)
    assert [s["id"] for s in listed.json()["items"]] == [subscriber_id]
    assert (await client.get("/subscribers", params={"q": "nobody"}, headers=admin)).json()[
        "total"
    ] == 0

    deleted = await client.delete(
        f"/subscribers/{subscriber_id}", headers={**admin, "If-Match": '"v2"'}
    )
    assert deleted.status_code == 204
    assert (await client.get(f"/subscribers/{subscriber_id}", headers=admin)).status_code == 404


async def test_endpoint_secret_is_shown_once_and_rotates_with_overlap(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources, clock: FakeClock
) -> None:
    created = await client.post(
        "/endpoints",
        json={"name": "Desk", "url": "http://127.0.0.1:9/hook"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert created.headers["Cache-Control"] == "no-store"
    endpoint_id = created.json()["id"]
    read = await client.get(f"/endpoints/{endpoint_id}", headers=admin)
    assert "secret" not in read.json()
    assert secret not in read.text
    assert secret not in (await client.get("/endpoints", headers=admin)).text

    assert (
        await client.post(f"/endpoints/{endpoint_id}/rotate-secret", json={}, headers=admin)
    ).status_code == 428
    rotated = await client.post(
        f"/endpoints/{endpoint_id}/rotate-secret",
        json={"overlap_hours": 24},
        headers={**admin, "If-Match": read.headers["ETag"]},
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    dates = rotated.json()["endpoint"]["secrets"]
    assert dates[0]["expires_at"] is None
    expires = datetime.fromisoformat(dates[1]["expires_at"])
    assert expires == clock.now + timedelta(hours=24)

    async with resources.sessionmaker() as session:
        stored = (
            await session.execute(
                text("SELECT secrets FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
            )
        ).scalar_one()
    # Encrypted at rest: neither secret is in the row, both open with the process's key.
    assert "whsec_" not in str(stored)
    entries = stored if isinstance(stored, list) else json.loads(stored)
    assert [resources.secret_box.open(entry) for entry in entries] == [new_secret, secret]

    clock.advance(hours=1)
    twice = await client.post(
        f"/endpoints/{endpoint_id}/rotate-secret",
        json={},
        headers={**admin, "If-Match": rotated.headers["ETag"]},
    )
    # At most two secrets sign: the first one is retired at once, the second overlaps.
    assert [s["expires_at"] is None for s in twice.json()["endpoint"]["secrets"]] == [True, False]
    async with resources.sessionmaker() as session:
        stored = (
            await session.execute(
                text("SELECT secrets FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
            )
        ).scalar_one()
    assert secret not in str(stored)

    again = await client.post(
        f"/endpoints/{endpoint_id}/rotate-secret",
        json={"overlap_hours": 0},
        headers={**admin, "If-Match": twice.headers["ETag"]},
    )
    # A leak: the zero overlap drops both older secrets at once.
    assert len(again.json()["endpoint"]["secrets"]) == 1

    audit = (await client.get("/audit", params={"entity_type": "endpoint"}, headers=admin)).json()[
        "items"
    ]
    assert [entry["action"] for entry in audit] == [
        "rotate_secret",
        "rotate_secret",
        "rotate_secret",
        "create",
    ]
    for entry in audit:
        assert "whsec_" not in str(entry)

    unsafe = await client.patch(
        f"/endpoints/{endpoint_id}",
        json={"url": "http://192.168.1.10/hook"},
        headers={**admin, "If-Match": again.headers["ETag"]},
    )
    assert unsafe.status_code == 422
    assert unsafe.json()["errors"][0]["loc"] == ["body", "url"]
    disabled = await client.patch(
        f"/endpoints/{endpoint_id}",
        json={"enabled": False},
        headers={**admin, "If-Match": again.headers["ETag"]},
    )
    assert disabled.json()["disabled_reason"] == "disabled by an admin"
    assert (
        await client.delete(
            f"/endpoints/{endpoint_id}", headers={**admin, "If-Match": disabled.headers["ETag"]}
        )
    ).status_code == 204


async def test_subscriptions_validate_their_schedule(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await _rule(client, admin)
    subscriber_id = await _subscriber(client, admin)
    base = {"subscriber_id": subscriber_id, "rule_ids": ["lng"]}
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"timezone": "../etc/passwd"}, ["body", "timezone"]),
        ({"send_time": "24:00"}, ["body", "send_time"]),
        ({"send_time": "8:00"}, ["body", "send_time"]),
        ({"cadence": "monthly"}, ["body", "cadence"]),
        ({"cadence": "weekly"}, ["body"]),
        ({"cadence": "weekly", "weekday": 7}, ["body", "weekday"]),
        ({"rule_ids": ["unknown-rule"]}, ["body", "rule_ids"]),
        ({"endpoint_id": 5}, ["body"]),
    ]
    for change, loc in cases:
        response = await client.post("/subscriptions", json={**base, **change}, headers=admin)
        assert response.status_code == 422, (change, response.text)
        assert loc in [error["loc"] for error in response.json()["errors"]], change

    created = await client.post(
        "/subscriptions",
        json={
            **base,
            "cadence": "weekly",
            "weekday": 0,
            "send_time": "09:30",
            "timezone": "Asia/Karachi",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    read = await client.get(f"/subscriptions/{body['id']}", headers=admin)
    assert read.json() == body
    assert read.headers["ETag"] == created.headers["ETag"] == '"v1"'
    # Monday 09:30 in Karachi (UTC+5) after 2026-11-02T00:00Z (a Monday) is 04:30Z that day.
    assert body["next_due_at"].startswith("2026-11-02T04:30:00")

    changed = await client.patch(
        f"/subscriptions/{body['id']}",
        json={"cadence": "daily", "weekday": None, "send_time": "23:00"},
        headers={**admin, "If-Match": created.headers["ETag"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["next_due_at"].startswith("2026-11-02T18:00:00")
    no_weekday = await client.patch(
        f"/subscriptions/{body['id']}",
        json={"cadence": "weekly"},
        headers={**admin, "If-Match": changed.headers["ETag"]},
    )
    assert no_weekday.status_code == 422
    listed = await client.get("/subscriptions", params={"rule_id": "lng"}, headers=admin)
    assert listed.json()["total"] == 1
    assert (await client.get("/subscriptions", params={"cadence": "hourly"}, headers=admin)).json()[
        "total"
    ] == 0
    missing_subscriber = await client.post(
        "/subscriptions", json={**base, "subscriber_id": 999}, headers=admin
    )
    assert missing_subscriber.status_code == 422
    assert (
        await client.delete(
            f"/subscriptions/{body['id']}", headers={**admin, "If-Match": changed.headers["ETag"]}
        )
    ).status_code == 204


async def test_deliveries_list_and_retry(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    await _rule(client, admin)
    subscriber_id = await _subscriber(client, admin)
    subscription = await client.post(
        "/subscriptions",
        json={"subscriber_id": subscriber_id, "rule_tags": ["energy"]},
        headers=admin,
    )
    subscription_id = subscription.json()["id"]
    failed = await add_delivery(resources, subscription_id, status="failed", key="p1")
    delivered = await add_delivery(resources, subscription_id, status="delivered", key="p2")

    listed = await client.get("/deliveries", params={"status": "failed"}, headers=admin)
    assert [d["id"] for d in listed.json()["items"]] == [failed]
    detail = await client.get(f"/deliveries/{failed}", headers=admin)
    assert detail.json()["attempt_log"][0]["code"] == 550

    retried = await client.post(f"/deliveries/{failed}/retry", headers=admin)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    assert retried.json()["last_error"] is None
    assert (await client.post(f"/deliveries/{delivered}/retry", headers=admin)).status_code == 409
    assert (await client.post("/deliveries/999999/retry", headers=admin)).status_code == 404
    audit = (await client.get("/audit", params={"action": "retry"}, headers=admin)).json()
    assert audit["items"][0]["before"]["status"] == "failed"


async def test_keys_are_shown_once_stored_hashed_and_revocable(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    created = await client.post("/keys", json={"name": "ci", "role": "viewer"}, headers=admin)
    assert created.status_code == 201, created.text
    plain = created.json()["key"]
    key_id = created.json()["id"]
    async with resources.sessionmaker() as session:
        stored = (await session.execute(text("SELECT * FROM api_keys"))).all()
    assert plain not in str(stored)

    as_new = {"Authorization": f"Bearer {plain}"}
    assert (await client.get("/rules", headers=as_new)).status_code == 200
    listed = (await client.get("/keys", headers=admin)).json()
    new = next(item for item in listed["items"] if item["id"] == key_id)
    assert new["last_used_at"] is not None
    assert "key" not in new
    assert plain not in str(listed)

    revoked = await client.post(f"/keys/{key_id}/revoke", headers=admin)
    assert revoked.json()["revoked_at"] is not None
    assert (await client.get("/rules", headers=as_new)).status_code == 401
    assert (await client.get("/keys", params={"revoked": True}, headers=admin)).json()["total"] == 1
    assert (await client.post("/keys/999999/revoke", headers=admin)).status_code == 404
    bad_role = await client.post("/keys", json={"name": "x", "role": "root"}, headers=admin)
    assert bad_role.status_code == 422

    audit = (await client.get("/audit", params={"entity_type": "api_key"}, headers=admin)).json()[
        "items"
    ]
    assert [entry["action"] for entry in audit] == ["revoke", "create"]
    assert audit[0]["actor_name"] == "admin-key"
    assert audit[0]["actor_key_id"] is not None
    assert plain not in str(audit)


async def test_audit_filters(
    client: httpx.AsyncClient, admin: dict[str, str], editor: dict[str, str], clock: FakeClock
) -> None:
    await client.post("/rules", json={"id": "a", "name": "A", "query": "oil"}, headers=editor)
    clock.advance(hours=2)
    await client.post("/rules", json={"id": "b", "name": "B", "query": "gas"}, headers=admin)
    everything = (await client.get("/audit", headers=admin)).json()
    assert [entry["entity_id"] for entry in everything["items"]] == ["b", "a"]
    editor_id = everything["items"][1]["actor_key_id"]
    by_actor = await client.get("/audit", params={"actor_key_id": editor_id}, headers=admin)
    assert [entry["entity_id"] for entry in by_actor.json()["items"]] == ["a"]
    since = (clock.now - timedelta(hours=1)).isoformat()
    recent = await client.get("/audit", params={"since": since}, headers=admin)
    assert [entry["entity_id"] for entry in recent.json()["items"]] == ["b"]
    naive = await client.get("/audit", params={"since": "2026-11-01T00:00:00"}, headers=admin)
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["loc"] == ["query", "since"]


async def test_deleting_a_followed_rule_is_refused_unless_detached(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await _rule(client, admin)
    other = {"id": "oil", "name": "Oil", "query": "oil"}
    assert (await client.post("/rules", json=other, headers=admin)).status_code == 201
    subscriber_id = await _subscriber(client, admin)
    only_lng = await client.post(
        "/subscriptions", json={"subscriber_id": subscriber_id, "rule_ids": ["lng"]}, headers=admin
    )
    both = await client.post(
        "/subscriptions",
        json={"subscriber_id": subscriber_id, "rule_ids": ["lng", "oil"]},
        headers=admin,
    )
    by_tag = await client.post(
        "/subscriptions",
        json={"subscriber_id": subscriber_id, "rule_ids": ["lng"], "rule_tags": ["energy"]},
        headers=admin,
    )
    ids = [response.json()["id"] for response in (only_lng, both, by_tag)]
    rule = await client.get("/rules/lng", headers=admin)
    if_match = {**admin, "If-Match": rule.headers["ETag"]}

    refused = await client.delete("/rules/lng", headers=if_match)
    assert refused.status_code == 409
    assert f"ids {ids[0]}, {ids[1]}, {ids[2]}" in refused.json()["detail"]
    assert (await client.get("/rules/lng", headers=admin)).status_code == 200

    deleted = await client.delete("/rules/lng", params={"detach": "true"}, headers=if_match)
    assert deleted.status_code == 204
    after = [(await client.get(f"/subscriptions/{i}", headers=admin)).json() for i in ids]
    assert [(s["rule_ids"], s["rule_tags"], s["enabled"]) for s in after] == [
        ([], [], False),
        (["oil"], [], True),
        ([], ["energy"], True),
    ]
    assert [s["version"] for s in after] == [2, 2, 2]
    audit = await client.get("/audit", params={"entity_type": "subscription"}, headers=admin)
    updates = [entry for entry in audit.json()["items"] if entry["action"] == "update"]
    assert sorted(int(entry["entity_id"]) for entry in updates) == sorted(ids)
