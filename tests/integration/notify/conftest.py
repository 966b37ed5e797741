from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from service.notify.webhook import generate_secret
from tests.support.smtp_server import LocalCertificate, SmtpServer, make_certificate, running
from tests.support.webhook_receiver import WebhookReceiver, serve


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running(SmtpServer())


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    made = make_certificate(Path(tmp_path_factory.mktemp("tls")))
    if made is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return made


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with serve(WebhookReceiver(generate_secret())) as running_receiver:
        yield running_receiver


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client
