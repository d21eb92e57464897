"""Who runs what, for people: the owner and lease expiry of each mailbox in the status rows, and
the `replicas` view (`GET /api/v1/replicas`, `email-connector replicas`).

Read on demand from the leases table (one SELECT per request), so any replica answers for the
whole fleet; SQLite has one process, which owns every mailbox it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from connector.errors import ConnectorError
from connector.runtime.identity import ReplicaIdentity
from connector.runtime.leases import LeaseManager
from connector.store.leases import LeaseRow, ReplicaRow, SqlLeases

log = structlog.get_logger("connector.leases")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def unknown_inbound() -> dict[str, Any]:
    """The inbound side of a mailbox another replica runs: its owner knows its state."""
    return {
        "state": "unknown",
        "backlog": 0,
        "quarantined": 0,
        "deliveredTotal": 0,
        "lastSuccessAt": None,
        "lagSeconds": None,
        "lastError": None,
    }


def placeholder_row(mailbox_id: str) -> dict[str, Any]:
    """A configured mailbox this replica does not run and has no status of."""
    return {
        "mailboxId": mailbox_id,
        "paused": False,
        "running": False,
        "inbound": unknown_inbound(),
        "outbound": {"state": "unknown"},
    }


async def add_owners(
    rows: list[dict[str, Any]],
    configured: Sequence[str],
    manager: LeaseManager | None,
    identity: ReplicaIdentity | None,
) -> list[dict[str, Any]]:
    """Gives every status row `owner` and `leaseExpiresAt`; among replicas, adds a row for each
    configured mailbox another replica runs."""
    if manager is None:  # one process: it owns what it runs
        me = identity.replica_id if identity is not None else None
        for row in rows:
            row["owner"] = me if row.get("running") else None
            row["leaseExpiresAt"] = None
        return rows
    try:
        leases = {lease.mailbox_id: lease for lease in await manager.leases.leases()}
    except ConnectorError as exc:
        log.warning("leases_unreadable", error=str(exc))
        leases = {}
    shown = {row["mailboxId"] for row in rows}
    rows = rows + [placeholder_row(m) for m in configured if m not in shown]
    for row in rows:
        if not row.get("running"):  # its inbound status here is stale or never was
            row["inbound"] = unknown_inbound()
        lease = leases.get(row["mailboxId"])
        row["owner"] = lease.owner if lease is not None else None
        row["leaseExpiresAt"] = _iso(lease.expires_at) if lease is not None else None
    return rows


def replicas_view(replicas: Sequence[ReplicaRow], leases: Sequence[LeaseRow]) -> dict[str, Any]:
    """The live replicas and the mailboxes each holds."""
    held: dict[str, list[str]] = {}
    for lease in leases:
        if lease.owner is not None:
            held.setdefault(lease.owner, []).append(lease.mailbox_id)
    return {
        "replicas": [
            {
                "replicaId": r.replica_id,
                "host": r.host,
                "pid": r.pid,
                "startedAt": _iso(r.started_at),
                "heartbeatAt": _iso(r.heartbeat_at),
                "expiresAt": _iso(r.expires_at),
                "mailboxes": sorted(held.get(r.replica_id, [])),
            }
            for r in replicas
        ]
    }


async def read_replicas(leases: SqlLeases) -> dict[str, Any]:
    return replicas_view(await leases.live_replicas(), await leases.leases())


def single_replica_view(
    identity: ReplicaIdentity, started_at: datetime, mailboxes: Sequence[str]
) -> dict[str, Any]:
    """SQLite: this process is the only replica (no heartbeat rows are kept)."""
    return {
        "replicas": [
            {
                "replicaId": identity.replica_id,
                "host": identity.host,
                "pid": identity.pid,
                "startedAt": _iso(started_at),
                "heartbeatAt": None,
                "expiresAt": None,
                "mailboxes": sorted(mailboxes),
            }
        ]
    }
