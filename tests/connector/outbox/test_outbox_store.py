"""SqlOutbox on SQLite and PostgreSQL: idempotent enqueue, forward-only transitions, the auto-ack ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.store.outbox import SqlOutbox
from connector.store.sql import SqlStore
from connector.store.types import OutboxEntry, OutboxState
from tests.connector.test_store import store_url  # noqa: F401  (the sqlite/postgresql fixture)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def entry(n: int) -> OutboxEntry:
    return OutboxEntry(
        id=f"r-{n}",
        mailbox_id="box",
        origin="iwd",
        iwd_item_id=f"em_{n}",
        request={"to": [{"address": "a@b.c"}]},
        request_sha256="0" * 64,
        message_id=f"<r{n}@example.com>",
        created_at=T0,
    )


async def test_outbox_transitions_are_idempotent_and_forward_only(store_url: str) -> None:  # noqa: F811
    """Enqueue twice keeps one row; only open rows are claimed; results merge; requeue only when settled."""
    store = await SqlStore.open(store_url)
    try:
        outbox = SqlOutbox(store)
        first, created = await outbox.outbox_enqueue(entry(1))
        again, created_again = await outbox.outbox_enqueue(entry(1))
        assert created and not created_again and again.message_id == first.message_id
        assert [e.id for e in await outbox.outbox_due(T0)] == ["r-1"]
        claimed = await outbox.outbox_claim("r-1", T0)
        assert claimed is not None and claimed.state is OutboxState.SENDING and claimed.attempts == 1
        assert await outbox.outbox_claim("r-1", T0) is None
        assert await outbox.outbox_requeue("r-1", T0) is None
        await outbox.outbox_set_phase("r-1", "data")
        await outbox.outbox_finish(
            "r-1",
            OutboxState.RETRYING,
            now=T0,
            results={"a@b.c": {"accepted": False, "code": 451}},
            error_code="smtp_deferred",
            next_attempt_at=T0 + timedelta(minutes=1),
        )
        assert await outbox.outbox_due(T0) == []
        assert [e.id for e in await outbox.outbox_unreported()] == ["r-1"]
        await outbox.outbox_mark_reported("r-1", OutboxState.RETRYING)
        assert await outbox.outbox_unreported() == []
        await outbox.outbox_claim("r-1", T0 + timedelta(minutes=2))
        done = await outbox.outbox_finish(
            "r-1", OutboxState.SENT, now=T0, results={"x@y.z": {"accepted": True}}, sent_at=T0
        )
        assert set(done.results) == {"a@b.c", "x@y.z"} and done.attempts == 2 and done.first_attempt_at == T0
        assert (await outbox.outbox_counts("box"))[OutboxState.SENT] == 1
        assert await outbox.outbox_known_message_ids(["<r1@example.com>", "<other@x>"]) == {
            "<r1@example.com>"
        }
    finally:
        await store.close()


async def test_auto_ack_claim_allows_one_per_sender_per_period(store_url: str) -> None:  # noqa: F811
    """The second claim inside the period is refused; after the period it is granted again."""
    store = await SqlStore.open(store_url)
    try:
        outbox = SqlOutbox(store)
        assert await outbox.auto_ack_claim("box", "Cust@Example.net", T0, 3600)
        assert not await outbox.auto_ack_claim("box", "cust@example.net", T0 + timedelta(minutes=59), 3600)
        assert await outbox.auto_ack_claim("other", "cust@example.net", T0, 3600)
        assert await outbox.auto_ack_claim("box", "cust@example.net", T0 + timedelta(minutes=61), 3600)
    finally:
        await store.close()
