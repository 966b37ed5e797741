"""Near-duplicate detection across sources: articles about one event join one story.

Each article is reduced to the set of content words of its title and lead (case-folded,
stop words removed). MinHash LSH finds candidate neighbours in sub-linear time and the exact
Jaccard similarity of the word sets decides. The MinHash signatures of a document's new articles
are computed together in one numpy pass (128 multiply-shift hash functions over all their word
hashes, then a minimum per article); the decision threshold and the LSH banding are those the
per-article datasketch objects used.

Threshold choice (``tests/data/stories/pairs.json``: 20 same-story pairs, the same event as
worded by two outlets, e.g. APP vs Dawn, Kremlin vs TASS, and 20 hard different-story pairs,
e.g. the same ministry announcing a different price, Putin meeting a different leader):

============================  ======================  ========================
shingles                      same-story Jaccard      different-story Jaccard
============================  ======================  ========================
content words (chosen)        0.52, then >= 0.65      <= 0.52
all words                     0.57, then >= 0.67      <= 0.64
word bigrams                  0.39 .. 0.69            <= 0.57
============================  ======================  ========================

Content words leave the widest gap (0.52 to 0.65) between the two classes; 0.58 sits in its
middle and gives precision 1.00 and recall 0.95 on the set (the one miss is a pair whose second
headline was rewritten from scratch). Wrongly merging two stories hides one from readers, a
missed merge only shows a duplicate, so the threshold errs high.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_THRESHOLD",
    "StoryIndex",
    "StoryMember",
    "band_keys",
    "canonical_member",
    "story_text",
    "story_tokens",
]

DEFAULT_THRESHOLD = 0.58
_NUM_PERM = 128
_BANDS, _ROWS = 32, 4
"""LSH banding of the 128 MinHash values: what datasketch's ``MinHashLSH`` chooses for a
candidate threshold of 0.4 (its false positive/negative optimum), which the index used before
the signatures were vectorised. A pair at the decision threshold (Jaccard 0.58) becomes a
candidate with probability 1 - (1 - 0.58**4)**32 = 0.98, one at 0.65 with 0.998; the exact
Jaccard of the word sets then decides, so the banding only bounds recall, never precision.
"""
_LEAD_CHARS = 400
_WORD = re.compile(r"\w+")
_ASCII_WORDS = bytes(
    ord(ch.lower()) if _WORD.fullmatch(ch) else ord(" ") for ch in map(chr, range(128))
).ljust(256, b" ")
"""For ASCII text: word characters lowered (casefold is lower there), everything else a space,
so that ``split()`` yields what ``_WORD.findall`` would, at half the cost of the regular
expression."""
_TYPOGRAPHIC_SEPARATORS = tuple(
    char
    for char in "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0\u00ab\u00bb\u2022"
    if not _WORD.search(char) and not _WORD.search(char.casefold())
)
"""Punctuation of English typography (curly quotes, dashes, ellipsis, no-break space): not word
characters, before or after casefolding, so a space in their place splits the same words, and
a text that only they made non-ASCII can take the ASCII road."""
_SIGNATURE_CHUNK = 512
"""Articles per vectorised signature computation (bounds the temporary array when the index
is rebuilt from a whole window: 128 x tokens x 8 bytes)."""
_SCRATCH_VALUES = 65536
"""Hash values per vectorised step (512 KB): 16 hash functions at a time for a feed's 50
articles, so the temporary stays in the CPU's cache while all of them use it."""
_RNG = np.random.default_rng(20261128)
# Multiply-shift universal hashing, h(x) = (a * x + b) mod 2**64 >> 32 with odd a: one
# independent hash function per permutation, fixed seeds so that every index in a process
# agrees. The uint64 overflow is the "mod 2**64".
_MUL = _RNG.integers(0, 2**64, size=(_NUM_PERM, 1), dtype=np.uint64) | np.uint64(1)
_ADD = _RNG.integers(0, 2**64, size=(_NUM_PERM, 1), dtype=np.uint64)
# A band's 4 values are folded into one 64-bit key by a random linear combination, with a
# different mix for each band, so all bands share one dict. Two equal bands always get equal
# keys; unequal ones collide with negligible probability, and a collision only adds a
# candidate that the exact Jaccard test then rejects.
_BAND_MIX = _RNG.integers(0, 2**64, size=(_BANDS, _ROWS), dtype=np.uint64) | np.uint64(1)
_SHIFT = np.uint64(32)
_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "to",
        "for",
        "by",
        "with",
        "and",
        "or",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "its",
        "it",
        "this",
        "that",
        "said",
        "says",
        "say",
        "will",
        "would",
        "their",
        "his",
        "her",
        "after",
        "over",
        "into",
        "up",
    ]
)
_TIER_RANK = {"official": 0, "news": 1, "aggregator": 2}


def story_text(title: str, text: str) -> str:
    """Return the part of an article that identifies its story: title plus lead."""
    return f"{title}. {text[:_LEAD_CHARS]}"


