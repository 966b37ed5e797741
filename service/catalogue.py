"""The config catalogue: ``config/sources.toml`` and ``config/rules.toml`` loaded into the DB.

Loading is idempotent. A catalogue entry is inserted once; later loads update it only while
nobody changed it through the API (the row still hashes to what the catalogue last wrote), so
an admin's edit is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.rulefile import RuleDefinition, parse_rules_toml
from service.db.models import Source, WatchRule
from service.exceptions import ServiceError
from service.sources.options import check_options

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\Z")

SourceKind = Literal["feed", "html", "json"]
SourceTier = Literal["official", "news", "aggregator"]


class CatalogueError(ServiceError):
    """A catalogue file is malformed."""


class SourceDefinition(BaseModel):
    """One ``[[source]]`` entry of ``config/sources.toml``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=200)
    kind: SourceKind = "feed"
    url: str = Field(min_length=1)
    tier: SourceTier = "news"
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    language: str | None = None
    interval_minutes: int = Field(default=30, ge=1, le=10080)
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("id must be a slug: lowercase letters, digits and '-'")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # An invalid kind has its own error; options are checked only against a valid one.
        if "kind" in info.data:
            check_options(info.data["kind"], value)
        return value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


def parse_sources_toml(text: str) -> list[SourceDefinition]:
    """Parse and validate a sources catalogue; raise CatalogueError naming the entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"sources.toml: {exc}") from exc
    definitions: list[SourceDefinition] = []
    seen: set[str] = set()
    for index, entry in enumerate(data.get("source", [])):
        try:
            definition = SourceDefinition.model_validate(entry)
        except ValidationError as exc:
            name = entry.get("id", f"#{index + 1}") if isinstance(entry, dict) else index
            raise CatalogueError(f"sources.toml: source {name}: {exc}") from exc
        if definition.id in seen:
            raise CatalogueError(f"sources.toml: duplicate source id {definition.id!r}")
        seen.add(definition.id)
        definitions.append(definition)
    return definitions


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def source_fingerprint(source: Source) -> str:
    return _digest(
        {
            "name": source.name,
            "kind": source.kind,
            "url": source.url,
            "tier": source.tier,
            "country": source.country,
            "language": source.language,
            "interval_minutes": source.interval_minutes,
            "enabled": source.enabled,
            "options": source.options,
        }
    )


def rule_fingerprint(rule: WatchRule) -> str:
    return _digest(
        {
            "name": rule.name,
            "description": rule.description,
            "query": rule.query,
            "tags": sorted(rule.tags),
            "enabled": rule.enabled,
            "min_score": rule.min_score,
        }
    )


@dataclass(frozen=True)
class SyncReport:
    """What a catalogue load did, per kind: created, updated, kept (admin-changed), unchanged."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


def _apply_source(row: Source, definition: SourceDefinition) -> None:
    row.name = definition.name
    row.kind = definition.kind
    row.url = definition.url
    row.tier = definition.tier
    row.country = definition.country
    row.language = definition.language
    row.interval_minutes = definition.interval_minutes
    row.enabled = definition.enabled
    row.options = definition.options


def _apply_rule(row: WatchRule, definition: RuleDefinition) -> None:
    row.name = definition.name
    row.description = definition.description
    row.query = definition.query
    row.tags = sorted(definition.tags)
    row.enabled = definition.enabled
    row.min_score = definition.min_score


_Row = TypeVar("_Row", Source, WatchRule)
_Definition = TypeVar("_Definition", SourceDefinition, RuleDefinition)


async def _sync(
    session: AsyncSession,
    definitions: list[_Definition],
    *,
    model: type[_Row],
    new_row: Callable[[str], _Row],
    apply: Callable[[_Row, _Definition], None],
    fingerprint: Callable[[_Row], str],
    now: datetime,
) -> SyncReport:
    """Upsert catalogue entries by id, leaving rows an admin changed alone. Safe twice."""
    created, updated, kept, unchanged = [], [], [], []
    for definition in definitions:
        row = await session.get(model, definition.id)
        if row is None:
            row = new_row(definition.id)
            apply(row, definition)
            row.config_hash = fingerprint(row)
            session.add(row)
            created.append(definition.id)
            continue
        if row.origin != "config" or fingerprint(row) != row.config_hash:
            kept.append(definition.id)
            continue
        before = row.config_hash
        apply(row, definition)
        row.config_hash = fingerprint(row)
        if row.config_hash == before:
            unchanged.append(definition.id)
        else:
            row.updated_at = now
            row.version += 1
            updated.append(definition.id)
    await session.flush()
    return SyncReport(tuple(created), tuple(updated), tuple(kept), tuple(unchanged))


async def sync_sources(
    session: AsyncSession, definitions: list[SourceDefinition], *, now: datetime
) -> SyncReport:
    """Upsert catalogue sources by id; a new source is due for polling at once."""
    return await _sync(
        session,
        definitions,
        model=Source,
        new_row=lambda source_id: Source(
            id=source_id,
            origin="config",
            created_at=now,
            updated_at=now,
            next_poll_at=now,
            version=1,
        ),
        apply=_apply_source,
        fingerprint=source_fingerprint,
        now=now,
    )


async def sync_rules(
    session: AsyncSession, definitions: list[RuleDefinition], *, now: datetime
) -> SyncReport:
    """Upsert catalogue rules by id."""
    return await _sync(
        session,
        definitions,
        model=WatchRule,
        new_row=lambda rule_id: WatchRule(
            id=rule_id, origin="config", created_at=now, updated_at=now, version=1
        ),
        apply=_apply_rule,
        fingerprint=rule_fingerprint,
        now=now,
    )


def load_catalogue_files(
    folder: Path,
) -> tuple[list[SourceDefinition], list[RuleDefinition]]:
    """Read and validate ``sources.toml`` and ``rules.toml`` from ``folder``."""
    sources_path, rules_path = folder / "sources.toml", folder / "rules.toml"
    sources = parse_sources_toml(sources_path.read_text()) if sources_path.exists() else []
    rules = parse_rules_toml(rules_path.read_text()) if rules_path.exists() else []
    return sources, rules
