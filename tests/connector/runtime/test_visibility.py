"""Who runs what, as people see it: status rows' owner and lease expiry, and the replicas view."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connector.config import ReplicaSettings
from connector.runtime.identity import ReplicaIdentity, replica_identity
from connector.runtime.visibility import add_owners


async def test_one_process_owns_what_it_runs_and_has_no_lease_expiry() -> None:
    """SQLite: a running mailbox's owner is this replica; a stopped one has none."""
    me = ReplicaIdentity("solo", "host", 1)
    rows = [{"mailboxId": "a", "running": True}, {"mailboxId": "b", "running": False}]
    out = await add_owners(rows, ["a", "b"], None, me)
    assert [(r["owner"], r["leaseExpiresAt"]) for r in out] == [("solo", None), (None, None)]


def test_default_replica_id_is_the_host_name_and_a_suffix_unique_per_start() -> None:
    """Two pods of one Deployment never share an id, and a configured id is used as given."""
    first = replica_identity(ReplicaSettings())
    second = replica_identity(ReplicaSettings())
    assert first.replica_id != second.replica_id
    assert first.replica_id.startswith(first.host + "-")
    assert replica_identity(ReplicaSettings(replica_id="pod-7")).replica_id == "pod-7"


def test_renewal_must_come_before_the_ttl() -> None:
    """`renew_seconds` defaults to a third of the TTL and must be shorter than it."""
    assert ReplicaSettings(lease_ttl_seconds=30).renew_every_seconds == 10
    with pytest.raises(ValidationError):
        ReplicaSettings(lease_ttl_seconds=10, renew_seconds=10)
