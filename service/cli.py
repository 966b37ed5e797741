"""The ``dealwatch`` command. Settings are read here, once, and passed down."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from service import __version__
from service.cli_rules import match_command, rules_app
from service.exceptions import SettingsError
from service.settings import Role, Settings, config_dir, load_settings

T = TypeVar("T")

app = typer.Typer(
    name="dealwatch",
    help="Watch official and news sources for energy deals and alert the people who care.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
keys_app = typer.Typer(help="Manage admin API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
bounces_app = typer.Typer(help="Bounce and complaint reports.", no_args_is_help=True)
app.add_typer(bounces_app, name="bounces")
app.add_typer(rules_app, name="rules")
app.command("match")(match_command)

console = Console()
err_console = Console(stderr=True)


def configure_logging(settings: Settings) -> None:
    """Key=value log lines on stderr, at the configured level."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run(factory: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = load_settings()
    return asyncio.run(factory(settings))


def _version(value: bool) -> None:
    if value:
        console.print(f"dealwatch {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """dealwatch: polls sources, matches watch rules, sends digests and webhooks."""


@app.command()
def init() -> None:
    """Create or migrate the database and load the config catalogue. Safe to run again.

    Catalogue entries are upserted by id; an entry an admin changed through the API is kept.
    Webhook signing secrets not yet encrypted under DEALWATCH_SECRET_KEY (after a key rotation,
    with the old key in DEALWATCH_PREVIOUS_SECRET_KEYS) are re-encrypted.

    Example: [bold]dealwatch init[/bold]
    """
    from service.commands import initialise

    with err_console.status("migrating the database and loading the catalogue…"):
        report = _run(initialise)
    table = Table("catalogue", "created", "updated", "kept (admin-changed)", "unchanged")
    for name, part in (("sources", report.sources), ("rules", report.rules)):
        table.add_row(
            name,
            str(len(part.created)),
            str(len(part.updated)),
            str(len(part.kept)),
            str(len(part.unchanged)),
        )
    console.print(table)
    if report.resealed_endpoints:
        console.print(
            f"webhook secrets re-encrypted under the current key: "
            f"{report.resealed_endpoints} endpoint(s)"
        )
    console.print(f"database ready; catalogue read from {config_dir()}")


@app.command()
def serve(
    role: Annotated[
        str, typer.Option(help="api: HTTP only; worker: polling and delivery only; all: both.")
    ] = "all",
    host: Annotated[str | None, typer.Option(help="Address to listen on (api, all).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (api, all).")] = None,
) -> None:
    """Run the service.

    Several processes may run against one PostgreSQL; SQLite allows one worker.

    Examples:
      [bold]dealwatch serve[/bold]                       (API and worker on 127.0.0.1:8000)
      [bold]dealwatch serve --role worker[/bold]         (a worker only)
      [bold]dealwatch serve --role api --port 9000[/bold]
    """
    if role not in ("api", "worker", "all"):
        err_console.print("--role must be api, worker or all")
        raise typer.Exit(2)
    settings = load_settings()
    configure_logging(settings)
    chosen: Role = role  # type: ignore[assignment]
    if chosen == "worker":
        asyncio.run(_worker(settings))
        return
    from service.api.app import create_app

    application = create_app(settings, run_worker=chosen == "all")
    uvicorn.run(
        application,
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        forwarded_allow_ips=settings.api.forwarded_allow_ips,
    )


async def _worker(settings: Settings) -> None:
    from service.jobs.scheduler import run_worker
    from service.runtime import open_resources

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(settings) as resources:
        await run_worker(resources, stop)


@app.command()
def poll(
    source: Annotated[
        str | None, typer.Option("--source", help="Poll this source now, due or not.")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Poll what is due once and exit (default: keep going).")
    ] = False,
) -> None:
    """Poll sources, store new articles and match them against the watch rules.

    Examples:
      [bold]dealwatch poll --once[/bold]                  (every due source, once)
      [bold]dealwatch poll --source dawn-business[/bold]  (one source, now)
      [bold]dealwatch poll[/bold]                         (keep polling until Ctrl-C)
    """
    from service.commands import poll_loop, poll_once

    if source is not None or once:
        with err_console.status("polling…"):
            results = _run(lambda settings: poll_once(settings, source_id=source))
        table = Table("source", "outcome", "new", "updated", "matches", "detail")
        for result in results:
            table.add_row(
                result.source_id,
                result.outcome,
                str(result.new),
                str(result.updated),
                str(result.matches),
                result.error or "",
            )
        console.print(table)
        if source is not None and not results:
            err_console.print(f"no source with id {source!r}")
            raise typer.Exit(1)
        return
    _run(poll_loop)


@app.command("fetch")
def fetch_command(
    url: Annotated[str, typer.Argument(help="The source URL.")],
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="feed, html or json (guessed from the response if omitted)."),
    ] = None,
    selector: Annotated[
        list[str] | None,
        typer.Option(
            "--selector",
            help="Parser option KEY=VALUE (title=h2 a, date=time, items=data.results...); "
            "a bare value is the item selector. Repeat as needed.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"items": [...]} as JSON.')
    ] = False,
) -> None:
    """Preview what a source yields (title, link, published, summary) without storing it.

    Examples:
      [bold]dealwatch fetch https://tass.com/rss/v2.xml[/bold]
      [bold]dealwatch fetch https://eng.sectsco.org/news/ --kind html \\
        --selector .news__item --selector "title=.news__title" --selector date=time[/bold]
      [bold]dealwatch fetch "https://api.gdeltproject.org/api/v2/doc/doc?query=..." --json[/bold]
    """
    import json

    from service.exceptions import ServiceError
    from service.preview import parse_selectors, preview_source

    if kind is not None and kind not in {"feed", "html", "json"}:
        err_console.print(f"error: unknown kind {kind!r} (feed, html or json)")
        raise typer.Exit(1)
    try:
        options = parse_selectors(selector or [])
        items = _run(lambda settings: preview_source(settings, url, kind=kind, options=options))
    except ServiceError as exc:
        reason = " ".join(exc.message.split())
        err_console.print(f"error: {reason}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"items": [item.as_json() for item in items]}, ensure_ascii=False))
        return
    table = Table("published", "title", "link", "summary")
    for item in items:
        table.add_row(
            f"{item.published:%Y-%m-%d %H:%M}" if item.published else "",
            item.title,
            item.link or "",
            item.summary[:160],
        )
    console.print(table)


@app.command()
def digest(
    due: Annotated[
        bool, typer.Option("--due", help="Build and send every digest due now.")
    ] = False,
) -> None:
    """Build and send digests and webhooks that are due now.

    Example: [bold]dealwatch digest --due[/bold]
    """
    if not due:
        err_console.print("nothing to do: pass --due to build and send what is due now")
        raise typer.Exit(2)
    from service.commands import send_due

    with err_console.status("building and sending due digests…"):
        report = _run(send_due)
    console.print(
        f"digests planned: {report.planned}, deliveries sent: {report.delivered}, "
        f"retrying: {report.retrying}, failed: {report.failed}"
    )


@bounces_app.command("ingest")
def bounces_ingest(
    path: Annotated[
        Path | None, typer.Argument(help="A report as received; standard input if omitted.")
    ] = None,
) -> None:
    """Record a bounce (RFC 3464) or complaint (RFC 5965 ARF) report and suppress the address.

    Made for a mail server's pipe: point the VERP bounce domain's mailbox at it. A message that
    is no failure report is ignored with exit code 0, so the mail server does not bounce it.

    Example: [bold]dealwatch bounces ingest < report.eml[/bold]
    """
    from service.commands import ingest_bounce

    raw = path.read_bytes() if path is not None else sys.stdin.buffer.read()
    console.print(_run(lambda settings: ingest_bounce(settings, raw)), highlight=False)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, editor or viewer.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
) -> None:
    """Create an API key and print it once (only its hash is stored).

    Example: [bold]dealwatch keys create --role admin --name alice[/bold]
    """
    from service.commands import create_api_key
    from service.storage.keys import KEY_ROLES

    if role not in KEY_ROLES:
        err_console.print(f"--role must be one of {', '.join(KEY_ROLES)}")
        raise typer.Exit(2)
    key_id, plain = _run(lambda settings: create_api_key(settings, name=name, role=role))
    err_console.print(f"key {key_id} for {name!r} ({role}); it is shown only now:")
    console.print(plain, highlight=False)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secret part).

    Example: [bold]dealwatch keys list[/bold]
    """
    from service.commands import list_api_keys

    keys = _run(list_api_keys)
    table = Table("id", "name", "role", "prefix", "created", "last used", "revoked")
    for key in keys:
        table.add_row(
            str(key.id),
            key.name,
            key.role,
            key.prefix + "…",
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    console.print(table)


@app.command()
def sources() -> None:
    """Show every source with its health.

    Example: [bold]dealwatch sources[/bold]
    """
    from service.commands import list_source_rows

    rows = _run(list_source_rows)
    table = Table(
        "id",
        "kind",
        "tier",
        "enabled",
        "health",
        "last status",
        "failures",
        "last success",
        "items",
        "304 %",
        "last error",
    )
    for row in rows:
        style = {"failing": "red", "stale": "yellow", "ok": "green"}.get(row["health"], "")
        table.add_row(
            row["id"],
            row["kind"],
            row["tier"],
            "yes" if row["enabled"] else "no",
            f"[{style}]{row['health']}[/{style}]" if style else row["health"],
            row["last_status"] or "",
            str(row["failures"]),
            row["last_success"] or "",
            str(row["items"]),
            row["not_modified_pct"],
            (row["last_error"] or "")[:60],
        )
    console.print(table)


def main() -> Any:
    try:
        return app()
    except SettingsError as exc:
        # A mistyped setting is the operator's to fix: its name and the problem, no traceback.
        err_console.print(exc.message, markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
