"""The ``dealwatch`` command against a real database and local servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from service.cli import app
from service.demo import run_demo
from service.runtime import Resources
from tests.support.http_server import LocalHTTPServer, Response

pytestmark = pytest.mark.integration

FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    b"<item><guid>1</guid><title>Pakistan and Russia sign an oil deal</title>"
    b"<link>https://example.org/1</link></item></channel></rss>"
)


@pytest.fixture
def env(resources: Resources, tmp_path: Path) -> dict[str, str]:
    return {
        "DEALWATCH_DATABASE__URL": resources.settings.database.url,
        "DEALWATCH_DATA_DIR": str(tmp_path),
        "DEALWATCH_HTTP__ALLOW_LOOPBACK": "true",
        "DEALWATCH_HTTP__MIN_HOST_INTERVAL_SECONDS": "0",
        "COLUMNS": "250",
    }


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def feed_server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as server:
        server.route("/feed", Response(body=FEED))
        yield server


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("dealwatch ")


def test_every_command_has_help_with_an_example(runner: CliRunner) -> None:
    root = get_command(app)
    paths: list[list[str]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            paths.extend([name, sub] for sub in subcommands)
        else:
            paths.append([name])
    assert ["init"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, path
        assert "Example" in result.output, f"{' '.join(path)} --help has no example"


def test_init_is_idempotent(runner: CliRunner, env: dict[str, str]) -> None:
    first = runner.invoke(app, ["init"], env=env, terminal_width=200)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["init"], env=env, terminal_width=200)
    assert second.exit_code == 0, second.output
    sources_row = next(line for line in second.output.splitlines() if "sources" in line)
    assert sources_row.split("│")[2].strip() == "0"  # nothing created the second time
    listing = runner.invoke(app, ["sources"], env=env, terminal_width=250)
    assert listing.exit_code == 0
    assert "kremlin-en" in listing.output


def test_keys_are_shown_once(runner: CliRunner, env: dict[str, str]) -> None:
    created = runner.invoke(app, ["keys", "create", "--role", "admin", "--name", "alice"], env=env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("dwk_")
    listing = runner.invoke(app, ["keys", "list"], env=env, terminal_width=200)
    assert "alice" in listing.output
    assert key not in listing.output
    bad = runner.invoke(app, ["keys", "create", "--role", "root", "--name", "x"], env=env)
    assert bad.exit_code == 2


def test_poll_one_source_and_send_due_digests(
    runner: CliRunner, env: dict[str, str], feed_server: LocalHTTPServer, tmp_path: Path
) -> None:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    (catalogue / "defaults.toml").write_text("")
    (catalogue / "sources.toml").write_text(
        f'[[source]]\nid = "local"\nname = "Local"\nurl = "{feed_server.url("/feed")}"\n'
    )
    (catalogue / "rules.toml").write_text(
        '[[rule]]\nid = "pk-ru"\nname = "PK RU"\nquery = "Pakistan Russia oil"\n'
    )
    env = {**env, "DEALWATCH_CONFIG_DIR": str(catalogue)}
    assert runner.invoke(app, ["init"], env=env).exit_code == 0

    missing = runner.invoke(app, ["poll", "--source", "nope"], env=env)
    assert missing.exit_code == 1
    polled = runner.invoke(app, ["poll", "--source", "local"], env=env, terminal_width=200)
    assert polled.exit_code == 0, polled.output
    row = next(line for line in polled.output.splitlines() if "local" in line)
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["local", "ok", "1", "0", "1"]
    assert len(feed_server.requests_for("/feed")) == 1

    assert runner.invoke(app, ["digest"], env=env).exit_code == 2
    sent = runner.invoke(app, ["digest", "--due"], env=env)
    assert sent.exit_code == 0, sent.output
    assert "digests planned: 0" in sent.output


async def test_demo_delivers_a_digest(tmp_path: Path) -> None:
    message = await run_demo(tmp_path)
    assert message is not None
    text = message.get_body(("plain",))
    assert text is not None
    assert "Pakistan Stream Gas Pipeline" in text.get_content()
    assert "cricket" not in text.get_content()
