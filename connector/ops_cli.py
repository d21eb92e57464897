"""`email-connector status` and `email-connector quarantine ...`: the admin page's facts in a terminal.

Both ask the running daemon first (its local HTTP API at http.host:port); when it does not answer
they read the store directly and say so, so an administrator gets an answer either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import sys
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from connector.config import ConnectorSettings, load_config
from connector.errors import ConfigError, ConnectorError
from connector.secrets import UNRESOLVED, secrets_optional
from connector.store.types import QuarantineEntry, Store

out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="YAML configuration file")]
ACTION_HEADERS = {"x-connector-action": "1"}
T = TypeVar("T")

quarantine_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Quarantined mail: list, show, retry, export"
)


def load_settings(path: Path, *, read_only: bool = False) -> ConnectorSettings:
    """The configuration, or exit 2 with the message naming file and field (shared by every command).
    `read_only` (status, quarantine list/show/export): a secret that cannot be resolved is not an
    error, since these commands read only the store and the daemon's API."""
    try:
        if read_only:
            with secrets_optional():
                return load_config(path)
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"configuration error\n{exc}", err=True)
        raise typer.Exit(2) from None


def run_or_exit(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with a ConnectorError (store unreachable...) as a message and exit 1, no traceback."""
    try:
        return asyncio.run(coro)
    except ConnectorError as exc:
        typer.echo(f"{exc.code}: {exc}", err=True)
        raise typer.Exit(1) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    """The daemon's JSON answer; a non-JSON one (a proxy's error page...) becomes {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def daemon_base_url(settings: ConnectorSettings) -> str:
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http.port}"


def _daemon(settings: ConnectorSettings) -> httpx.Client:
    headers = {}
    if settings.http.token is not None and settings.http.token.get_secret_value() != UNRESOLVED:
        headers["authorization"] = f"Bearer {settings.http.token.get_secret_value()}"
    return httpx.Client(base_url=daemon_base_url(settings), headers=headers, timeout=5.0, trust_env=False)


