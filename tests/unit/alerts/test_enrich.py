from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.enrich import _CHAR_FOLD, Enrichment, Gazetteer, GazetteerError, _is_word_char, fold
from bench.ingest.__main__ import write_feeds
from service.jobs.poll import prepare_item
from service.sources.parsers import parser_for

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


def _reference_fold(text: str) -> str:
    """:func:`fold` as it was, with ``str.translate``."""
    normalised = text.translate(_CHAR_FOLD)
    lowered = normalised.lower()
    if len(lowered) == len(normalised):
        return lowered
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in normalised)


def _reference_find(gazetteer: Gazetteer, text: str) -> Enrichment:
    """:meth:`Gazetteer.find` before its ASCII road: every text folded and scanned as str."""
    automaton = gazetteer._automaton
    if automaton is None or not text:
        return Enrichment()
    normalised = " ".join(text.split()) if "\n" in text or "  " in text else text
    original: str | None = None
    folded = _reference_fold(normalised)
    size = len(folded)
    countries: set[str] = set()
    entities: set[str] = set()
    for index, start, end in automaton.find_matches_as_indexes(folded, overlapping=True):
        if start > 0 and _is_word_char(folded[start - 1]) and _is_word_char(folded[start]):
            continue
        if end < size and _is_word_char(folded[end]) and _is_word_char(folded[end - 1]):
            continue
        for target in gazetteer._targets[index]:
            if target.exact:
                if original is None:
                    original = normalised.translate(_CHAR_FOLD)
                if original[start:end] != target.alias:
                    continue
            if target.country is not None:
                countries.add(target.country)
            if target.entity is not None:
                entities.add(target.entity)
    return Enrichment(countries=frozenset(countries), entities=frozenset(entities))


def _double_spaced(alias: str) -> str:
    return alias.replace(" ", "  ")


def _broken_by_newlines(alias: str) -> str:
    return alias.replace(" ", "\n")


_ALIASES = sorted({target.alias for targets in GAZETTEER._targets for target in targets})
_CASES: list[Callable[[str], str]] = [str, str.lower, str.upper, str.title, _double_spaced]
_ASCII_FILLER = [" ", "  ", "\t", "-", ", ", "", "x", "9", "_", " the ", "'", ".", "\x1f"]


def _soup(
    aliases: list[str], cases: list[Callable[[str], str]], filler: list[str]
) -> st.SearchStrategy[str]:
    alias = st.tuples(st.sampled_from(aliases), st.sampled_from(cases)).map(
        lambda pair: pair[1](pair[0])
    )
    return st.lists(alias | st.sampled_from(filler), max_size=14).map("".join)


@settings(max_examples=500, deadline=None)
@given(
    _soup(
        _ALIASES,
        [*_CASES, _broken_by_newlines],
        [*_ASCII_FILLER, "\n", "’", "\u0301", "é", "\xa0", "İ", "Ё"],
    )
    | st.text(max_size=30)
)
def test_find_equals_the_reference_on_alias_soup(text: str) -> None:
    # Aliases in every case, glued to letters, digits and marks or set apart by whitespace of
    # every kind, in text of any script.
    assert GAZETTEER.find(text) == _reference_find(GAZETTEER, text)


@settings(max_examples=500, deadline=None)
@given(_soup([alias for alias in _ALIASES if alias.isascii()], _CASES, _ASCII_FILLER))
def test_find_equals_the_reference_on_ascii_soup(text: str) -> None:
    # The ASCII road: no newline, so only a double space can send a text back.
    assert GAZETTEER.find(text) == _reference_find(GAZETTEER, text)


def _typographic(alias: str) -> str:
    return alias.replace("-", "\u2013").replace("'", "\u2019").replace(" ", "\xa0")


