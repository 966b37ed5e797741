"""``dealwatch fetch``: preview a source without storing it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.support.http_server import LocalHTTPServer, Response

pytestmark = pytest.mark.integration

FEEDS = Path(__file__).parents[2] / "data" / "feeds"
ENV = {
    "DEALWATCH_HTTP__ALLOW_LOOPBACK": "true",
    "DEALWATCH_HTTP__MIN_HOST_INTERVAL_SECONDS": "0",
    "COLUMNS": "250",
}


@pytest.fixture
def served() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as server:
        server.route(
            "/feed",
            Response(
                body=(FEEDS / "kremlin_en_atom.xml").read_bytes(),
                headers={"Content-Type": "application/atom+xml"},
            ),
        )
        server.route(
            "/sco",
            Response(
                body=(FEEDS / "sco_news.html").read_bytes(),
                headers={"Content-Type": "text/html; charset=utf-8"},
            ),
        )
        server.route(
            "/gdelt",
            Response(
                body=(FEEDS / "gdelt_artlist.json").read_bytes(),
                headers={"Content-Type": "application/json"},
            ),
        )
        server.route("/broken", Response(status=500))
        yield server


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=ENV)
    return result.exit_code, result.stdout, result.stderr


def test_feed_as_json(served: LocalHTTPServer) -> None:
    code, out, _ = run("fetch", served.url("/feed"), "--json")
    assert code == 0
    items = json.loads(out)["items"]
    assert len(items) == 3
    assert items[0] == {
        "title": "Meeting with Prime Minister of Pakistan Shehbaz Sharif",
        "link": "http://en.kremlin.ru/events/president/news/74450",
        "published": "2024-07-03T14:40:00+00:00",
        "summary": items[0]["summary"],
    }
    assert items[0]["summary"].startswith("On the sidelines of the SCO summit")


def test_html_with_selectors_as_table(served: LocalHTTPServer) -> None:
    code, out, _ = run(
        "fetch",
        served.url("/sco"),
        "--kind",
        "html",
        "--selector",
        ".news__list .news__item",
        "--selector",
        "title=.news__title",
        "--selector",
        "date=time",
    )
    assert code == 0, out
    assert "Astana Declaration of the Council of Heads of State" in out
    assert "2024-07-04 07:00" in out


def test_json_kind_with_paths(served: LocalHTTPServer) -> None:
    code, out, _ = run(
        "fetch",
        served.url("/gdelt"),
        "--kind",
        "json",
        "--selector",
        "date_format=%Y%m%dT%H%M%SZ",
        "--json",
    )
    assert code == 0
    items = json.loads(out)["items"]
    assert items[2]["title"] == "Россия и Пакистан обсудили поставки нефти"
    assert items[0]["published"] == "2024-06-14T07:15:00+00:00"


@pytest.mark.parametrize(
    ("path", "args", "reason"),
    [
        ("/broken", (), "error: HTTP 500"),
        ("/sco", ("--kind", "feed"), "error: not a feed"),
        ("/sco", ("--kind", "html"), "error: html sources need an 'item' selector"),
        ("/feed", ("--kind", "pdf"), "error: unknown kind"),
    ],
)
def test_failures_exit_1_with_one_line(
    served: LocalHTTPServer, path: str, args: tuple[str, ...], reason: str
) -> None:
    code, out, err = run("fetch", served.url(path), *args)
    assert code == 1
    assert out == ""
    assert err.startswith(reason)
    assert err.count("\n") == 1


def test_loopback_is_refused_by_default(served: LocalHTTPServer) -> None:
    result = CliRunner().invoke(app, ["fetch", served.url("/feed")], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "loopback" in result.stderr
    assert served.requests == []
