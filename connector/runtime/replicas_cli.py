"""`email-connector replicas`: the live replicas and the mailboxes each holds, as a table.

Asks the local daemon (`GET /api/v1/replicas`); when none answers, reads the PostgreSQL store
directly, since the leases live there and any machine that reaches it can tell.
"""

from __future__ import annotations

from typing import Any

import httpx
import typer
from rich.table import Table

from connector.ops_cli import ConfigOption, _daemon, _json, load_settings, out, run_or_exit
from connector.runtime.visibility import read_replicas
from connector.store.leases import SqlLeases
from connector.store.sql import SqlStore

MAILBOXES_SHOWN = 12


def _from_daemon(config: ConfigOption) -> dict[str, Any] | None:
    settings = load_settings(config)
    if not settings.http.enabled:
        return None
    try:
        with _daemon(settings) as client:
            response = client.get("/api/v1/replicas")
    except httpx.HTTPError:
        return None
    return _json(response) if response.status_code == 200 else None


async def _from_store(url: str) -> dict[str, Any] | None:
    store = await SqlStore.open(url)
    try:
        if store.dialect != "postgresql":
            return None
        return await read_replicas(SqlLeases(store))
    finally:
        await store.close()


def replicas_table(doc: dict[str, Any]) -> Table:
    table = Table(title="email-connector replicas")
    for column in ("replica", "host", "pid", "started", "heartbeat", "lease until", "held", "mailboxes"):
        table.add_column(column)
    for replica in doc.get("replicas", []):
        boxes = list(replica.get("mailboxes", []))
        shown = ", ".join(boxes[:MAILBOXES_SHOWN]) + (" …" if len(boxes) > MAILBOXES_SHOWN else "")
        table.add_row(
            replica["replicaId"],
            replica.get("host") or "-",
            str(replica.get("pid") or "-"),
            replica.get("startedAt") or "-",
            replica.get("heartbeatAt") or "-",
            replica.get("expiresAt") or "-",
            str(len(boxes)),
            shown or "-",
        )
    return table


def replicas_command(config: ConfigOption) -> None:
    """The live replicas (heartbeat, lease expiry) and the mailboxes each holds."""
    doc = _from_daemon(config)
    if doc is None:
        doc = run_or_exit(_from_store(load_settings(config).store.url))
        if doc is None:
            out.print("[yellow]no daemon answers, and a SQLite store has no replicas but a running daemon[/]")
            raise typer.Exit(1)
    out.print(replicas_table(doc))
