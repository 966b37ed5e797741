"""What the CLI commands do, as async functions taking the settings (tests call these)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from alerts.bounces import parse_bounce
from service.catalogue import SyncReport, load_catalogue_files, sync_rules, sync_sources
from service.db.migrate import upgrade_to_head
from service.db.models import ApiKey, Source
from service.runtime import open_resources, system_clock
from service.settings import Settings, config_dir
from service.storage.bounces import input_from_report, record_bounce
from service.storage.keys import create_key, list_keys
from service.storage.recipients import reseal_endpoint_secrets


@dataclass(frozen=True)
class InitReport:
    sources: SyncReport
    rules: SyncReport
    resealed_endpoints: int


async def initialise(settings: Settings) -> InitReport:
    """Migrate, load the catalogue, encrypt signing secrets under the current key. Idempotent."""
    if settings.database.url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    source_defs, rule_defs = load_catalogue_files(config_dir())
    async with open_resources(settings) as resources:
        await upgrade_to_head(resources.engine)
        now = resources.clock()
        async with resources.sessionmaker() as session:
            sources = await sync_sources(session, source_defs, now=now)
            rules = await sync_rules(session, rule_defs, now=now)
            resealed = await reseal_endpoint_secrets(session, resources.secret_box)
            await session.commit()
    return InitReport(sources=sources, rules=rules, resealed_endpoints=resealed)


async def create_api_key(settings: Settings, *, name: str, role: str) -> tuple[int, str]:
    async with open_resources(settings) as resources, resources.sessionmaker() as session:
        key, plain = await create_key(session, name=name, role=role, now=system_clock())
        await session.commit()
        return key.id, plain


async def list_api_keys(settings: Settings) -> list[ApiKey]:
    async with open_resources(settings) as resources, resources.sessionmaker() as session:
        return await list_keys(session)


async def list_source_rows(settings: Settings) -> list[dict[str, Any]]:
    async with open_resources(settings) as resources, resources.sessionmaker() as session:
        rows = (await session.execute(select(Source).order_by(Source.id))).scalars()
        out = []
        for source in rows:
            pct = (
                f"{100 * source.polls_not_modified / source.polls_total:.0f}"
                if source.polls_total
                else "-"
            )
            out.append(
                {
                    "id": source.id,
                    "kind": source.kind,
                    "tier": source.tier,
                    "enabled": source.enabled,
                    "health": source.health,
                    "last_status": source.last_status,
                    "failures": source.consecutive_failures,
                    "last_success": (
                        f"{source.last_success_at:%Y-%m-%d %H:%M}"
                        if source.last_success_at
                        else None
                    ),
                    "items": source.items_seen,
                    "not_modified_pct": pct,
                    "last_error": source.last_error,
                }
            )
        return out


async def poll_once(settings: Settings, *, source_id: str | None) -> list[Any]:
    from service.jobs.poll import Poller

    async with open_resources(settings) as resources:
        poller = Poller(resources)
        if source_id is not None:
            result = await poller.poll_source_now(source_id)
            return [] if result is None else [result]
        return await poller.poll_due()


async def poll_loop(settings: Settings) -> None:
    from service.jobs.poll import Poller

    async with open_resources(settings) as resources:
        poller = Poller(resources)
        while True:
            await poller.poll_due()
            await asyncio.sleep(settings.poll.tick_seconds)


async def send_due(settings: Settings) -> Any:
    from service.jobs.digests import run_due_deliveries

    async with open_resources(settings) as resources:
        return await run_due_deliveries(resources)


async def ingest_bounce(settings: Settings, raw: bytes) -> str:
    """Record one bounce or complaint report as received; return what it did, in words."""
    report = input_from_report(parse_bounce(raw))
    if isinstance(report, str):
        return f"ignored: {report}"
    async with open_resources(settings) as resources, resources.sessionmaker() as session:
        event = await record_bounce(session, report, now=resources.clock())
        await session.commit()
        return f"{event.kind} bounce for {event.email or '?'}: {event.action}"
