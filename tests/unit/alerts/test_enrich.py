from __future__ import annotations

from pathlib import Path

import pytest

from alerts.enrich import Enrichment, Gazetteer, GazetteerError

GAZETTEER = Gazetteer.from_toml(
    (Path(__file__).parents[3] / "config" / "gazetteer.toml").read_text(encoding="utf-8")
)


@pytest.mark.parametrize(
    ("text", "countries", "entities"),
    [
        (
            "Pakistan, Russia sign protocol on Pakistan Stream Gas Pipeline (PSGP)",
            {"PK", "RU"},
            {"project:pakistan-stream", "commodity:natural-gas"},
        ),
        ("Islamabad and the Kremlin discuss LNG", {"PK", "RU"}, {"commodity:lng"}),
        (
            "Газпром и Роснефть обсудили поставки СПГ в Пакистан",
            {"PK"},
            {"company:gazprom", "company:rosneft", "commodity:lng"},
        ),
        ("Россия и Пакистан: «Пакистанский поток»", {"RU", "PK"}, {"project:pakistan-stream"}),
        ("پاکستان اور روس کے درمیان گیس معاہدہ", {"PK", "RU"}, {"commodity:natural-gas"}),
        (
            "PSO and PPL shares rise; OGDCL flat",
            set(),
            {"company:pso", "company:ppl", "company:ogdcl"},
        ),
        ("North–South gas pipeline and TAPI and CASA-1000", set(), None),
        ("Pakistani-Russian talks in Moscow", {"PK", "RU"}, set()),
    ],
)
def test_find(text: str, countries: set[str], entities: set[str] | None) -> None:
    found = GAZETTEER.find(text)
    assert found.countries == countries
    if entities is not None:
        assert found.entities == entities


def test_projects_with_dash_variants() -> None:
    found = GAZETTEER.find("North–South gas pipeline and TAPI and CASA-1000, CPEC and INSTC")
    assert {
        "project:pakistan-stream",
        "project:tapi",
        "project:casa-1000",
        "project:cpec",
        "project:instc",
    } <= found.entities


def test_whole_words_and_acronym_case() -> None:
    assert GAZETTEER.find("Pakistanism russiaphile").countries == frozenset()
    assert GAZETTEER.find("gasoline-free").entities == {"commodity:petroleum-products"}
    assert GAZETTEER.find("the ppl said so").entities == frozenset()
    assert GAZETTEER.find("us and them").countries == frozenset()
    assert GAZETTEER.find("US sanctions").countries == {"US"}
    assert GAZETTEER.find("") == Enrichment()


def test_from_toml_errors() -> None:
    with pytest.raises(GazetteerError, match="invalid"):
        Gazetteer.from_toml("[countries.PK")
    with pytest.raises(GazetteerError, match="names"):
        Gazetteer.from_toml('[countries.PK]\nnames = "Pakistan"')
    with pytest.raises(GazetteerError, match="unknown"):
        Gazetteer.from_toml('[people.putin]\nnames = ["Putin"]')


def test_every_table_is_loaded() -> None:
    assert {"PK", "RU", "CN", "IN", "IR", "AF", "TM", "KZ"} <= GAZETTEER.country_codes
    for entity in (
        "company:gazprom",
        "company:rosneft",
        "company:lukoil",
        "company:novatek",
        "company:pso",
        "company:ppl",
        "company:ogdcl",
        "company:parco",
        "company:sngpl",
        "company:ssgc",
        "project:pakistan-stream",
        "project:tapi",
        "project:casa-1000",
        "project:cpec",
        "project:instc",
        "project:gwadar-port",
        "commodity:lng",
        "commodity:crude-oil",
    ):
        assert entity in GAZETTEER.entity_ids
