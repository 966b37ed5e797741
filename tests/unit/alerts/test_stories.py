from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.stories import (
    _ADD,
    _BAND_MIX,
    _MUL,
    StoryIndex,
    StoryMember,
    band_keys,
    canonical_member,
    story_text,
    story_tokens,
)

PAIRS = json.loads(
    (Path(__file__).parents[2] / "data" / "stories" / "pairs.json").read_text(encoding="utf-8")
)


def test_labelled_pairs_precision_and_recall() -> None:
    true_pos = false_pos = false_neg = 0
    for pair in PAIRS:
        index = StoryIndex([("a", pair["a"], "story-a")])
        merged = index.assign(pair["b"]) == "story-a"
        true_pos += merged and pair["same"]
        false_pos += merged and not pair["same"]
        false_neg += (not merged) and pair["same"]
    assert false_pos == 0
    assert true_pos / (true_pos + false_neg) >= 0.9


def test_assign_among_many_stories_picks_the_right_one() -> None:
    firsts = {pair["a"] for pair in PAIRS}
    index = StoryIndex((f"a{i}", text, f"story-{i}") for i, text in enumerate(sorted(firsts)))
    lookup = {text: f"story-{i}" for i, text in enumerate(sorted(firsts))}
    for pair in PAIRS:
        if pair["same"] and index.assign(pair["b"]) is not None:
            assert index.assign(pair["b"]) == lookup[pair["a"]]


def test_add_then_assign_and_empty_texts() -> None:
    index = StoryIndex()
    assert index.assign("Anything at all") is None
    text = story_text(
        "OPEC+ agrees to extend oil output cuts into 2025",
        "OPEC+ agreed on Sunday to extend most of its deep oil output cuts well into 2025.",
    )
    index.add("k1", text, "s1")
    assert "k1" in index
    assert len(index) == 1
    assert index.assign(text) == "s1"
    index.add("k1", text, "s2")
    assert index.assign(text) == "s2"
    index.add("k2", "", "s3")
    assert "k2" not in index
    assert index.assign("...") is None


def test_canonical_prefers_official_then_earliest() -> None:
    early_news = StoryMember("dawn", "news", datetime(2024, 6, 14, 9, tzinfo=UTC))
    late_official = StoryMember("petroleum", "official", datetime(2024, 6, 14, 11, tzinfo=UTC))
    earlier_official = StoryMember("kremlin", "official", datetime(2024, 6, 14, 10, tzinfo=UTC))
    aggregator = StoryMember("gdelt", "aggregator", datetime(2024, 6, 14, 8, tzinfo=UTC))
    assert canonical_member([early_news, late_official, aggregator]) == late_official
    assert canonical_member([late_official, earlier_official]) == earlier_official
    assert canonical_member([aggregator, early_news]) == early_news
    with pytest.raises(ValueError, match="at least one"):
        canonical_member([])


def test_place_assigns_and_records_in_one_step() -> None:
    index = StoryIndex()
    first = story_text("Gazprom and CNPC sign Power of Siberia 2 memorandum", "Gazprom said.")
    again = story_text("Gazprom, CNPC sign Power of Siberia 2 memorandum", "Gazprom said.")
    assert index.place("a1", first, "s1") is None
    assert index.place("a2", again, "s2") == "s1"
    assert index.assign(again) == "s1"
    assert index.place("a1", first, "other") == "s1"
    assert index.place("a3", "", "s3") is None
    assert "a3" not in index


def _reference_band_keys(tokens: frozenset[str]) -> list[int]:
    """One article's band keys computed value by value, without numpy."""
    mask = 2**64 - 1
    hashes = [hash(token) & mask for token in tokens]
    signature = [
        min(((int(a) * h + int(b)) & mask) >> 32 for h in hashes)
        for a, b in zip(_MUL[:, 0], _ADD[:, 0], strict=True)
    ]
    rows = _BAND_MIX.shape[1]
    return [
        sum(int(m) * v for m, v in zip(mix, signature[band * rows :], strict=False)) & mask
        for band, mix in enumerate(_BAND_MIX)
    ]


def test_band_keys_are_minhash_bands_whatever_the_batch() -> None:
    texts = [pair["a"] for pair in PAIRS[:12]] + ["Pakistan and Russia sign LNG supply deal"]
    sets = [story_tokens(text) for text in texts]
    batch = band_keys(sets)
    assert batch == [_reference_band_keys(tokens) for tokens in sets]
    assert batch == [band_keys([tokens])[0] for tokens in sets]
    assert all(len(keys) == 32 and len(set(keys)) == 32 for keys in batch)


def test_identical_sets_share_every_band_and_disjoint_sets_none() -> None:
    first, again = band_keys(
        [story_tokens("gas pipeline deal signed"), story_tokens("Deal signed: gas pipeline")]
    )
    other = band_keys([story_tokens("cricket match postponed by rain")])[0]
    assert first == again
    assert not set(first) & set(other)


def test_place_many_equals_one_place_per_article() -> None:
    texts = [(f"k{i}", pair[side], f"s{i}{side}") for i, pair in enumerate(PAIRS) for side in "ab"]
    one_by_one = StoryIndex()
    expected = [one_by_one.place(*entry) for entry in texts]
    batched = StoryIndex()
    assert batched.place_many(texts) == expected
    assert any(found is not None for found in expected)
