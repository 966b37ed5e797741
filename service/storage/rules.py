"""Watch rules and their versions as the admin API edits them. The caller commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import RuleVersion, WatchRule
from service.exceptions import ConflictError
from service.storage.paging import (
    contains_text,
    get_or_raise,
    json_text,
    paginate,
    snapshot,
    sort_columns,
)
from service.storage.versioning import bump_version, delete_versioned, set_fields

EDITABLE = ("name", "description", "query", "tags", "enabled", "min_score")
AUDITED = ("id", *EDITABLE, "origin", "version")
SORTS = {"id": WatchRule.id, "name": WatchRule.name, "updated_at": WatchRule.updated_at}


def rule_snapshot(rule: WatchRule) -> dict[str, Any]:
    return snapshot(rule, AUDITED)


async def get_rule(session: AsyncSession, rule_id: str) -> WatchRule:
    return await get_or_raise(session, WatchRule, rule_id, "rule")


async def list_rules(
    session: AsyncSession,
    *,
    enabled: bool | None = None,
    tag: str | None = None,
    q: str | None = None,
    sort: str = "id",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[WatchRule], int]:
    statement: Select[WatchRule] = select(WatchRule)
    if enabled is not None:
        statement = statement.where(WatchRule.enabled.is_(enabled))
    if tag is not None:
        # Tags are validated slugs, so the quoted form cannot contain LIKE wildcards.
        statement = statement.where(json_text(WatchRule.tags).like(f'%"{tag}"%'))
    if q:
        statement = statement.where(contains_text(q, WatchRule.name, WatchRule.id, WatchRule.query))
    return await paginate(
        session,
        statement,
        order_by=sort_columns(sort, dict(SORTS), WatchRule.id),
        limit=limit,
        offset=offset,
    )


async def create_rule(
    session: AsyncSession, values: Mapping[str, Any], *, now: datetime
) -> WatchRule:
    """Add a rule.

    Raises:
        ConflictError: the id is taken.
    """
    if await session.get(WatchRule, values["id"]) is not None:
        raise ConflictError(f"a rule with id {values['id']!r} exists")
    rule = WatchRule(**values, origin="api", version=1, created_at=now, updated_at=now)
    session.add(rule)
    await session.flush()
    return rule


async def update_rule(
    session: AsyncSession,
    rule: WatchRule,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    actor: str,
    now: datetime,
) -> WatchRule:
    """Keep the current state as a version, then apply ``changes``.

    Raises:
        PreconditionFailedError: the rule changed meanwhile.
    """
    previous = RuleVersion(
        rule_id=rule.id,
        version=rule.version,
        name=rule.name,
        query=rule.query,
        tags=list(rule.tags),
        min_score=rule.min_score,
        enabled=rule.enabled,
        created_at=now,
        created_by=actor,
    )
    await bump_version(session, rule, expected_version)
    session.add(previous)
    set_fields(rule, changes, EDITABLE, now=now)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, rule: WatchRule, *, expected_version: int) -> None:
    await delete_versioned(session, rule, expected_version)


async def list_versions(
    session: AsyncSession, rule_id: str, *, limit: int, offset: int
) -> tuple[list[RuleVersion], int]:
    return await paginate(
        session,
        select(RuleVersion).where(RuleVersion.rule_id == rule_id),
        order_by=[RuleVersion.version.desc(), RuleVersion.id.desc()],
        limit=limit,
        offset=offset,
    )


async def existing_rule_ids(session: AsyncSession, rule_ids: list[str]) -> set[str]:
    if not rule_ids:
        return set()
    rows = await session.execute(select(WatchRule.id).where(WatchRule.id.in_(rule_ids)))
    return set(rows.scalars())
