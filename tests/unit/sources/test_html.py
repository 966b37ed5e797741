from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.exceptions import SourceParseError
from service.sources.parsers import ParsedDocument, parser_for
from service.sources.parsers.html import extract_main_text

FEEDS = Path(__file__).parents[2] / "data" / "feeds"

# The selectors config/sources.toml uses for the official listing pages.
MOFA = {
    "item": "article.elementor-post",
    "title": ".elementor-post__title a",
    "link": ".elementor-post__title a",
    "date": ".elementor-post-date",
    "summary": ".elementor-post__excerpt",
    "date_format": "%B %d, %Y",
}
PETROLEUM = {
    "item": ".news-list .news-item",
    "title": "h4 a",
    "link": "h4 a",
    "date": "p.date",
    "summary": "p.summary",
    "date_format": "%d-%m-%Y",
}
OGRA = {
    "item": "table#prices tbody tr",
    "title": "td:nth-child(2)",
    "link": "td a",
    "date": "td:nth-child(3)",
    "date_format": "%d-%b-%Y",
}
OPEC = {
    "item": ".pressreleases .pr-item",
    "title": "a.pr-link",
    "link": "a.pr-link",
    "date": ".pr-date",
    "summary": "p",
}
SCO = {"item": ".news__list .news__item", "title": ".news__title", "link": "a", "date": "time"}


def parse(name: str, url: str, options: dict[str, Any], ctype: str = "text/html") -> ParsedDocument:
    content = (FEEDS / name).read_bytes()
    return parser_for("html").parse(content, url=url, content_type=ctype, options=options)


def test_mofa_listing() -> None:
    document = parse("mofa_press_releases.html", "https://mofa.gov.pk/press-releases/", MOFA)
    assert len(document.items) == 3
    first, second, _ = document.items
    assert first.title.startswith("Deputy Prime Minister and Foreign Minister meets Russian")
    assert first.published == datetime(2024, 6, 12, tzinfo=UTC)
    assert "Energy cooperation" in first.summary_html
    assert second.url == "https://mofa.gov.pk/press-releases/pakistan-and-turkmenistan-review-tapi"
    assert second.guid == second.url
    assert document.language == "en"


def test_petroleum_division_listing() -> None:
    document = parse("petroleum_division.html", "https://petroleum.gov.pk/News", PETROLEUM)
    assert document.items[0].url == "https://petroleum.gov.pk/NewsDetail/MzQ1Ng=="
    assert document.items[0].published == datetime(2024, 6, 14, tzinfo=UTC)
    assert "Pakistan Stream" in document.items[0].title


def test_ogra_table_with_base_href() -> None:
    document = parse("ogra_notified_prices.html", "https://ogra.org.pk/notified", OGRA)
    assert len(document.items) == 3
    first = document.items[0]
    assert first.url == "https://www.ogra.org.pk/images/data/downloads/1718460000_prices.pdf"
    assert first.title.startswith("Notified prices of petroleum products")
    assert first.published == datetime(2024, 6, 15, tzinfo=UTC)


def test_opec_latin1_page_and_free_text_dates() -> None:
    content = (FEEDS / "opec_press_releases.html").read_bytes().replace(b"&eacute;", b"\xe9")
    document = parser_for("html").parse(
        content,
        url="https://www.opec.org/opec_web/en/press_room/press_releases.htm",
        content_type="text/html",
        options=OPEC,
    )
    assert document.items[0].published == datetime(2024, 6, 2, tzinfo=UTC)
    assert document.items[1].title == "OPEC Secretary General visits Café Scientifique in Vienna"
    assert document.items[0].url == "https://www.opec.org/opec_web/en/press_room/7342.htm"


def test_sco_time_datetime_attribute() -> None:
    document = parse("sco_news.html", "https://eng.sectsco.org/news/", SCO)
    assert document.items[0].published == datetime(2024, 7, 4, 7, 0, tzinfo=UTC)
    assert document.items[1].url == "https://eng.sectsco.org/news/20240521/1299811.html"


def test_missing_item_selector_and_no_match() -> None:
    with pytest.raises(SourceParseError, match="item"):
        parse("sco_news.html", "https://eng.sectsco.org/news/", {})
    with pytest.raises(SourceParseError, match="no items"):
        parse("sco_news.html", "https://eng.sectsco.org/news/", {"item": ".nothing-here"})


def test_extract_main_text_prefers_article_and_drops_boilerplate() -> None:
    page = b"""<html><body><nav>Home | About | Contact</nav>
    <div class="sidebar"><p>Most read: cricket scores</p></div>
    <article><h1>Protocol signed</h1>
    <p>ISLAMABAD: Pakistan and Russia signed a protocol amending the agreement on the Pakistan
    Stream Gas Pipeline.</p><p>The pipeline will carry regasified LNG from Karachi to Lahore.</p>
    <script>track()</script></article><footer>Copyright</footer></body></html>"""
    text = extract_main_text(page)
    assert text.startswith("ISLAMABAD: Pakistan and Russia signed")
    assert "\n\nThe pipeline will carry" in text
    assert "Home" not in text
    assert "track()" not in text
    assert "cricket" not in text


def test_extract_main_text_densest_paragraph_block_and_selector() -> None:
    page = b"""<html><body><div id="menu"><p>Menu</p></div>
    <div id="story"><p>First long paragraph about the North-South gas pipeline and its route.</p>
    <p>Second long paragraph on financing by Russian and Pakistani companies.</p></div>
    <div class="body-x"><p>Chosen by selector: the official statement on the pipeline.</p></div>
    </body></html>"""
    assert extract_main_text(page).startswith("First long paragraph")
    assert "Menu" not in extract_main_text(page)
    assert extract_main_text(page, selector="div.nothing").startswith("First long")
