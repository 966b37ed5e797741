"""Articles, stories and matches over HTTP: search and filters."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from service.runtime import Resources
from tests.integration.api.seed import add_article, add_match, add_source, add_story

pytestmark = pytest.mark.integration


@pytest.fixture
async def seeded(
    resources: Resources, editor: dict[str, str], client: httpx.AsyncClient
) -> dict[str, int]:
    now = resources.clock()
    for rule_id in ("lng", "oil"):
        body = {"id": rule_id, "name": rule_id, "query": rule_id}
        assert (await client.post("/rules", json=body, headers=editor)).status_code == 201
    await add_source(resources, "mofa", tier="official")
    await add_source(resources, "wire", tier="news")
    story = await add_story(resources, "LNG deal", seen=now - timedelta(hours=5))
    ids = {
        "official": await add_article(
            resources,
            "mofa",
            "LNG deal signed",
            published=now - timedelta(hours=5),
            countries=("PK", "RU"),
            story_id=story,
        ),
        "news": await add_article(
            resources,
            "wire",
            "LNG deal reported",
            published=now - timedelta(hours=4),
            countries=("PK",),
            story_id=story,
        ),
        "old": await add_article(
            resources, "wire", "Oil prices", published=now - timedelta(days=10), countries=("US",)
        ),
        "story": story,
    }
    await add_match(resources, ids["official"], "lng", at=now - timedelta(hours=5))
    await add_match(resources, ids["news"], "lng", at=now - timedelta(hours=4), score=3.0)
    await add_match(resources, ids["old"], "oil", at=now - timedelta(days=10))
    return ids


async def _ids(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str | int
) -> list[int]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_article_filters(
    client: httpx.AsyncClient, viewer: dict[str, str], seeded: dict[str, int], resources: Resources
) -> None:
    official, news, old = seeded["official"], seeded["news"], seeded["old"]
    assert await _ids(client, "/articles", viewer) == [news, official, old]
    assert await _ids(client, "/articles", viewer, rule_id="lng") == [news, official]
    assert await _ids(client, "/articles", viewer, source_id="wire") == [news, old]
    assert await _ids(client, "/articles", viewer, tier="official") == [official]
    assert await _ids(client, "/articles", viewer, country="RU") == [official]
    assert await _ids(client, "/articles", viewer, country="PK") == [news, official]
    since = (resources.clock() - timedelta(days=1)).isoformat()
    assert await _ids(client, "/articles", viewer, since=since) == [news, official]
    assert await _ids(client, "/articles", viewer, until=since) == [old]
    assert await _ids(client, "/articles", viewer, q="prices") == [old]
    assert await _ids(client, "/articles", viewer, story_id=seeded["story"]) == [news, official]
    assert await _ids(client, "/articles", viewer, limit=1, offset=1) == [official]
    one = await client.get(f"/articles/{official}", headers=viewer)
    assert one.json()["countries"] == ["PK", "RU"]
    assert (await client.get("/articles/999999", headers=viewer)).status_code == 404
    bad_country = await client.get("/articles", params={"country": "pk%"}, headers=viewer)
    assert bad_country.status_code == 422


async def test_stories_and_matches(
    client: httpx.AsyncClient, viewer: dict[str, str], seeded: dict[str, int]
) -> None:
    story = seeded["story"]
    assert await _ids(client, "/stories", viewer) == [story]
    assert await _ids(client, "/stories", viewer, rule_id="oil") == []
    assert await _ids(client, "/stories", viewer, country="RU") == [story]
    detail = (await client.get(f"/stories/{story}", headers=viewer)).json()
    assert [a["id"] for a in detail["articles"]] == [seeded["official"], seeded["news"]]
    assert (await client.get("/stories/999999", headers=viewer)).status_code == 404

    matches = (await client.get("/matches", params={"rule_id": "lng"}, headers=viewer)).json()
    assert [m["article_id"] for m in matches["items"]] == [seeded["news"], seeded["official"]]
    assert matches["items"][0]["score"] == 3.0
    assert matches["items"][0]["title"] == "LNG deal reported"
    by_source = (await client.get("/matches", params={"source_id": "mofa"}, headers=viewer)).json()
    assert [m["article_id"] for m in by_source["items"]] == [seeded["official"]]
