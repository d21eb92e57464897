"""Rule 1: every state a message passes through on its way to IWD, and the only allowed moves.

    fetched ──convert──▶ converted ──record intent──▶ pending ──POST /emails──▶ posted
        │                                                                         │
        └──converter fails──▶ quarantined (raw kept; cursor moves on)     ledger commit + cursor
                                                                                  ▼
                                               acted ◀──post-action on server── delivered

Why nothing is lost: the server is touched (mark read, move, delete) only from `delivered`,
which is written after IWD answered with an item id. A crash before that leaves the message
unmarked on the server and the cursor behind it, so it is fetched again.

Why nothing is duplicated: the externalId is recorded (`pending`) before the POST and reused on
every retry, and IWD answers a repeated externalId with the existing item (200). The same email
seen under a new identity (UIDVALIDITY change, a copy in another folder) is matched in the ledger by
raw hash plus Message-ID: if IWD holds it, the new identity gets an alias row pointing at that item
(so only its post-action runs); if the first attempt is still pending, its externalId is reused.

All of this happens per fetched batch (one transaction for the intents, one for the commits with the
cursor), but every rule above holds for each message on its own.
"""

from __future__ import annotations

import hashlib


def external_id(mailbox_id: str, folder: str, provider_id: str) -> str:
    """Stable across crashes and retries: derived only from where the message lives on the server."""
    digest = hashlib.sha256(f"{mailbox_id}\0{folder}\0{provider_id}".encode()).hexdigest()[:32]
    return f"{mailbox_id}.{digest}"


def raw_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
