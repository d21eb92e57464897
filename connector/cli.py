"""`email-connector`: run, check, status, replicas, quarantine, demo, sandbox-iwd, schema.

Exit codes: 0 ok, 1 a mailbox or IWD failed, 2 bad configuration (message names file and field).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from connector.config import ConnectorSettings
from connector.errors import ConnectorError
from connector.logs import LOG_LEVELS, SecretRedactor, configure, secret_values
from connector.ops_cli import ConfigOption, out, quarantine_app, status_command
from connector.ops_cli import load_settings as _load
from connector.runtime.replicas_cli import replicas_command
from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"'{value}' is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


@app.command()
def run(
    config: ConfigOption,
    once: Annotated[
        bool, typer.Option("--once", help="One cycle per mailbox, send the replies that are due, then exit")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error", callback=_log_level)] = "info",
) -> None:
    """Run the daemon until SIGTERM/SIGINT (finishes the current message, commits, exits 0)."""
    settings = _load(config)
    redactor = SecretRedactor(secret_values(settings))
    configure(redactor, level=log_level)
    code = asyncio.run(_run(settings, once, config_path=config, redactor=redactor))
    raise typer.Exit(code)


async def _run(
    settings: ConnectorSettings,
    once: bool,
    *,
    config_path: Path | None = None,
    redactor: SecretRedactor | None = None,
) -> int:
    from connector.runtime.app import run_once, runtime, serve_until_signalled
    from connector.runtime.fd_limit import apply_fd_limit
    from connector.runtime.sqlite_guard import StoreInUse, sqlite_guard

    apply_fd_limit(settings)  # before any mailbox connects

    guard = sqlite_guard(settings.store.url)  # SQLite: this daemon alone, for its whole life
    try:
        if guard is not None:
            guard.acquire()
    except StoreInUse as exc:
        typer.echo(f"{exc.code}: {exc}", err=True)
        return 2
    try:
        async with runtime(settings, config_path=config_path, redactor=redactor) as rt:
            daemon = rt.daemon()
            if once:
                return 0 if await run_once(daemon) else 1
            await serve_until_signalled(daemon)
            return 0
    except ConnectorError as exc:
        typer.echo(f"{exc.code}: {exc}", err=True)
        return 1
    finally:
        if guard is not None:
            guard.release()


@app.command()
def check(config: ConfigOption) -> None:
    """Validate the configuration, reach IWD and every mailbox; print a verdict per mailbox."""
    settings = _load(config)
    ok = asyncio.run(_check(settings))
    raise typer.Exit(0 if ok else 1)


async def _check(settings: ConnectorSettings) -> bool:
    from connector.iwd.client import IWDClient
    from connector.runtime.app import check_mailbox

    table = Table(title="email-connector check")
    for column in ("target", "provider", "verdict", "detail"):
        table.add_column(column)
    all_ok = True
    try:
        async with IWDClient(settings.iwd) as iwd:
            await iwd.ping()
        table.add_row("IWD", settings.iwd.url, "[green]ok[/]", f"ccid {settings.iwd.ccid}")
    except ConnectorError as exc:
        all_ok = False
        table.add_row("IWD", settings.iwd.url, "[red]FAIL[/]", f"{exc.code}: {exc}")
    verdicts = await asyncio.gather(*(check_mailbox(box) for box in settings.mailboxes))
    for verdict in verdicts:
        all_ok &= verdict.ok
        mark = "[green]ok[/]" if verdict.ok else "[red]FAIL[/]"
        table.add_row(verdict.mailbox_id, verdict.provider, mark, verdict.detail)
    out.print(table)
    return all_ok


@app.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="Deliver the samples, print them, exit")] = False,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its data")] = Path(
        "demo-data"
    ),
    port: Annotated[int, typer.Option(help="Sandbox IWD port (a free one if taken)")] = 4024,
) -> None:
    """The embedded default: SQLite store, in-process sandbox IWD, a Maildir seeded with samples."""
    from connector.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(directory, port=port, once=once, console=out)))


@app.command("sandbox-iwd")
def sandbox_iwd(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 4024,
    db: Annotated[Path, typer.Option(help="SQLite file for items")] = Path("sandbox-iwd.db"),
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 inside a container, to publish the port)")
    ] = "127.0.0.1",
    api_key: Annotated[
        str, typer.Option(envvar="SANDBOX_IWD_API_KEY", help="Expected x-api-key")
    ] = DEFAULT_API_KEY,
    ccid: Annotated[str, typer.Option(help="Expected x-ccid")] = DEFAULT_CCID,
) -> None:
    """Serve the sandbox IWD (the documented IWD email API profile) until Ctrl-C."""
    from connector.sandbox import serve

    serve(port=port, db=str(db), api_key=api_key, ccid=ccid, host=host)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
) -> None:
    """Print the configuration's JSON Schema (config/schema.json is generated with this)."""
    text = json.dumps(ConnectorSettings.model_json_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


app.command("status")(status_command)
app.command("replicas")(replicas_command)
app.add_typer(quarantine_app, name="quarantine")


def main() -> None:
    app()
