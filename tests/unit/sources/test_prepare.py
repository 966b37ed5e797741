"""Two-step normalisation (prepare, then complete) against the one-step form it replaces."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.normalise import detect_language, language_sample
from service.jobs.poll import load_gazetteer, normalise_item, prepare_item
from service.sources.parsers import ParsedItem, parser_for

FEEDS = Path(__file__).parents[2] / "data" / "feeds"
FETCHED = datetime(2024, 6, 14, 15, 0, tzinfo=UTC)
GAZETTEER = load_gazetteer()


def _items(name: str) -> list[ParsedItem]:
    body = (FEEDS / name).read_bytes()
    document = parser_for("feed").parse(
        body, url="https://x.example/", content_type="application/xml", options={}
    )
    return list(document.items)


@pytest.mark.parametrize(
    "name",
    [
        "app_wordpress_rss.xml",
        "dawn_business_rss.xml",
        "tass_rss_v2.xml",
        "kremlin_en_atom.xml",
        "government_ru_rss.xml",
        "google_news_rss.xml",
    ],
)
def test_completed_item_equals_the_one_step_enrichment(name: str) -> None:
    items = _items(name)
    assert items
    enriched = 0
    for item in items:
        for page_text in (None, "Pakistan  and\tRussia\n signed an LNG deal."):
            prepared = prepare_item(item, fetched_at=FETCHED, page_text=page_text)
            assert prepared is not None
            data = prepared.complete(GAZETTEER)
            title = data.title if item.title else ""
            found = GAZETTEER.find(f"{title}\n{data.summary}\n{data.text}")
            assert data.countries == tuple(sorted(found.countries))
            assert data.entities == tuple(sorted(found.entities))
            sample = language_sample(title, data.summary or data.text)
            assert data.language == (detect_language(sample) or None)
            one_step = normalise_item(
                item, fetched_at=FETCHED, gazetteer=GAZETTEER, page_text=page_text
            )
            assert one_step == data
            enriched += bool(data.countries or data.entities)
    assert enriched


def test_declared_language_is_not_detected() -> None:
    (item, *_) = _items("tass_rss_v2.xml")
    prepared = prepare_item(item, fetched_at=FETCHED, default_language="en-US")
    assert prepared is not None
    assert prepared.language_sample is None
    assert prepared.complete(None).language == "en"
