"""Reading the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import AuditEntry
from service.storage.paging import paginate


async def list_audit(
    session: AsyncSession,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    actor_key_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Audit entries newest first."""
    statement: Select[AuditEntry] = select(AuditEntry)
    if entity_type is not None:
        statement = statement.where(AuditEntry.entity_type == entity_type)
    if entity_id is not None:
        statement = statement.where(AuditEntry.entity_id == entity_id)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if actor_key_id is not None:
        statement = statement.where(AuditEntry.actor_key_id == actor_key_id)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    return await paginate(
        session,
        statement,
        order_by=[AuditEntry.at.desc(), AuditEntry.id.desc()],
        limit=limit,
        offset=offset,
    )
