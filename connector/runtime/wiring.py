"""Puts the lease manager into a daemon when its store can be shared (PostgreSQL)."""

from __future__ import annotations

from connector.runtime.daemon import Daemon
from connector.runtime.identity import ReplicaIdentity
from connector.runtime.lease_metrics import LeaseMetrics
from connector.runtime.leases import LeaseManager
from connector.store.leases import SqlLeases
from connector.store.sql import SqlStore
from connector.store.types import Store


def attach_leases(daemon: Daemon, store: Store, identity: ReplicaIdentity) -> LeaseManager | None:
    """On PostgreSQL the daemon runs only the mailboxes whose leases it wins; on SQLite (one
    process, guarded by connector/runtime/sqlite_guard.py) it runs all of them, as before."""
    if not isinstance(store, SqlStore) or store.dialect != "postgresql":
        return None
    manager = LeaseManager(
        SqlLeases(store, own_pool=True),  # renewals never wait behind mailbox work
        identity,
        daemon.settings.replicas,
        daemon,
        LeaseMetrics(daemon.metrics.registry),
    )
    daemon.leases = manager
    return manager
