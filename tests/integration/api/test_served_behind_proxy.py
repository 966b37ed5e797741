"""``dealwatch serve`` behind a reverse proxy: whom the sign-up limit counts.

uvicorn takes the client address from ``X-Forwarded-For`` only when the connecting peer is
listed in ``api.forwarded_allow_ips``. Trusted, each visitor behind the proxy gets their own
sign-up allowance; untrusted, a forged header changes nothing and every request counts
against the connecting address.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.runtime import Resources
from service.settings import Settings
from tests.support.smtp_server import free_port
from tests.support.worker_process import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _serve(
    settings: Settings, resources: Resources, tmp_path: Path, *, trusted: str
) -> tuple[WorkerProcess, str]:
    port = free_port()
    environment = {
        "DEALWATCH_DATABASE__URL": settings.database.url,
        "DEALWATCH_SECRET_KEY": resources.secret_key.decode(),
        "DEALWATCH_DATA_DIR": str(tmp_path),
        "DEALWATCH_PUBLIC_BASE_URL": "http://dealwatch.test",
        "DEALWATCH_SMTP__HOST": "127.0.0.1",
        "DEALWATCH_SMTP__PORT": "1",
        "DEALWATCH_API__SIGNUP_LIMIT": "1",
        "DEALWATCH_API__FORWARDED_ALLOW_IPS": trusted,
    }
    process = WorkerProcess(
        environment,
        tmp_path / f"api-{port}.log",
        ("serve", "--role", "api", "--host", "127.0.0.1", "--port", str(port)),
    )
    process.start()
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_for(ready, within=30, what="the API to listen")
    except AssertionError:
        process.stop()
        raise AssertionError(process.log()) from None
    return process, base


async def _sign_up(base: str, email: str, visitor: str) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{base}/subscribe",
            json={"email": email},
            headers={"X-Forwarded-For": visitor},
        )
    return response.status_code


async def test_a_trusted_proxy_gives_each_visitor_their_own_allowance(
    settings: Settings, resources: Resources, tmp_path: Path
) -> None:
    process, base = await _serve(settings, resources, tmp_path, trusted="127.0.0.1")
    try:
        first = await _sign_up(base, "a@example.org", "203.0.113.1")
        assert first != 429
        assert await _sign_up(base, "b@example.org", "203.0.113.1") == 429
        assert await _sign_up(base, "c@example.org", "203.0.113.2") == first
    finally:
        process.stop()


async def test_an_untrusted_peer_cannot_forge_its_address(
    settings: Settings, resources: Resources, tmp_path: Path
) -> None:
    process, base = await _serve(settings, resources, tmp_path, trusted="192.0.2.10")
    try:
        assert await _sign_up(base, "a@example.org", "203.0.113.1") != 429
        assert await _sign_up(base, "b@example.org", "203.0.113.2") == 429
    finally:
        process.stop()
