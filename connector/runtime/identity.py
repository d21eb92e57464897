"""Who this daemon is among replicas: a stable id from config, or the host name plus a suffix."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from connector.config import ReplicaSettings

SUFFIX_BYTES = 3


@dataclass(frozen=True, slots=True)
class ReplicaIdentity:
    replica_id: str
    host: str
    pid: int


def replica_identity(settings: ReplicaSettings) -> ReplicaIdentity:
    """The configured id, or `<host>-<random>`: two pods of one Deployment never share an id,
    and a restarted pod is a new replica (its predecessor's leases lapse or were released)."""
    host = socket.gethostname() or "localhost"
    replica_id = settings.replica_id or f"{host}-{secrets.token_hex(SUFFIX_BYTES)}"
    return ReplicaIdentity(replica_id, host, os.getpid())
