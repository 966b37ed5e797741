"""Sources over HTTP: CRUD, ETag/If-Match, enable/disable, poll now, health, URL checks."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from service.db.models import Source
from service.runtime import Resources
from tests.support.http_server import LocalHTTPServer, Response

pytestmark = pytest.mark.integration

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Pakistan and Russia sign LNG supply deal</title><link>https://news.example/a</link>
<guid>a</guid><pubDate>Sun, 01 Nov 2026 10:00:00 GMT</pubDate>
<description>Islamabad and Moscow agreed on LNG cargoes.</description></item>
</channel></rss>"""


def source_body(url: str, **extra: object) -> dict[str, object]:
    return {"id": "local-feed", "name": "Local feed", "url": url, "tier": "official", **extra}


async def test_source_lifecycle(
    client: httpx.AsyncClient, admin: dict[str, str], editor: dict[str, str]
) -> None:
    created = await client.post(
        "/sources", json=source_body("http://127.0.0.1:9/feed.xml", country="PK"), headers=editor
    )
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"v1"'
    assert created.headers["Location"] == "/sources/local-feed"
    assert created.json()["origin"] == "api"

    duplicate = await client.post(
        "/sources", json=source_body("http://127.0.0.1:9/feed.xml"), headers=editor
    )
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"

    read = await client.get("/sources/local-feed", headers=editor)
    assert read.status_code == 200
    assert read.headers["ETag"] == '"v1"'

    missing_precondition = await client.patch(
        "/sources/local-feed", json={"name": "Renamed"}, headers=editor
    )
    assert missing_precondition.status_code == 428
    stale = await client.patch(
        "/sources/local-feed", json={"name": "Renamed"}, headers={**editor, "If-Match": '"v7"'}
    )
    assert stale.status_code == 412
    assert stale.json()["status"] == 412

    updated = await client.patch(
        "/sources/local-feed",
        json={"name": "Renamed", "interval_minutes": 60, "country": None},
        headers={**editor, "If-Match": '"v1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["ETag"] == '"v2"'
    assert (updated.json()["name"], updated.json()["country"]) == ("Renamed", None)

    null_name = await client.patch(
        "/sources/local-feed", json={"name": None}, headers={**editor, "If-Match": '"v2"'}
    )
    assert null_name.status_code == 422

    disabled = await client.post("/sources/local-feed/disable", headers=editor)
    assert (disabled.status_code, disabled.json()["enabled"]) == (200, False)
    assert disabled.headers["ETag"] == '"v3"'
    stale_toggle = await client.post(
        "/sources/local-feed/enable", headers={**editor, "If-Match": '"v2"'}
    )
    assert stale_toggle.status_code == 412
    enabled = await client.post(
        "/sources/local-feed/enable", headers={**editor, "If-Match": '"v3"'}
    )
    assert (enabled.status_code, enabled.json()["enabled"]) == (200, True)

    health = await client.get("/sources/local-feed/health", headers=editor)
    assert health.status_code == 200
    assert health.json()["health"] == "new"

    listed = await client.get("/sources", params={"tier": "official"}, headers=editor)
    assert [item["id"] for item in listed.json()["items"]] == ["local-feed"]
    assert listed.json()["total"] == 1
    assert (await client.get("/sources", params={"tier": "news"}, headers=editor)).json()[
        "total"
    ] == 0

    deleted_stale = await client.delete(
        "/sources/local-feed", headers={**editor, "If-Match": '"v1"'}
    )
    assert deleted_stale.status_code == 412
    deleted = await client.delete("/sources/local-feed", headers={**editor, "If-Match": '"v4"'})
    assert deleted.status_code == 204
    assert (await client.get("/sources/local-feed", headers=editor)).status_code == 404

    audit = await client.get(
        "/audit", params={"entity_type": "source", "entity_id": "local-feed"}, headers=admin
    )
    actions = [entry["action"] for entry in audit.json()["items"]]
    assert actions == ["delete", "enable", "disable", "update", "create"]
    update = audit.json()["items"][3]
    assert update["actor_name"] == "editor-key"
    assert update["before"]["name"] == "Local feed"
    assert update["after"]["name"] == "Renamed"


async def test_sources_are_sorted_filtered_and_paged(
    client: httpx.AsyncClient, editor: dict[str, str]
) -> None:
    for index, name in enumerate(["Charlie", "alpha", "Bravo", "delta", "Echo"]):
        body = {
            "id": f"s-{index}",
            "name": name,
            "url": f"http://127.0.0.1:9/{index}",
            "kind": "html" if index % 2 else "feed",
            "options": {"item": "article"} if index % 2 else {},
        }
        assert (await client.post("/sources", json=body, headers=editor)).status_code == 201
    first = await client.get("/sources", params={"limit": 2, "sort": "-id"}, headers=editor)
    second = await client.get(
        "/sources", params={"limit": 2, "offset": 2, "sort": "-id"}, headers=editor
    )
    assert [s["id"] for s in first.json()["items"]] == ["s-4", "s-3"]
    assert [s["id"] for s in second.json()["items"]] == ["s-2", "s-1"]
    assert first.json()["total"] == 5
    html = await client.get("/sources", params={"kind": "html"}, headers=editor)
    assert [s["id"] for s in html.json()["items"]] == ["s-1", "s-3"]
    search = await client.get("/sources", params={"q": "ALPHA"}, headers=editor)
    assert [s["id"] for s in search.json()["items"]] == ["s-1"]
    bad_sort = await client.get("/sources", params={"sort": "url"}, headers=editor)
    assert bad_sort.status_code == 422
    assert bad_sort.json()["errors"][0]["loc"] == ["query", "sort"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "ftp://127.0.0.1/feed"),
        ("url", "http://10.0.0.8/feed"),
        ("url", "http://169.254.169.254/latest/meta-data"),
        ("url", "http://user:pw@127.0.0.1/feed"),
        ("id", "Not A Slug"),
        ("country", "pk"),
        ("interval_minutes", 0),
        ("kind", "gopher"),
    ],
)
async def test_invalid_sources_are_refused_with_the_field_path(
    client: httpx.AsyncClient, editor: dict[str, str], field: str, value: object
) -> None:
    body = source_body("http://127.0.0.1:9/feed.xml")
    body[field] = value
    response = await client.post("/sources", json=body, headers=editor)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]


