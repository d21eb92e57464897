"""Puts the outbox into a daemon: the worker service, the auto-ack hook, the API's handle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from connector.iwd.client import IWDClient
from connector.outbox.api import EXTRA_KEY
from connector.outbox.autoack import AutoAck
from connector.outbox.worker import OutboxWorker
from connector.status import StatusBoard
from connector.store.outbox import LOCAL_OWNER, SqlOutbox
from connector.store.sql import SqlStore
from connector.store.types import Store

log = structlog.get_logger("connector.outbox")


def attach_outbox(
    daemon: Any,
    store: Store,
    iwd: IWDClient,
    board: StatusBoard,
    api: Any,
    *,
    replica_id: str = LOCAL_OWNER,
    on_refused: Callable[[str], None] | None = None,
) -> OutboxWorker | None:
    """Appends the outbox worker to `daemon.services` and sets `daemon.on_delivered`.

    `daemon` is a connector.runtime.daemon.Daemon, `api` its ApiContext (or None). The worker claims
    replies as `replica_id`; on PostgreSQL other replicas may share the outbox."""
    if not isinstance(store, SqlStore):
        log.warning("outbox_disabled", reason="the store is not a SqlStore")
        return None
    ttl = daemon.settings.replicas.lease_ttl_seconds
    outbox = SqlOutbox(store, owner=replica_id, claim_ttl_seconds=ttl)
    worker = OutboxWorker(
        lambda: daemon.settings,
        outbox,
        iwd,
        board,
        crash=daemon.crash,
        exclusive=store.dialect == "sqlite",
        on_refused=on_refused,
    )
    autoack = AutoAck(lambda: daemon.settings, outbox, worker.enqueue, clock=worker.clock)
    daemon.on_delivered = autoack.on_delivered
    daemon.services.append(worker)
    daemon.metrics.outbox_counts = worker.state_counts
    if api is not None:
        api.extras[EXTRA_KEY] = worker
    return worker
