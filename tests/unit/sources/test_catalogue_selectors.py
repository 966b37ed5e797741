"""The HTML and JSON entries of config/sources.toml work on the recorded pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.catalogue import parse_sources_toml
from service.sources.parsers import parser_for

ROOT = Path(__file__).parents[3]
FEEDS = ROOT / "tests" / "data" / "feeds"
CATALOGUE = {
    s.id: s for s in parse_sources_toml((ROOT / "config" / "sources.toml").read_text("utf-8"))
}
RECORDED = {
    "mofa-pk-press": ("mofa_press_releases.html", 3),
    "petroleum-division-pk": ("petroleum_division.html", 3),
    "ogra-prices": ("ogra_notified_prices.html", 3),
    "opec-press": ("opec_press_releases.html", 2),
    "sco-news": ("sco_news.html", 2),
    "gdelt-pk-ru-energy": ("gdelt_artlist.json", 3),
}


def test_every_non_feed_source_has_a_recorded_page() -> None:
    assert {s.id for s in CATALOGUE.values() if s.kind != "feed"} == set(RECORDED)


@pytest.mark.parametrize("source_id", sorted(RECORDED))
def test_selectors_yield_dated_linked_items(source_id: str) -> None:
    definition = CATALOGUE[source_id]
    fixture, count = RECORDED[source_id]
    document = parser_for(definition.kind).parse(
        (FEEDS / fixture).read_bytes(),
        url=definition.url,
        content_type="text/html" if definition.kind == "html" else "application/json",
        options=definition.options,
    )
    assert len(document.items) == count
    for item in document.items:
        assert item.title
        assert item.url
        assert item.url.startswith("https://")
        assert item.published is not None
