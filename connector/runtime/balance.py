"""Fair shares: how many mailboxes each live replica should hold. Pure, so every replica that
sees the same members computes the same answer without talking to the others."""

from __future__ import annotations

from collections.abc import Sequence


def fair_share(replica_ids: Sequence[str], me: str, mailboxes: int) -> int:
    """N mailboxes over R replicas: the first N mod R replicas (by id) hold one more than N // R,
    so the shares add up to N exactly and differ by at most one. A replica that does not see itself
    among the live (its heartbeat is not in yet) counts itself in."""
    members = sorted(set(replica_ids) | {me})
    base, extra = divmod(mailboxes, len(members))
    return base + (1 if members.index(me) < extra else 0)


def to_release(held: Sequence[str], share: int) -> list[str]:
    """Which held mailboxes to hand over when holding more than the share: the last by id, so a
    replica's choice is stable from round to round."""
    excess = len(held) - share
    return sorted(held)[-excess:] if excess > 0 else []