def story_tokens(text: str) -> frozenset[str]:
    """Return the content words of ``text`` (case-folded, stop words removed)."""
    return frozenset(_words(text))


def _words(text: str) -> set[str]:
    # A plain set: the index never changes one, and freezing a copy cost as much as the
    # stop-word removal.
    if not text.isascii():
        for char in _TYPOGRAPHIC_SEPARATORS:
            if char in text:
                text = text.replace(char, " ")
    if text.isascii():
        words = set(text.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split())
    else:
        words = set(_WORD.findall(text.casefold()))
    words -= _STOP_WORDS
    return words


def _signatures(token_sets: Sequence[Set[str]]) -> npt.NDArray[np.uint64]:
    """Return the MinHash signatures of non-empty word sets, one row of 128 values each.

    All sets are hashed in one numpy pass: a per-article MinHash object cost more than the
    rest of the ingest of that article.
    """
    lengths = [len(tokens) for tokens in token_sets]
    # The index lives in one process and is rebuilt from stored text at start, so Python's
    # (per-process salted) string hash is as good as a cryptographic one here, and far cheaper.
    hashes = np.fromiter(
        map(hash, itertools.chain.from_iterable(token_sets)), dtype=np.int64, count=sum(lengths)
    ).view(np.uint64)
    starts = np.zeros(len(lengths), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    minima = np.empty((_NUM_PERM, len(lengths)), dtype=np.uint64)
    # A few hash functions at a time: the temporary stays in the CPU's cache instead of
    # filling megabytes for a feed's 50 articles (which only shows in the ingest benchmark,
    # where other stages run between two feeds, not in a loop over signatures alone).
    step = _NUM_PERM
    while step > 1 and step * len(hashes) > _SCRATCH_VALUES:
        step //= 2
    values = np.empty((step, len(hashes)), dtype=np.uint64)
    for row in range(0, _NUM_PERM, step):
        np.multiply(_MUL[row : row + step], hashes, out=values)
        values += _ADD[row : row + step]
        np.minimum.reduceat(values, starts, axis=1, out=minima[row : row + step])
    # The shift keeps the order (x <= y gives x >> 32 <= y >> 32), so it can follow the
    # minimum and run over one value per article instead of one per word.
    minima >>= _SHIFT
    return minima.T


def band_keys(token_sets: Sequence[Set[str]]) -> list[list[int]]:
    """Return the LSH band keys of each non-empty word set (32 ints per set).

    Two sets share a key when one of their bands of 4 MinHash values is equal, which happens
    with probability 1 - (1 - J**4)**32 for sets of Jaccard similarity J.
    """
    keys: list[list[int]] = []
    for start in range(0, len(token_sets), _SIGNATURE_CHUNK):
        signatures = _signatures(token_sets[start : start + _SIGNATURE_CHUNK])
        bands = signatures.reshape(len(signatures), _BANDS, _ROWS) * _BAND_MIX
        keys.extend(bands.sum(axis=2, dtype=np.uint64).tolist())
    return keys


def _jaccard(a: Set[str], b: Set[str]) -> float:
    common = len(a & b)
    union = len(a) + len(b) - common
    return common / union if union else 0.0


class StoryIndex:
    """Recent articles' word sets, searchable for near-duplicates.

    Build it from the recent window's ``(article_key, text, story_key)`` entries (``text`` as
    made by :func:`story_text`), then call :meth:`place_many` with each batch of new articles
    (or :meth:`assign` and :meth:`add` one at a time), then :meth:`update_stories` once the
    batch's new stories have their keys.
    """

    def __init__(
        self,
        entries: Iterable[tuple[str, str, str]] = (),
        *,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        """Create an index.

        Args:
            entries: ``(article_key, text, story_key)`` of recent articles.
            threshold: minimum Jaccard similarity of content words for "same story".
        """
        self.threshold = threshold
        # A bucket holds one article key, or a list of them once a second one shares the band:
        # most bands are unique to an article, and 32 lists per article would double the cost
        # of an insert (and keep the garbage collector busy).
        self._buckets: dict[int, str | list[str]] = {}
        self._tokens: dict[str, Set[str]] = {}
        self._story_of: dict[str, str] = {}
        # As many add() calls, with the signatures computed in a few vectorised passes.
        fresh: dict[str, tuple[Set[str], str]] = {}
        for article_key, text, story_key in entries:
            known = fresh.get(article_key)
            if known is not None:
                fresh[article_key] = (known[0], story_key)
                continue
            tokens = _words(text)
            if tokens:
                fresh[article_key] = (tokens, story_key)
        self._insert_many([(key, tokens, story) for key, (tokens, story) in fresh.items()])

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, article_key: object) -> bool:
        return article_key in self._tokens

    def _insert_many(self, rows: Sequence[tuple[str, Set[str], str]]) -> None:
        if not rows:
            return
        for (article_key, tokens, story_key), keys in zip(
            rows, band_keys([tokens for _, tokens, _ in rows]), strict=True
        ):
            self._tokens[article_key] = tokens
            self._story_of[article_key] = story_key
            self._file(article_key, keys)

    def _file(self, article_key: str, keys: list[int]) -> None:
        buckets = self._buckets
        # Most articles share no band with any other: then all 32 go in at C speed.
        if buckets.keys().isdisjoint(keys):
            buckets.update(dict.fromkeys(keys, article_key))
            return
        self._file_shared(article_key, keys)

    def _file_shared(self, article_key: str, keys: list[int]) -> None:
        buckets = self._buckets
        for key in keys:
            bucket = buckets.setdefault(key, article_key)
            if bucket is article_key:
                continue
            if isinstance(bucket, str):
                buckets[key] = [bucket, article_key]
            else:
                bucket.append(article_key)

    def add(self, article_key: str, text: str, story_key: str) -> None:
        """Remember that ``article_key`` (with ``text``) belongs to ``story_key``.

        Adding a known key again only updates its story.
        """
        if article_key in self._tokens:
            self._story_of[article_key] = story_key
            return
        tokens = _words(text)
        if tokens:
            self._insert_many([(article_key, tokens, story_key)])

    def update_stories(self, stories: Iterable[tuple[str, str]]) -> None:
        """Record each ``(article_key, story_key)`` whose article the index holds.

        What :meth:`add` does for an article :meth:`place_many` has placed, without its text;
        keys the index does not hold (articles without content words) are skipped, as
        :meth:`add` skips them.
        """
        story_of = self._story_of
        for article_key, story_key in stories:
            if article_key in story_of:
                story_of[article_key] = story_key

    def assign(self, text: str) -> str | None:
        """Return the story of the most similar known article, or ``None`` for a new story."""
        tokens = _words(text)
        if not tokens or not self._tokens:
            return None
        return self._nearest(tokens, band_keys([tokens])[0])

    def place(self, article_key: str, text: str, new_story_key: str) -> str | None:
        """Assign and add in one step.

        Returns the story of a near-duplicate, or ``None`` after recording ``article_key``
        under ``new_story_key``.
        """
        return self.place_many([(article_key, text, new_story_key)])[0]

    def place_many(self, articles: Sequence[tuple[str, str, str]]) -> list[str | None]:
        """:meth:`place` each ``(article_key, text, new_story_key)`` in order.

        The same answers as one :meth:`place` call per article (an article may join the story
        of one placed earlier in the batch), with the signatures of the whole batch computed
        in one vectorised pass.
        """
        known = self._tokens
        story_of = self._story_of
        buckets = self._buckets
        tokens_of = [_words(text) for _, text, _ in articles]
        todo = [
            i
            for i, (article_key, _, _) in enumerate(articles)
            if tokens_of[i] and article_key not in known
        ]
        keys_of = dict(zip(todo, band_keys([tokens_of[i] for i in todo]), strict=True))
        found: list[str | None] = []
        for i, (article_key, _, new_story_key) in enumerate(articles):
            tokens = tokens_of[i]
            if not tokens:
                found.append(None)
                continue
            if article_key in known:
                found.append(story_of[article_key])
                continue
            keys = keys_of[i]
            # No shared band, no candidate (an empty index shares none): a new story, and
            # its bands go in without a second look-up.
            alone = buckets.keys().isdisjoint(keys)
            story = None if alone else self._nearest(tokens, keys)
            known[article_key] = tokens
            story_of[article_key] = story if story is not None else new_story_key
            if alone:
                buckets.update(dict.fromkeys(keys, article_key))
            else:
                self._file_shared(article_key, keys)
            found.append(story)
        return found

    def _nearest(self, tokens: Set[str], keys: list[int]) -> str | None:
        candidates: set[str] = set()
        for key in keys:
            bucket = self._buckets.get(key)
            if bucket is None:
                continue
            if isinstance(bucket, str):
                candidates.add(bucket)
            else:
                candidates.update(bucket)
        best_key: str | None = None
        best = self.threshold
        for candidate in candidates:
            similarity = _jaccard(tokens, self._tokens[candidate])
            if similarity >= best:
                best_key, best = candidate, similarity
        return self._story_of[best_key] if best_key is not None else None


@dataclass(frozen=True, slots=True)
class StoryMember:
    """An article of a story as the canonical rule needs it."""

    article_key: str
    tier: str
    published: datetime


def canonical_member(members: Iterable[StoryMember]) -> StoryMember:
    """Return the story's canonical article: official tier first, then the earliest.

    Raises:
        ValueError: ``members`` is empty.
    """
    ordered = sorted(
        members, key=lambda m: (_TIER_RANK.get(m.tier, len(_TIER_RANK)), m.published, m.article_key)
    )
    if not ordered:
        raise ValueError("a story needs at least one article")
    return ordered[0]
