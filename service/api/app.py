"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service import __version__
from service.api.public import public_router
from service.api.webhook_docs import document_webhooks
from service.metrics import REGISTRY
from service.runtime import Resources, open_resources
from service.settings import Settings


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

    app.include_router(public_router())
    document_webhooks(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "database unreachable"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database answers."""
        res: Resources = request.state.resources
        try:
            async with res.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # the readiness probe reports any failure, it never raises
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics."""
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
