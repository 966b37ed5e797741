"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service import __version__
from service.api.errors import document_problems, install_error_handlers
from service.api.public import RateLimiter, public_router
from service.api.routes import admin_router
from service.api.webhook_docs import document_webhooks
from service.metrics import REGISTRY, publish_state
from service.runtime import Resources, open_resources
from service.settings import Settings
from service.storage.stats import state_counts

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
The admin API of dealwatch. Authenticate with `Authorization: Bearer <key>` (a key from
`dealwatch keys create` or `POST /keys`). Roles: `viewer` reads sources, rules, articles,
stories and matches; `editor` also changes sources and rules; `admin` does everything,
including subscribers, endpoints, subscriptions, deliveries, keys and the audit log. Each
operation names its least role in `x-required-role`.

Errors are RFC 9457 problem details (`application/problem+json`). Lists are pages
(`items`, `total`, `limit`, `offset`) in a stable order. Sources, rules, subscribers,
endpoints and subscriptions carry an `ETag`; send it back in `If-Match` to change or delete
them (428 without it, 412 when someone else changed the resource first).
"""

# Operations answering without a key say so; every other one names its least role
# (``x-required-role``), and the permission test fails for an operation that does neither.
PUBLIC: dict[str, Any] = {"x-public": True}

TAGS = [
    {"name": "sources", "description": "What is polled."},
    {"name": "rules", "description": "Watch rules, their versions, validation and preview."},
    {"name": "articles", "description": "Collected articles."},
    {"name": "stories", "description": "Articles grouped by the news they report."},
    {"name": "matches", "description": "Articles that matched a rule."},
    {"name": "subscribers", "description": "People who receive e-mail digests."},
    {"name": "endpoints", "description": "Webhook receivers and their signing secrets."},
    {"name": "subscriptions", "description": "Who receives which rules, and when."},
    {"name": "deliveries", "description": "Sent and pending digests and webhooks."},
    {
        "name": "bounces",
        "description": "Bounce and complaint reports, and the suppressions they caused.",
    },
    {"name": "keys", "description": "Admin API keys."},
    {"name": "audit", "description": "Who changed what."},
    {"name": "health", "description": "Probes and metrics (no key needed)."},
]


def create_app(
    settings: Settings,
    *,
    resources: Resources | None = None,
    run_worker: bool = False,
) -> FastAPI:
    """Build the app.

    Args:
        settings: read once by the caller.
        resources: already-open resources (tests); otherwise the lifespan opens them.
        run_worker: also run the polling/delivery ticker in this process (role ``all``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if resources is not None:
            async with _maybe_worker(resources, run_worker):
                yield {"resources": resources}
            return
        async with open_resources(settings) as opened, _maybe_worker(opened, run_worker):
            yield {"resources": opened}

    app = FastAPI(
        title="dealwatch",
        version=__version__,
        summary="Watches official and news sources for energy deals and alerts people.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(admin_router)

    app.include_router(
        public_router(
            RateLimiter(
                limit=settings.api.signup_limit,
                window=timedelta(minutes=settings.api.signup_window_minutes),
            )
        )
    )
    document_webhooks(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=API_DESCRIPTION,
                    routes=app.routes,
                    webhooks=app.webhooks.routes,
                    tags=TAGS,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"], openapi_extra=PUBLIC)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "database unreachable"}},
        openapi_extra=PUBLIC,
    )
    async def readyz(request: Request) -> JSONResponse:
        """The database answers."""
        res: Resources = request.state.resources
        try:
            async with res.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # the readiness probe reports any failure, it never raises
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["health"], response_class=Response, openapi_extra=PUBLIC)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: this process's counters, and state counts from the database."""
        res: Resources = request.state.resources
        try:
            async with res.sessionmaker() as session:
                counts = await state_counts(session, now=res.clock())
        except Exception:  # a scrape must still answer with the process metrics
            log.warning("state counts unavailable for /metrics", exc_info=True)
        else:
            publish_state(
                sources=counts.sources,
                subscribers=counts.subscribers,
                queued=counts.queued,
                overdue_seconds=counts.overdue_seconds,
            )
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app


@asynccontextmanager
async def _maybe_worker(resources: Resources, enabled: bool) -> AsyncIterator[None]:
    if not enabled:
        yield
        return
    from service.jobs.scheduler import running_scheduler

    async with running_scheduler(resources):
        yield