def fetch_status(settings: ConnectorSettings) -> dict[str, Any] | None:
    """The running daemon's /api/v1/status, or None when no daemon answers."""
    if not settings.http.enabled:
        return None
    try:
        with _daemon(settings) as client:
            response = client.get("/api/v1/status")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        typer.echo(f"the daemon answered HTTP {response.status_code}: {response.text[:200]}", err=True)
        return None
    body = _json(response)
    return body or None


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    seconds = max((datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds(), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 5400 else f"{seconds / 3600:.1f} h ago"


def status_table(doc: dict[str, Any]) -> Table:
    """The admin page's table, for a terminal."""
    table = Table(title="email-connector status")
    for column in (
        "mailbox",
        "inbound",
        "outbound",
        "last success",
        "lag",
        "backlog",
        "quarantine",
        "delivered",
        "last error",
        "owner",
    ):
        table.add_column(column)
    for box in doc.get("mailboxes", []):
        inbound, outbound = box["inbound"], box["outbound"]
        err = inbound.get("lastError")
        lag = inbound.get("lagSeconds")
        table.add_row(
            box["mailboxId"] + (" (paused)" if box.get("paused") else ""),
            _state(inbound),
            outbound["state"],
            _ago(inbound.get("lastSuccessAt")),
            "-" if lag is None else f"{lag:.1f} s",
            str(inbound.get("backlog", 0)),
            str(inbound.get("quarantined", 0)),
            str(inbound.get("deliveredTotal", 0)),
            f"{err['code']}: {err['message']}" if err else "-",
            box.get("owner") or "-",
        )
    return table


def _state(direction: dict[str, Any]) -> str:
    """The state, and for an outage whose it is and since when: `degraded (iwd since 12 s ago)`."""
    err = direction.get("lastError") or {}
    if direction["state"] == "degraded" and err.get("peer"):
        return f"{direction['state']} ({err['peer']} since {_ago(err.get('since'))})"
    return str(direction["state"])


class NoStoreYet(ConnectorError):
    code = "no_store"


def missing_store_file(url: str) -> Path | None:
    """The SQLite file a URL names when it does not exist (opening it would create an empty one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


@contextlib.asynccontextmanager
async def _store(settings: ConnectorSettings, *, read_only: bool = True) -> AsyncIterator[Store]:
    """The store; a read creates nothing: a missing SQLite file is NoStoreYet, not a new database."""
    from connector.store import open_store

    missing = missing_store_file(settings.store.url) if read_only else None
    if missing is not None:
        raise NoStoreYet(f"no store at {missing} yet (nothing has been delivered or quarantined)")
    store = await open_store(settings.store.url)
    try:
        yield store
    finally:
        await store.close()


async def _offline_status(settings: ConnectorSettings) -> dict[str, Any]:
    if missing_store_file(settings.store.url) is not None:  # nothing delivered yet: all zero
        empty = {"state": "unknown", "backlog": 0, "quarantined": 0, "deliveredTotal": 0}
        rows = [
            {"mailboxId": b.id, "inbound": empty, "outbound": {"state": "unknown"}}
            for b in settings.mailboxes
        ]
        return {"running": False, "mailboxes": rows}
    async with _store(settings) as store:
        boxes = []
        for box in settings.mailboxes:
            delivered = await store.ledger_count_items(box.id)
            quarantined = await store.quarantine_count(box.id)
            unknown = {
                "state": "unknown",
                "backlog": 0,
                "quarantined": quarantined,
                "deliveredTotal": delivered,
            }
            boxes.append({"mailboxId": box.id, "inbound": unknown, "outbound": {"state": "unknown"}})
    return {"running": False, "mailboxes": boxes}


def status_command(config: ConfigOption) -> None:
    """Every mailbox's state, last success, lag, backlog, quarantine and last error (from the daemon)."""
    settings = load_settings(config, read_only=True)
    doc = fetch_status(settings)
    if doc is None:
        out.print(
            f"[yellow]the daemon is not running[/] (nothing answers at {daemon_base_url(settings)}): "
            "quarantine and delivery counts below come from the store; states are unknown"
        )
        doc = run_or_exit(_offline_status(settings))
    out.print(status_table(doc))
    bad = [b for b in doc["mailboxes"] if b["inbound"]["state"] not in ("ok", "disabled", "unknown")]
    raise typer.Exit(1 if bad else 0)


# ---------------------------------------------------------------- quarantine


def message_summary(raw: bytes) -> dict[str, str]:
    headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    return {name: str(headers.get(name, "")) for name in ("From", "Subject", "Date", "Message-ID")}


def size_text(entry: QuarantineEntry) -> str:
    text = f"{entry.message.size} bytes"
    if entry.headers_only:
        text += f" (oversize: only the {len(entry.raw)}-byte header block is kept)"
    return text


async def _entries(settings: ConnectorSettings, mailbox: str | None) -> list[QuarantineEntry]:
    async with _store(settings) as store:
        return await store.quarantine_list(mailbox)


async def _entry(settings: ConnectorSettings, entry_id: int) -> QuarantineEntry:
    async with _store(settings) as store:
        entry = await store.quarantine_get(entry_id)
    if entry is None:
        typer.echo(f"no quarantine entry {entry_id} (see `email-connector quarantine list`)", err=True)
        raise typer.Exit(1)
    return entry


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOption,
    mailbox: Annotated[str | None, typer.Option(help="Only this mailbox")] = None,
) -> None:
    """Unresolved quarantine entries, oldest first."""
    settings = load_settings(config, read_only=True)
    if missing_store_file(settings.store.url) is not None:
        out.print(f"quarantine (0): no store at {missing_store_file(settings.store.url)} yet")
        return
    entries = run_or_exit(_entries(settings, mailbox))
    table = Table(title=f"quarantine ({len(entries)})")
    for column in ("id", "mailbox", "folder", "provider id", "attempts", "first seen", "subject", "error"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            str(e.id),
            e.mailbox_id,
            e.folder,
            e.provider_id,
            str(e.attempts),
            e.first_seen_at.isoformat(timespec="seconds"),
            message_summary(e.raw)["Subject"][:60],
            e.error[:100],
        )
    out.print(table)


@quarantine_app.command("show")
def quarantine_show(config: ConfigOption, entry_id: Annotated[int, typer.Argument(help="Entry id")]) -> None:
    """One entry: where it came from, why it is held, its main headers."""
    entry = run_or_exit(_entry(load_settings(config, read_only=True), entry_id))
    facts = {
        "id": str(entry.id),
        "mailbox": entry.mailbox_id,
        "folder": entry.folder,
        "provider id": entry.provider_id,
        "attempts": str(entry.attempts),
        "first seen": entry.first_seen_at.isoformat(),
        "last attempt": entry.last_attempt_at.isoformat(),
        "received": entry.internal_date.isoformat() if entry.internal_date else "unknown",
        "size": size_text(entry),
        "error": entry.error,
        **message_summary(entry.raw),
    }
    for key, value in facts.items():
        out.print(f"[bold]{key}:[/] {value}", highlight=False, markup=True)


@quarantine_app.command("export")
def quarantine_export(
    config: ConfigOption,
    entry_id: Annotated[int, typer.Argument(help="Entry id")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the raw .eml")],
) -> None:
    """Writes the message exactly as it was fetched (the raw .eml)."""
    entry = run_or_exit(_entry(load_settings(config, read_only=True), entry_id))
    output.write_bytes(entry.raw)
    out.print(f"wrote {len(entry.raw)} bytes to {output}")


async def _retry_locally(settings: ConnectorSettings, entry: QuarantineEntry) -> bool:
    from connector.iwd.client import IWDClient
    from connector.sync.pipeline import MailboxSync
    from providers.registry import build_inbound

    box = settings.mailbox(entry.mailbox_id)
    async with _store(settings) as store, IWDClient(settings.iwd) as iwd:
        provider = build_inbound(box)
        try:
            sync = MailboxSync(
                box, provider, store, iwd, quarantine_max_attempts=settings.quarantine_max_attempts
            )
            return await sync.retry_quarantined(entry)
        finally:
            with contextlib.suppress(Exception):
                await provider.close()


def _retry_through_daemon(settings: ConnectorSettings, entry: QuarantineEntry) -> bool | None:
    """True/False from the running daemon; None only when no daemon answers (connection error)."""
    if not settings.http.enabled:
        return None
    try:
        with _daemon(settings) as client:
            response = client.post(
                f"/api/v1/mailboxes/{entry.mailbox_id}/retry-quarantine",
                params={"entry": entry.id},
                headers=ACTION_HEADERS,
            )
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return None  # nothing listens: the caller retries locally
    except httpx.HTTPError as exc:
        why = type(exc).__name__
        typer.echo(f"the running daemon did not answer the retry ({why}); not retrying here", err=True)
        raise typer.Exit(1) from None
    body = _json(response)
    if response.status_code != 200:
        why = body.get("message") or response.text[:200]
        typer.echo(f"the running daemon refused (HTTP {response.status_code}): {why}", err=True)
        raise typer.Exit(1)
    return bool(body.get("delivered", 0))


@quarantine_app.command("retry")
def quarantine_retry(config: ConfigOption, entry_id: Annotated[int, typer.Argument(help="Entry id")]) -> None:
    """Retries one entry now: through the running daemon (under the mailbox's lock), else locally."""
    settings = load_settings(config)
    entry = run_or_exit(_entry(settings, entry_id))
    ok = _retry_through_daemon(settings, entry)
    if ok is None:
        out.print("[yellow]the daemon is not running[/]: retrying in this process")
        try:
            ok = asyncio.run(_retry_locally(settings, entry))
        except (ConnectorError, KeyError) as exc:
            typer.echo(f"retry failed: {exc}", err=True)
            raise typer.Exit(1) from None
    out.print(
        f"entry {entry_id}: " + ("delivered to IWD" if ok else "still quarantined (see `quarantine show`)")
    )
    raise typer.Exit(0 if ok else 1)
