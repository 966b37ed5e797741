"""The audit log: who changed what, when, before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import AuditEntry


async def record_audit(
    session: AsyncSession,
    *,
    at: datetime,
    actor_name: str,
    actor_key_id: int | None,
    action: str,
    entity_type: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry:
    """Append one entry in the caller's transaction: the change and its record commit together."""
    entry = AuditEntry(
        at=at,
        actor_name=actor_name,
        actor_key_id=actor_key_id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
    )
    session.add(entry)
    await session.flush()
    return entry
