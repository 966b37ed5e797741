"""Loading config/sources.toml and config/rules.toml is idempotent and respects admin edits."""

from __future__ import annotations

import pytest

from alerts.rulefile import RuleDefinition
from service.catalogue import (
    CatalogueError,
    SourceDefinition,
    load_catalogue_files,
    parse_sources_toml,
    sync_rules,
    sync_sources,
)
from service.db.models import Source, WatchRule
from service.runtime import Resources
from service.settings import config_dir

pytestmark = pytest.mark.integration


def _source(**changes: object) -> SourceDefinition:
    values: dict[str, object] = {
        "id": "dawn-business",
        "name": "Dawn Business",
        "url": "https://www.dawn.com/feeds/business",
        "tier": "news",
        "country": "PK",
    }
    values.update(changes)
    return SourceDefinition.model_validate(values)


async def test_sync_sources_is_idempotent_and_keeps_admin_changes(resources: Resources) -> None:
    now = resources.clock()
    async with resources.sessionmaker() as session:
        first = await sync_sources(session, [_source()], now=now)
        second = await sync_sources(session, [_source()], now=now)
        assert (first.created, second.unchanged) == (("dawn-business",), ("dawn-business",))

        changed = await sync_sources(session, [_source(name="Dawn: Business")], now=now)
        assert changed.updated == ("dawn-business",)
        row = await session.get(Source, "dawn-business")
        assert row is not None
        assert (row.name, row.version) == ("Dawn: Business", 2)

        row.interval_minutes = 5  # what an admin does through the API
        kept = await sync_sources(session, [_source(name="Dawn (business)")], now=now)
        assert kept.kept == ("dawn-business",)
        assert (row.name, row.interval_minutes) == ("Dawn: Business", 5)
        await session.commit()


async def test_sync_rules_keeps_a_rule_an_admin_edited(resources: Resources) -> None:
    now = resources.clock()
    rule = RuleDefinition(id="oil", name="Oil", description="", query="oil OR crude")
    async with resources.sessionmaker() as session:
        assert (await sync_rules(session, [rule], now=now)).created == ("oil",)
        row = await session.get(WatchRule, "oil")
        assert row is not None
        row.query = "oil OR crude OR petroleum"
        report = await sync_rules(
            session, [RuleDefinition(id="oil", name="Oil", description="", query="oil")], now=now
        )
        assert report.kept == ("oil",)
        assert row.query == "oil OR crude OR petroleum"


def test_the_shipped_catalogue_is_valid() -> None:
    sources, rules = load_catalogue_files(config_dir())
    assert len(sources) >= 20
    assert {"kremlin-en", "app-pk", "dawn-business", "tass-en"} <= {s.id for s in sources}
    assert {s.tier for s in sources} == {"official", "news", "aggregator"}
    assert "pk-ru-energy" in {r.id for r in rules}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[source]]\nid = "x"\nname = "X"\nurl = "ftp://x"\n', "source x"),
        ('[[source]]\nid = "Bad Id"\nname = "X"\nurl = "https://x"\n', "slug"),
        ('[[source]]\nid = "a"\nname = "A"\nurl = "https://a"\nkind = "pdf"\n', "source a"),
        ('[[source]]\nid = "a"\nname = "A"\nurl = "https://a"\n' * 2, "duplicate source id"),
        ("[[source]\n", "sources.toml"),
        (
            '[[source]]\nid = "h"\nname = "H"\nurl = "https://h"\nkind = "html"\n'
            '[source.options]\nitem = "li"\ntitel = "a"\n',
            "(?s)source h.*titel: Extra inputs are not permitted",
        ),
    ],
)
def test_parse_sources_toml_names_the_bad_entry(text: str, needle: str) -> None:
    with pytest.raises(CatalogueError, match=needle):
        parse_sources_toml(text)
