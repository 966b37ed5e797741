"""The HTTP baseline: health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import dataclasses

import pytest

from service.db.session import make_engine
from service.runtime import Resources
from service.settings import DatabaseSettings
from tests.support.app import api_client

pytestmark = pytest.mark.integration


async def test_health_readiness_metrics_and_docs(resources: Resources) -> None:
    async with api_client(resources) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok"})

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "dealwatch_polls_total" in metrics.text

        spec = (await client.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.1")
        assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
        assert (await client.get("/docs")).status_code == 200


async def test_readyz_reports_an_unreachable_database(resources: Resources) -> None:
    url = resources.engine.url
    if url.get_backend_name() == "sqlite":
        url = url.set(database="/nonexistent/folder/dealwatch.db")
    else:
        url = url.set(port=1)
    engine = make_engine(DatabaseSettings(url=url.render_as_string(hide_password=False)))
    try:
        async with api_client(dataclasses.replace(resources, engine=engine)) as client:
            ready = await client.get("/readyz")
    finally:
        await engine.dispose()
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
