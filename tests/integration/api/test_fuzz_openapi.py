"""Schemathesis against the app in-process: no 5xx, every response as documented.

The app runs on schemathesis's own event loop (its ASGI client starts the lifespan), so this
test is synchronous and prepares the database itself. Names in URLs resolve to 127.0.0.1
through ``app.state.url_resolver``: the fuzzer must not send DNS queries anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import async_sessionmaker

from service.api.app import create_app
from service.db.session import make_engine
from service.settings import Settings
from service.storage.keys import create_key
from tests.support.clock import FakeClock
from tests.support.database import empty_all_tables

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Polling fetches the fuzzed URL with the real resolver; it is covered by the sources tests.
NOT_FUZZED = r"^/sources/\{source_id\}/poll$"
EXAMPLES = 25

# POST /bounces takes reports as received: real ones, their truncations and noise.
_REPORTS = [
    path.read_bytes() for path in sorted((Path(__file__).parents[2] / "data" / "bounces").iterdir())
]
schemathesis.openapi.media_type(
    "message/rfc822",
    st.one_of(
        st.sampled_from(_REPORTS),
        st.tuples(st.sampled_from(_REPORTS), st.integers(0, 4000)).map(lambda t: t[0][: t[1]]),
        st.binary(max_size=2000),
    ),
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _loopback(host: str, port: int) -> Sequence[str]:
    return ["127.0.0.1"]


async def _prepare(app_settings: Settings) -> str:
    engine = make_engine(app_settings.database)
    try:
        await empty_all_tables(engine)
        async with async_sessionmaker(engine)() as session:
            _, plain = await create_key(session, name="fuzzer", role="admin", now=FakeClock()())
            await session.commit()
    finally:
        await engine.dispose()
    return plain


@pytest.fixture
def fuzz_key(settings: Settings) -> str:
    return asyncio.run(_prepare(settings))


def test_no_server_error_and_responses_match_the_schema(settings: Settings, fuzz_key: str) -> None:
    app = create_app(settings)
    app.state.url_resolver = _loopback
    api = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex=NOT_FUZZED)
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    fuzzed = 0
    for result in api.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            positive = case.meta is None or case.meta.generation.mode.is_positive
            checks = CHECKS if positive else [*CHECKS, negative_data_rejection]
            # A negative case may drop the required Authorization header on purpose: adding
            # our key back would turn it into a valid request that is then "wrongly" accepted.
            keep_out = not positive and "Authorization" not in (case.headers or {})
            case.call_and_validate(headers={} if keep_out else headers, checks=checks)

        call()
        fuzzed += 1
    assert fuzzed >= 30
