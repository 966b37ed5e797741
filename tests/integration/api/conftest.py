"""Fixtures for the admin API tests: the real app on the test's database, one key per role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.runtime import Resources
from service.storage.keys import create_key
from tests.support.app import api_client


@pytest.fixture
async def client(resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(resources) as opened:
        yield opened


@pytest.fixture
async def keys(resources: Resources) -> dict[str, str]:
    """A plain key for each role: ``admin``, ``editor``, ``viewer``."""
    plain: dict[str, str] = {}
    async with resources.sessionmaker() as session:
        for role in ("admin", "editor", "viewer"):
            _, plain[role] = await create_key(
                session, name=f"{role}-key", role=role, now=resources.clock()
            )
        await session.commit()
    return plain


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return bearer(keys["admin"])


@pytest.fixture
def editor(keys: dict[str, str]) -> dict[str, str]:
    return bearer(keys["editor"])


@pytest.fixture
def viewer(keys: dict[str, str]) -> dict[str, str]:
    return bearer(keys["viewer"])