@pytest.mark.parametrize(
    ("kind", "options", "problem"),
    [
        ("html", {}, "item: Field required"),
        ("html", {"item": "div >"}, "item: Value error, invalid CSS selector 'div >'"),
        ("html", {"item": "li", "follow": "yes"}, "follow: Input should be a valid boolean"),
        ("html", {"item": "li", "date_format": "dd-mm-yyyy"}, "date_format: Value error"),
        ("feed", {"item": "li"}, "item: Extra inputs are not permitted"),
        ("feed", {"stale_after_hours": -1}, "stale_after_hours"),
        ("json", {"preset": "gdelt2"}, "preset: Input should be 'gdelt'"),
        ("json", {"items": "data..list"}, "items: String should match pattern"),
    ],
)
async def test_options_are_checked_against_the_kind(
    client: httpx.AsyncClient,
    editor: dict[str, str],
    kind: str,
    options: dict[str, object],
    problem: str,
) -> None:
    body = {**source_body("http://127.0.0.1:9/feed.xml"), "kind": kind, "options": options}
    response = await client.post("/sources", json=body, headers=editor)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [error["loc"] for error in errors] == [["body", "options"]]
    assert problem in errors[0]["msg"]


async def test_changing_the_kind_rechecks_the_options(
    client: httpx.AsyncClient, editor: dict[str, str]
) -> None:
    await client.post("/sources", json=source_body("http://127.0.0.1:9/feed.xml"), headers=editor)
    refused = await client.patch(
        "/sources/local-feed", json={"kind": "html"}, headers={**editor, "If-Match": '"v1"'}
    )
    assert refused.status_code == 422
    assert "item: Field required" in refused.json()["errors"][0]["msg"]
    changed = await client.patch(
        "/sources/local-feed",
        json={"kind": "html", "options": {"item": ".news li", "follow": True}},
        headers={**editor, "If-Match": '"v1"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["options"] == {"item": ".news li", "follow": True}


async def test_poll_now_fetches_stores_and_reports(
    client: httpx.AsyncClient, editor: dict[str, str], admin: dict[str, str]
) -> None:
    with LocalHTTPServer() as server:
        server.route(
            "/feed.xml", Response(body=RSS, headers={"Content-Type": "application/rss+xml"})
        )
        created = await client.post(
            "/sources", json=source_body(server.url("/feed.xml")), headers=editor
        )
        assert created.status_code == 201
        polled = await client.post("/sources/local-feed/poll", headers=editor)
    assert polled.status_code == 200, polled.text
    assert polled.json()["outcome"] == "ok"
    assert polled.json()["new"] == 1
    health = (await client.get("/sources/local-feed/health", headers=editor)).json()
    assert health["health"] == "ok"
    assert health["items_seen"] == 1
    articles = (
        await client.get("/articles", params={"source_id": "local-feed"}, headers=editor)
    ).json()
    assert articles["items"][0]["title"] == "Pakistan and Russia sign LNG supply deal"
    audit = (await client.get("/audit", params={"action": "poll"}, headers=admin)).json()
    assert audit["items"][0]["after"]["new"] == 1
    assert (await client.post("/sources/nope/poll", headers=editor)).status_code == 404


async def test_a_failing_poll_is_a_result_not_an_error(
    client: httpx.AsyncClient, editor: dict[str, str], resources: Resources
) -> None:
    with LocalHTTPServer() as server:
        server.route("/gone", Response(status=503))
        await client.post("/sources", json=source_body(server.url("/gone")), headers=editor)
        polled = await client.post("/sources/local-feed/poll", headers=editor)
    assert polled.status_code == 200
    assert polled.json()["outcome"] == "error"
    health = (await client.get("/sources/local-feed/health", headers=editor)).json()
    assert health["consecutive_failures"] == 1
    assert health["last_http_status"] == 503


@pytest.mark.parametrize(
    "body",
    [{"name": None}, {"url": None}, {"url": "gopher://x.example/"}, {"interval_minutes": None}],
)
async def test_a_partial_update_refuses_null_and_invalid_values(
    client: httpx.AsyncClient, editor: dict[str, str], body: dict[str, object]
) -> None:
    await client.post("/sources", json=source_body("http://127.0.0.1:9/feed.xml"), headers=editor)
    response = await client.patch(
        "/sources/local-feed", json=body, headers={**editor, "If-Match": '"v1"'}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("health", ["new", "ok", "degraded", "failing", "stale"])
async def test_sources_can_be_listed_by_each_health(
    client: httpx.AsyncClient, editor: dict[str, str], resources: Resources, health: str
) -> None:
    await client.post("/sources", json=source_body("http://127.0.0.1:9/feed.xml"), headers=editor)
    async with resources.sessionmaker() as session:
        await session.execute(update(Source).values(health=health))
        await session.commit()
    listed = await client.get("/sources", params={"health": health}, headers=editor)
    assert listed.status_code == 200, listed.text
    assert [item["health"] for item in listed.json()["items"]] == [health]