@settings(max_examples=500, deadline=None)
@given(
    _soup(
        [alias for alias in _ALIASES if alias.isascii()],
        [*_CASES, _typographic],
        [
            *_ASCII_FILLER,
            "\u2019",
            "\u2018",
            "\u2013",
            "\u2014",
            "\u2212",
            "\xa0",
            "\xa0 ",
            "«",
            "»",
        ],
    )
)
def test_find_equals_the_reference_on_typographic_soup(text: str) -> None:
    # ASCII once folded (dashes, apostrophes, no-break spaces, guillemets): the ASCII road too.
    assert GAZETTEER.find(text) == _reference_find(GAZETTEER, text)


def test_find_equals_the_reference_on_ingest_benchmark_items(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    write_feeds(feeds, 2, 50)
    parser = parser_for("feed")
    texts = []
    for path in sorted(feeds.iterdir()):
        document = parser.parse(
            path.read_bytes(), url="https://example.org/", content_type="", options={}
        )
        for item in document.items:
            prepared = prepare_item(item, fetched_at=datetime(2026, 11, 2, tzinfo=UTC))
            assert prepared is not None
            texts.append(prepared.mentions)
    assert len(texts) == 100
    for text in texts:
        assert text.isascii()
        assert GAZETTEER.find(text) == _reference_find(GAZETTEER, text)


def test_ascii_road_declines_double_spaces_and_keeps_cross_script_aliases() -> None:
    # "K" with a Kelvin sign folds to the ASCII "kg", but the acronym's own spelling is not
    # ASCII: the ASCII text "KG" must not match it, on either road.
    gazetteer = Gazetteer({"KG": ["\u212aG"]}, {"company:acme": ["Acme Oil", "AO"]})
    for text in ("KG and Acme  Oil", "KG and Acme Oil", "kg AO", "Acme\nOil", "ao acme oilx"):
        assert gazetteer.find(text) == _reference_find(gazetteer, text)
    assert gazetteer.find("Acme  Oil").entities == {"company:acme"}
    assert gazetteer._find_ascii("Acme  Oil") is None
    assert gazetteer.find("KG").countries == frozenset()


def test_find_sorted_is_find_in_article_order() -> None:
    text = "Pakistan, Russia sign protocol on Pakistan Stream Gas Pipeline (PSGP) with Gazprom"
    found = GAZETTEER.find(text)
    assert GAZETTEER.find_sorted(text) == (
        tuple(sorted(found.countries)),
        tuple(sorted(found.entities)),
    )
    assert GAZETTEER.find_sorted("nothing to see") == ((), ())


@pytest.mark.parametrize(
    "text",
    [
        "CASA\u20131000 and the North\u2013South gas pipeline",
        "Pakistan\u2019s LNG and the People\u2019s Republic of China",
        "US\xa0sanctions",
        "US\xa0 sanctions on Iran",
        "\u00abPakistan Stream\u00bb",
        "PSO\u2014PPL",
    ],
)
def test_typographic_text_finds_what_the_reference_finds(text: str) -> None:
    # The folding table makes these ASCII, so they take the ASCII road (acronyms compared
    # against the folded text, as the reference does).
    assert text.translate(_CHAR_FOLD).isascii()
    assert GAZETTEER.find(text) == _reference_find(GAZETTEER, text)


def test_typographic_acronym_matches_its_folded_spelling() -> None:
    assert "project:casa-1000" in GAZETTEER.find("CASA\u20131000 line").entities
    assert GAZETTEER.find("US\xa0sanctions").countries == {"US"}


_FOLDED = [chr(code) for code in _CHAR_FOLD]


@settings(max_examples=500)
@given(st.text() | st.text(st.sampled_from([*_FOLDED, "a", "A", " ", "İ", "\u0301", "е"])))
def test_fold_equals_the_translate_table(text: str) -> None:
    assert fold(text) == _reference_fold(text)


def test_fold_replacements_are_not_folded_again() -> None:
    # fold replaces one character after the other: that equals one translate only while no
    # replacement is itself a character the table replaces.
    assert not set("".join(str(target) for target in _CHAR_FOLD.values())) & set(_FOLDED)
