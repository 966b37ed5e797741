"""Fixtures for tests that use real local servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.smtp_server import SmtpServer, running


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts."""
    yield from running(SmtpServer())
