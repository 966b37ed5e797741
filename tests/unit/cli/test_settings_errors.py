"""A bad setting stops the CLI with the setting's name, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.exceptions import SettingsError
from service.settings import load_settings


def test_load_settings_names_every_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALWATCH_DELIVERY__RETRY_SCHEDULE_SECONDS", "[5, 0]")
    monkeypatch.setenv("DEALWATCH_DELIVERY__RETRY_JITTER", "3")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = refused.value.message
    assert message.startswith("invalid settings: ")
    assert "delivery.retry_schedule_seconds.1: Input should be greater than or equal to 1" in (
        message
    )
    assert "delivery.retry_jitter: Input should be less than or equal to 1" in message


def test_the_cli_exits_2_with_a_one_line_reason(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        DEALWATCH_DELIVERY__RETRY_SCHEDULE_SECONDS="[5, 0]",
        # This checkout's code, whichever checkout the virtualenv was installed from.
        PYTHONPATH=str(Path(__file__).resolve().parents[3]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "sources"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "invalid settings: delivery.retry_schedule_seconds.1: "
        "Input should be greater than or equal to 1"
    ]
    assert "Traceback" not in done.stdout + done.stderr
