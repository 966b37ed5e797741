from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from service.exceptions import SourceParseError
from service.sources.parsers import parser_for
from service.sources.parsers.json import gdelt_url, resolve_path

FEEDS = Path(__file__).parents[2] / "data" / "feeds"
GDELT = {"preset": "gdelt"}


def test_gdelt_url_is_an_encoded_artlist_query() -> None:
    url = gdelt_url(
        '(Pakistan Russia) (oil OR "Pakistan Stream") sourcelang:english', maxrecords=500
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://api.gdeltproject.org/api/v2/doc/doc"
    )
    query = parse_qs(parts.query)
    assert query["query"] == ['(Pakistan Russia) (oil OR "Pakistan Stream") sourcelang:english']
    assert query["mode"] == ["ArtList"]
    assert query["format"] == ["json"]
    assert query["maxrecords"] == ["250"]
    assert query["timespan"] == ["24h"]


def test_gdelt_artlist() -> None:
    document = parser_for("json").parse(
        (FEEDS / "gdelt_artlist.json").read_bytes(),
        url="https://api.gdeltproject.org/api/v2/doc/doc?query=x",
        content_type="application/json; charset=utf-8",
        options=GDELT,
    )
    first, _, third = document.items
    assert first.url == "https://www.thenews.com.pk/print/1198822-pakistan-russia-energy"
    assert first.published == datetime(2024, 6, 14, 7, 15, tzinfo=UTC)
    assert first.language == "en"
    assert third.language == "ru"
    assert third.title == "Россия и Пакистан обсудили поставки нефти"


def test_gdelt_empty_object_means_no_results() -> None:
    document = parser_for("json").parse(
        b"{}", url="https://api.gdeltproject.org/x", content_type="application/json", options=GDELT
    )
    assert document.items == ()


def test_gdelt_html_body_is_an_error() -> None:
    with pytest.raises(SourceParseError, match="HTML"):
        parser_for("json").parse(
            (FEEDS / "gdelt_error.html").read_bytes(),
            url="https://api.gdeltproject.org/x",
            content_type="text/html",
            options=GDELT,
        )


def test_custom_dotted_paths() -> None:
    body = (
        b'{"data": {"results": [{"headline": {"main": "Deal"}, "links": [{"href": "/a/1"}],'
        b' "meta": {"when": "14.06.2024"}, "lede": "Gas deal signed."}, {"other": 1}]}}'
    )
    document = parser_for("json").parse(
        body,
        url="https://api.example.org/v1/news",
        content_type="application/json",
        options={
            "items": "data.results",
            "title": "headline.main",
            "link": "links.0.href",
            "date": "meta.when",
            "date_format": "%d.%m.%Y",
            "summary": "lede",
        },
    )
    assert len(document.items) == 1
    item = document.items[0]
    assert (item.title, item.url, item.summary_html) == (
        "Deal",
        "https://api.example.org/a/1",
        "Gas deal signed.",
    )
    assert item.published == datetime(2024, 6, 14, tzinfo=UTC)


def test_items_path_not_a_list_and_invalid_json() -> None:
    parser = parser_for("json")
    with pytest.raises(SourceParseError, match="not a list"):
        parser.parse(b'{"articles": 3}', url="https://e.org", content_type="", options={})
    with pytest.raises(SourceParseError, match="invalid JSON"):
        parser.parse(b'{"articles": [', url="https://e.org", content_type="", options={})


def test_resolve_path() -> None:
    data = {"a": [{"b": 1}]}
    assert resolve_path(data, "a.0.b") == 1
    assert resolve_path(data, "a.1.b") is None
    assert resolve_path(data, "a.x") is None
