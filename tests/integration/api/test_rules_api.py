"""Watch rules over HTTP: CRUD, versions, validation, preview and concurrent edits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from service.runtime import Resources
from tests.integration.api.seed import add_article, add_source
from tests.support.app import api_client

pytestmark = pytest.mark.integration

RULE = {
    "id": "pk-ru-energy",
    "name": "Pakistan–Russia energy",
    "query": "Pakistan Russia (oil OR LNG)",
    "tags": ["energy", "pk"],
}


async def test_rule_lifecycle_keeps_versions(
    client: httpx.AsyncClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    created = await client.post("/rules", json=RULE, headers=editor)
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"v1"'
    assert created.json()["tags"] == ["energy", "pk"]

    first = await client.patch(
        "/rules/pk-ru-energy",
        json={"query": "Pakistan Russia LNG"},
        headers={**editor, "If-Match": '"v1"'},
    )
    assert first.status_code == 200, first.text
    second = await client.patch(
        "/rules/pk-ru-energy",
        json={"min_score": 2.5, "enabled": False},
        headers={**editor, "If-Match": first.headers["ETag"]},
    )
    assert second.json()["version"] == 3

    unchanged = await client.patch(
        "/rules/pk-ru-energy",
        json={"min_score": 2.5},
        headers={**editor, "If-Match": second.headers["ETag"]},
    )
    assert unchanged.status_code == 200
    assert unchanged.headers["ETag"] == '"v3"'

    versions = (await client.get("/rules/pk-ru-energy/versions", headers=editor)).json()
    assert versions["total"] == 2
    assert [(v["version"], v["query"]) for v in versions["items"]] == [
        (2, "Pakistan Russia LNG"),
        (1, "Pakistan Russia (oil OR LNG)"),
    ]
    assert versions["items"][0]["created_by"] == "editor-key"

    by_tag = await client.get("/rules", params={"tag": "pk"}, headers=editor)
    assert [rule["id"] for rule in by_tag.json()["items"]] == ["pk-ru-energy"]
    assert (await client.get("/rules", params={"tag": "oil"}, headers=editor)).json()["total"] == 0
    assert (await client.get("/rules", params={"enabled": True}, headers=editor)).json()[
        "total"
    ] == 0

    assert (await client.delete("/rules/pk-ru-energy", headers=editor)).status_code == 428
    deleted = await client.delete("/rules/pk-ru-energy", headers={**editor, "If-Match": '"v3"'})
    assert deleted.status_code == 204
    assert (await client.get("/rules/pk-ru-energy/versions", headers=editor)).status_code == 404

    audit = (await client.get("/audit", params={"entity_type": "rule"}, headers=admin)).json()[
        "items"
    ]
    assert [entry["action"] for entry in audit] == ["delete", "update", "update", "create"]
    assert audit[2]["before"]["query"] == "Pakistan Russia (oil OR LNG)"
    assert audit[2]["after"]["query"] == "Pakistan Russia LNG"
    assert {entry["actor_name"] for entry in audit} == {"editor-key"}


async def test_an_invalid_query_is_refused_with_its_position(
    client: httpx.AsyncClient, editor: dict[str, str]
) -> None:
    response = await client.post(
        "/rules", json={**RULE, "query": "Pakistan (oil OR"}, headers=editor
    )
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["loc"] == ["body", "query"]
    assert error["type"] == "invalid_query"
    assert error["ctx"]["position"] == 16
    assert error["ctx"]["expected"]

    only_negative = await client.post("/rules", json={**RULE, "query": "-cricket"}, headers=editor)
    assert only_negative.status_code == 422


async def test_validate_explains_or_points_at_the_error(
    client: httpx.AsyncClient, viewer: dict[str, str]
) -> None:
    good = await client.post(
        "/rules/validate", json={"query": 'Pakistan "Pakistan Stream" -cricket'}, headers=viewer
    )
    assert good.status_code == 200
    assert good.json()["valid"] is True
    assert "ALL of" in good.json()["explain"]
    assert good.json()["terms"] == ["Pakistan", '"Pakistan Stream"']

    bad = await client.post("/rules/validate", json={"query": "oil AND"}, headers=viewer)
    assert bad.status_code == 200
    body = bad.json()
    assert body["valid"] is False
    assert body["error"]["position"] == 7
    assert body["error"]["caret"].endswith("^")


async def test_preview_counts_matches_per_day_and_samples(
    client: httpx.AsyncClient, viewer: dict[str, str], resources: Resources
) -> None:
    now = resources.clock()
    await add_source(resources, "wire")
    await add_article(
        resources, "wire", "Pakistan LNG tender awarded", published=now - timedelta(days=1)
    )
    await add_article(
        resources,
        "wire",
        "Russia to ship LNG to Pakistan",
        published=now - timedelta(days=1, hours=2),
    )
    await add_article(
        resources, "wire", "Pakistan LNG imports rise", published=now - timedelta(days=3)
    )
    await add_article(resources, "wire", "Cricket: Pakistan win", published=now - timedelta(days=2))
    await add_article(
        resources, "wire", "Old Pakistan LNG story", published=now - timedelta(days=30)
    )
    response = await client.post(
        "/rules/preview", json={"query": "Pakistan LNG", "days": 7, "samples": 2}, headers=viewer
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["scanned"], body["matched"], body["truncated"]) == (4, 3, False)
    counts = {day["date"]: day["count"] for day in body["per_day"] if day["count"]}
    # The clock reads 2026-11-02T00:00Z: the matches fall on three UTC days.
    assert counts == {"2026-11-01": 1, "2026-10-31": 1, "2026-10-30": 1}
    assert len(body["per_day"]) == 8
    assert [s["title"] for s in body["samples"]] == [
        "Pakistan LNG tender awarded",
        "Russia to ship LNG to Pakistan",
    ]
    assert "LNG" in body["samples"][0]["snippet"]
    assert body["samples"][0]["highlights"]

    invalid = await client.post("/rules/preview", json={"query": "LNG NEAR/"}, headers=viewer)
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["loc"] == ["body", "query"]


async def test_a_stale_edit_is_refused(
    client: httpx.AsyncClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    await client.post("/rules", json=RULE, headers=editor)
    alice = await client.get("/rules/pk-ru-energy", headers=editor)
    bob = await client.get("/rules/pk-ru-energy", headers=admin)
    assert alice.headers["ETag"] == bob.headers["ETag"]
    first = await client.patch(
        "/rules/pk-ru-energy",
        json={"name": "Alice's"},
        headers={**editor, "If-Match": alice.headers["ETag"]},
    )
    assert first.status_code == 200
    second = await client.patch(
        "/rules/pk-ru-energy",
        json={"name": "Bob's"},
        headers={**admin, "If-Match": bob.headers["ETag"]},
    )
    assert second.status_code == 412
    assert second.headers["content-type"] == "application/problem+json"
    assert (await client.get("/rules/pk-ru-energy", headers=editor)).json()["name"] == "Alice's"


async def test_simultaneous_edits_let_exactly_one_win(
    resources: Resources, editor: dict[str, str], admin: dict[str, str]
) -> None:
    """Two clients send the same If-Match at the same time: one 200, one 412, one version."""
    async with api_client(resources) as first, api_client(resources) as second:
        await first.post("/rules", json=RULE, headers=editor)
        tag = (await first.get("/rules/pk-ru-energy", headers=editor)).headers["ETag"]
        for round_ in range(5):
            responses = await asyncio.gather(
                first.patch(
                    "/rules/pk-ru-energy",
                    json={"description": f"first {round_}"},
                    headers={**editor, "If-Match": tag},
                ),
                second.patch(
                    "/rules/pk-ru-energy",
                    json={"description": f"second {round_}"},
                    headers={**admin, "If-Match": tag},
                ),
            )
            codes = sorted(response.status_code for response in responses)
            assert codes == [200, 412], [response.text for response in responses]
            winner = next(response for response in responses if response.status_code == 200)
            tag = winner.headers["ETag"]
        versions = (await first.get("/rules/pk-ru-energy/versions", headers=editor)).json()
        assert versions["total"] == 5
