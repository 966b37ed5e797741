"""Normalised articles for storage tests, with the fields a test does not care about filled in."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from service.storage.articles import ArticleData


def article_data(
    identity: str,
    *,
    url: str,
    title: str,
    published_at: datetime,
    content_hash: str,
    **changes: Any,
) -> ArticleData:
    """An article already canonical (``canonical_url`` is ``url``), with no guid, summary, text,
    author or language and a valid date, unless ``changes`` name them."""
    plain = ArticleData(
        identity=identity,
        guid=None,
        url=url,
        canonical_url=url,
        title=title,
        summary="",
        text="",
        author=None,
        published_at=published_at,
        published_valid=True,
        language=None,
        content_hash=content_hash,
    )
    return replace(plain, **changes) if changes else plain
