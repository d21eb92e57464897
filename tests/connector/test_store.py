"""SqlStore against SQLite (a temp file) and PostgreSQL (a fresh database at 127.0.0.1:5432)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

import connector.store.lease_tables  # registers the lease tables on the metadata (as the next line does)
import connector.store.outbox_tables  # noqa: F401 - registers the outbox tables on the metadata
from connector.errors import StoreError
from connector.models import RawMessage
from connector.store import LedgerEntry, LedgerState, Store, migration, open_store
from connector.store.engine import WRITE_OPTION, create_engine, parse_url
from connector.store.migration import head_revision
from connector.store.sql import SqlStore
from connector.store.tables import metadata, quarantine
from tests.peers.postgres import PG_HOST, fresh_database

LATER_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("ledger", recreate="always") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.execute("UPDATE ledger SET note = 'migrated'")


def downgrade():
    raise NotImplementedError
"""
NON_UTF8 = b"Subject: caf\xe9\r\n\r\n\xff\xfe\x00\x80 body \xc3\x28\r\n"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty database: a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/sub/dir/store.db"
        return
    async with fresh_database("test_store") as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


def entry(
    n: int = 1, *, mailbox: str = "box", folder: str = "INBOX", message_id: str | None = "<m@x>"
) -> LedgerEntry:
    return LedgerEntry(
        external_id=f"ext-{mailbox}-{n}",
        mailbox_id=mailbox,
        folder=folder,
        provider_id=f"77:{n}",
        raw_sha256=hashlib.sha256(f"raw {n}".encode()).hexdigest(),
        message_id=message_id,
    )


def as_fetched(provider_id: str, raw: bytes, **metadata: Any) -> RawMessage:
    """A message of INBOX as a provider hands it over (size len(raw) unless given)."""
    return RawMessage(
        folder="INBOX", provider_id=provider_id, raw=raw, size=metadata.pop("size", len(raw)), **metadata
    )


async def seed_pre_r0003_quarantine(url: str, raw: bytes) -> None:
    """A database at revision 0002 holding one quarantine row, as a connector before r0003 left it."""
    engine = create_engine(parse_url(url))
    try:
        await migration.upgrade(engine.execution_options(**{WRITE_OPTION: True}), target="0002")
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(
                quarantine.insert().values(
                    mailbox_id="box",
                    folder="INBOX",
                    provider_id="77:5",
                    raw=raw,
                    error="old failure",
                    attempts=1,
                    first_seen_at=now,
                    last_attempt_at=now,
                )
            )
    finally:
        await engine.dispose()


def _as_store(store: SqlStore) -> Store:
    """mypy proves here that SqlStore satisfies the Store protocol."""
    return store


async def test_cursor_round_trip(store: SqlStore) -> None:
    """A cursor reads back as written, per (mailbox, folder), and can be cleared."""
    assert await store.get_cursor("box", "INBOX") is None
    await store.set_cursor("box", "INBOX", "77:10")
    await store.set_cursor("box", "Sent", "s1")
    await store.set_cursor("other", "INBOX", "o1")
    await store.set_cursor("box", "INBOX", "77:11")
    assert await store.get_cursor("box", "INBOX") == "77:11"
    assert await store.get_cursor("box", "Sent") == "s1"
    assert await store.get_cursor("other", "INBOX") == "o1"
    await store.set_cursor("box", "INBOX", None)
    assert await store.get_cursor("box", "INBOX") is None


async def test_intent_commit_then_acted(store: SqlStore) -> None:
    """An entry moves pending -> delivered -> acted with iwd id and UTC timestamps."""
    recorded = await store.ledger_record_intent(entry())
    assert recorded.state is LedgerState.PENDING
    assert recorded.iwd_id is None and recorded.delivered_at is None
    assert recorded.created_at is not None and recorded.created_at.tzinfo is UTC

    await store.ledger_commit(recorded.external_id, "iwd-1")
    found = (await store.ledger_lookup("box", "INBOX", ["77:1"]))["77:1"]
    assert (found.state, found.iwd_id) == (LedgerState.DELIVERED, "iwd-1")
    assert found.delivered_at is not None and found.delivered_at.tzinfo is UTC
    assert found.delivered_at >= recorded.created_at
    assert await store.ledger_count("box", LedgerState.DELIVERED) == 1

    await store.ledger_mark_acted(recorded.external_id)
    found = (await store.ledger_lookup("box", "INBOX", ["77:1"]))["77:1"]
    assert found.state is LedgerState.ACTED and found.iwd_id == "iwd-1"
    assert await store.ledger_count("box", LedgerState.ACTED) == 1
    assert await store.ledger_count("box", LedgerState.DELIVERED) == 0


async def test_item_count_counts_iwd_items_not_alias_rows(store: SqlStore) -> None:
    """Alias rows (the same email under a new UIDVALIDITY, or in another folder) add no IWD item;
    pending intents add none either."""
    for n in (1, 2):
        await store.ledger_commit((await store.ledger_record_intent(entry(n))).external_id, f"iwd-{n}")
    await store.ledger_mark_acted("ext-box-1")
    await store.ledger_record_intent(entry(3))  # posted or not: IWD may not hold it yet
    renumbered = [
        replace(entry(n), external_id=f"ext-box-{n}-v2", provider_id=f"88:{n}", state=s, iwd_id=f"iwd-{n}")
        for n, s in ((1, LedgerState.ACTED), (2, LedgerState.DELIVERED))
    ]
    copy = replace(entry(1), external_id="ext-box-1-archive", folder="Archive", state=LedgerState.ACTED)
    await store.ledger_record_aliases([*renumbered, replace(copy, iwd_id="iwd-1")])
    await store.ledger_record_aliases([replace(entry(9, mailbox="other"), state=LedgerState.ACTED)])
    assert await store.ledger_count("box") == 6
    assert await store.ledger_count_items("box") == 2
    assert await store.ledger_count_items("other") == 1  # a row without an item id is its own item


async def test_commit_acted_when_no_post_action_is_due(store: SqlStore) -> None:
    """commit(acted=True) goes straight to acted and never shows up as a pending action."""
    await store.ledger_record_intent(entry())
    await store.ledger_commit("ext-box-1", "iwd-1", acted=True)
    assert (await store.ledger_lookup("box", "INBOX", ["77:1"]))["77:1"].state is LedgerState.ACTED
    assert await store.ledger_pending_actions("box") == []


async def test_states_never_move_back(store: SqlStore) -> None:
    """A repeated commit on an acted entry leaves it acted; mark_acted on pending is refused."""
    await store.ledger_record_intent(entry(1))
    await store.ledger_commit("ext-box-1", "iwd-1", acted=True)
    await store.ledger_commit("ext-box-1", "iwd-1")
    assert (await store.ledger_lookup("box", "INBOX", ["77:1"]))["77:1"].state is LedgerState.ACTED

    await store.ledger_record_intent(entry(2))
    with pytest.raises(StoreError, match="not committed") as caught:
        await store.ledger_mark_acted("ext-box-2")
    assert caught.value.context["external_id"] == "ext-box-2"
    assert (await store.ledger_lookup("box", "INBOX", ["77:2"]))["77:2"].state is LedgerState.PENDING


async def test_commit_sets_cursor_in_the_same_transaction(store: SqlStore) -> None:
    """The cursor moves with a successful commit and stays put when the commit fails."""
    await store.set_cursor("box", "INBOX", "77:0")
    await store.ledger_record_intent(entry(1))
    await store.ledger_commit("ext-box-1", "iwd-1", cursor=("box", "INBOX", "77:1"))
    assert await store.get_cursor("box", "INBOX") == "77:1"

    with pytest.raises(StoreError, match="no recorded intent") as caught:
        await store.ledger_commit("ext-unknown", "iwd-2", cursor=("box", "INBOX", "77:2"))
    assert caught.value.context["mailbox"] == "box"
    assert await store.get_cursor("box", "INBOX") == "77:1"


async def test_record_intent_twice_returns_same_entry_and_keeps_state(store: SqlStore) -> None:
    """Recording an existing intent again returns the stored entry, state and iwd id intact."""
    first = await store.ledger_record_intent(entry())
    await store.ledger_commit(first.external_id, "iwd-1")
    again = await store.ledger_record_intent(entry())
    assert again.state is LedgerState.DELIVERED
    assert again.iwd_id == "iwd-1"
    assert again.created_at == first.created_at
    assert await store.ledger_count() == 1


async def test_record_intent_moves_existing_external_id_to_new_identity(store: SqlStore) -> None:
    """After a resync (new UIDVALIDITY) the same external id is re-pointed at the new provider id."""
    first = await store.ledger_record_intent(entry())
    await store.ledger_commit(first.external_id, "iwd-1")
    resynced = LedgerEntry(
        external_id=first.external_id,
        mailbox_id="box",
        folder="INBOX",
        provider_id="88:5",
        raw_sha256=first.raw_sha256,
        message_id=first.message_id,
    )
    moved = await store.ledger_record_intent(resynced)
    assert (moved.provider_id, moved.state, moved.iwd_id) == ("88:5", LedgerState.DELIVERED, "iwd-1")
    assert await store.ledger_lookup("box", "INBOX", ["77:1"]) == {}
    assert (await store.ledger_lookup("box", "INBOX", ["88:5"]))["88:5"].external_id == first.external_id
    assert await store.ledger_count() == 1


async def test_record_intent_refuses_identity_held_by_another_external_id(store: SqlStore) -> None:
    """Two external ids for one (mailbox, folder, provider id) is a bug: StoreError naming both."""
    await store.ledger_record_intent(entry())
    clash = LedgerEntry(
        external_id="ext-other", mailbox_id="box", folder="INBOX", provider_id="77:1", raw_sha256="0" * 64
    )
    with pytest.raises(StoreError, match="different external id") as caught:
        await store.ledger_record_intent(clash)
    assert caught.value.context["existing_external_id"] == "ext-box-1"
    assert caught.value.context["external_id"] == "ext-other"
    assert await store.ledger_count() == 1


async def test_find_content_matches_hash_and_message_id(store: SqlStore) -> None:
    """Content lookup needs the same hash and message id; a missing message id matches only NULL."""
    with_id = await store.ledger_record_intent(entry(1))
    without_id = await store.ledger_record_intent(entry(2, message_id=None))
    assert await store.ledger_find_content("box", with_id.raw_sha256, "<m@x>") == with_id
    assert await store.ledger_find_content("box", with_id.raw_sha256, None) is None
    assert await store.ledger_find_content("box", with_id.raw_sha256, "<other@x>") is None
    assert await store.ledger_find_content("box", without_id.raw_sha256, None) == without_id
    assert await store.ledger_find_content("box", without_id.raw_sha256, "<m@x>") is None
    assert await store.ledger_find_content("elsewhere", with_id.raw_sha256, "<m@x>") is None


async def test_pending_actions_returns_only_delivered_not_acted(store: SqlStore) -> None:
    """Pending actions are delivered entries without their post-action, oldest first, per mailbox."""
    for n in range(1, 6):
        await store.ledger_record_intent(entry(n))
    await store.ledger_record_intent(entry(9, mailbox="other"))
    for n in (3, 1, 2, 4):
        await store.ledger_commit(f"ext-box-{n}", f"iwd-{n}")
    await store.ledger_commit("ext-other-9", "iwd-9")
    await store.ledger_mark_acted("ext-box-2")
    due = await store.ledger_pending_actions("box")
    assert [e.external_id for e in due] == ["ext-box-3", "ext-box-1", "ext-box-4"]
    assert all(e.state is LedgerState.DELIVERED for e in due)
    assert [e.external_id for e in await store.ledger_pending_actions("box", limit=2)] == [
        "ext-box-3",
        "ext-box-1",
    ]


async def test_lookup_handles_more_ids_than_one_query_binds(store: SqlStore) -> None:
    """A lookup of 1,200 provider ids returns exactly the recorded ones."""
    for n in (5, 600, 1100):
        await store.ledger_record_intent(entry(n))
    ids = [f"77:{n}" for n in range(1200)]
    assert sorted(await store.ledger_lookup("box", "INBOX", ids)) == ["77:1100", "77:5", "77:600"]
    assert await store.ledger_lookup("box", "Other", ids) == {}


async def test_concurrent_record_intent_with_one_external_id_makes_one_row(store_url: str) -> None:
    """20 tasks on two store instances (as two replicas) racing on one external id leave one row."""
    first, second = await SqlStore.open(store_url), await SqlStore.open(store_url)
    try:
        results = await asyncio.gather(
            *((first if i % 2 else second).ledger_record_intent(entry(1)) for i in range(20))
        )
        assert {r.external_id for r in results} == {"ext-box-1"}
        assert {r.created_at for r in results} == {results[0].created_at}
        assert await first.ledger_count() == 1
    finally:
        await first.close()
        await second.close()


async def test_quarantine_put_twice_counts_attempts_and_keeps_raw_bytes(store: SqlStore) -> None:
    """A repeat increments attempts and replaces the error; raw bytes come back byte for byte."""
    first = await store.quarantine_put("box", as_fetched("77:3", NON_UTF8), "bad header")
    second = await store.quarantine_put("box", as_fetched("77:3", NON_UTF8), "still bad \x00 \udcff")
    assert second.id == first.id
    assert second.attempts == 2
    assert second.error == "still bad \ufffd ?"
    assert second.raw == NON_UTF8
    assert second.first_seen_at == first.first_seen_at
    assert second.last_attempt_at >= first.last_attempt_at
    assert second.first_seen_at.tzinfo is UTC
    fetched = await store.quarantine_get(first.id)
    assert fetched == second
    assert await store.quarantine_count("box") == 1


async def test_quarantine_keeps_the_server_metadata_and_a_repeat_does_not_replace_it(store: SqlStore) -> None:
    """Internal date (as UTC), real size, headers_only and thread hint come back as written; a
    repeat with other metadata keeps the first, which describes the kept raw bytes."""
    arrived = datetime(2024, 3, 9, 23, 30, 5, tzinfo=timezone(timedelta(hours=-5)))
    header_block = b"Subject: big\r\nFrom: a@example.net\r\n\r\n"
    first = as_fetched(
        "77:8", header_block, size=48_000_000, internal_date=arrived, headers_only=True, thread_hint="t-\x00"
    )
    put = await store.quarantine_put("box", first, "bad")
    again = await store.quarantine_put("box", as_fetched("77:8", b"Subject: other\r\n\r\n"), "still bad")
    (listed,) = await store.quarantine_list("box")
    for got in (put, again, listed, await store.quarantine_get(put.id)):
        assert got is not None
        assert got.internal_date == arrived and got.internal_date.tzinfo is UTC
        assert (got.size, got.headers_only, got.thread_hint) == (48_000_000, True, "t-\ufffd")
        assert got.raw == header_block
    assert again.attempts == 2
    message = listed.message
    assert (message.folder, message.provider_id, message.raw) == ("INBOX", "77:8", header_block)
    assert (message.size, message.internal_date, message.headers_only) == (48_000_000, arrived, True)
    assert message.thread_hint == "t-\ufffd"


async def test_quarantine_without_metadata_reads_as_a_whole_message(store: SqlStore) -> None:
    """No internal date or thread hint is stored as NULL; the rebuilt message has the raw size."""
    raw = b"Subject: x\r\n\r\nbody"
    put = await store.quarantine_put("box", as_fetched("77:9", raw), "bad")
    assert (put.internal_date, put.size, put.headers_only, put.thread_hint) == (None, len(raw), False, None)
    assert put.message == as_fetched("77:9", raw)


async def test_quarantine_row_from_before_r0003_survives_the_upgrade_and_reads_as_whole(
    store_url: str,
) -> None:
    """A row written at revision 0002 is kept by the upgrade, with no metadata: a retry sees the
    whole message with size len(raw), its arrival time unknown."""
    await seed_pre_r0003_quarantine(store_url, NON_UTF8)
    opened = await SqlStore.open(store_url)
    try:
        (old,) = await opened.quarantine_list("box")
        assert (old.provider_id, old.raw, old.error, old.attempts) == ("77:5", NON_UTF8, "old failure", 1)
        assert (old.internal_date, old.size, old.headers_only, old.thread_hint) == (None, None, False, None)
        assert old.message == as_fetched("77:5", NON_UTF8)
        again = await opened.quarantine_put("box", old.message, "still bad")
        assert (again.id, again.attempts, again.size) == (old.id, 2, None)
    finally:
        await opened.close()


async def test_quarantine_resolve_removes_from_count(store: SqlStore) -> None:
    """Resolved entries leave the count and default list but stay retrievable."""
    kept = await store.quarantine_put("box", as_fetched("77:1", b"a"), "e1")
    solved = await store.quarantine_put("box", as_fetched("77:2", b"b"), "e2")
    await store.quarantine_put("other", as_fetched("77:1", b"c"), "e3")
    await store.quarantine_resolve(solved.id, "ext-box-2")
    assert await store.quarantine_count("box") == 1
    assert await store.quarantine_count() == 2
    assert [e.id for e in await store.quarantine_list("box")] == [kept.id]
    listed = await store.quarantine_list("box", include_resolved=True)
    assert [(e.id, e.resolved_external_id) for e in listed] == [(kept.id, None), (solved.id, "ext-box-2")]
    assert await store.quarantine_get(999_999) is None
    with pytest.raises(StoreError, match="no quarantine entry"):
        await store.quarantine_resolve(999_999, "ext-x")


async def test_data_survives_close_and_reopen(store_url: str) -> None:
    """Reopening runs the migration step again and keeps every row."""
    first = await open_store(store_url)
    await first.set_cursor("box", "INBOX", "77:9")
    await first.ledger_record_intent(entry())
    await first.ledger_commit("ext-box-1", "iwd-1")
    quarantined = await first.quarantine_put("box", as_fetched("77:3", NON_UTF8), "bad")
    await first.close()

    for _ in range(2):
        reopened = await open_store(store_url)
        try:
            assert await reopened.get_cursor("box", "INBOX") == "77:9"
            assert (await reopened.ledger_lookup("box", "INBOX", ["77:1"]))["77:1"].iwd_id == "iwd-1"
            got = await reopened.quarantine_get(quarantined.id)
            assert got is not None and got.raw == NON_UTF8
        finally:
            await reopened.close()


async def test_replicas_opening_together_migrate_once(store_url: str) -> None:
    """Three stores opening one fresh database at once all succeed and see one schema."""
    stores = await asyncio.gather(*(SqlStore.open(store_url) for _ in range(3)))
    try:
        await stores[0].set_cursor("box", "INBOX", "1")
        assert [await s.get_cursor("box", "INBOX") for s in stores] == ["1", "1", "1"]
    finally:
        for opened in stores:
            await opened.close()


async def test_upgrade_to_a_later_revision_keeps_data(store_url: str, tmp_path: Path) -> None:
    """A later revision that rebuilds the ledger table (as SQLite batch mode does) keeps every row."""
    first = await SqlStore.open(store_url)
    await first.ledger_record_intent(entry())
    await first.ledger_commit("ext-box-1", "iwd-1", cursor=("box", "INBOX", "77:1"))
    await first.close()
    later = tmp_path / "later_versions"
    later.mkdir()
    (later / "r9001_add_note.py").write_text(LATER_REVISION)

    engine = create_engine(parse_url(store_url))
    try:
        await migration.upgrade(
            engine.execution_options(**{WRITE_OPTION: True}), extra_version_locations=[str(later)]
        )
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "9001"
            rows = (await conn.execute(text("SELECT external_id, state, iwd_id, note FROM ledger"))).all()
            assert [tuple(r) for r in rows] == [("ext-box-1", "delivered", "iwd-1", "migrated")]
            assert await conn.scalar(text("SELECT cursor FROM cursors")) == "77:1"
    finally:
        await engine.dispose()


async def test_schema_is_at_head_and_matches_table_definitions(store: SqlStore) -> None:
    """After open the database is at the newest revision and equals connector/store/tables.py."""

    def inspect(connection: Connection) -> tuple[str | None, list[object]]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return context.get_current_revision(), compare_metadata(context, metadata)

    async with store._engine.connect() as conn:
        revision, diffs = await conn.run_sync(inspect)
    assert revision == head_revision() == "0004"
    assert diffs == []


async def test_database_from_a_newer_version_is_refused(store_url: str) -> None:
    """A schema revision this version does not know gives a StoreError that says so."""
    opened = await SqlStore.open(store_url)
    await opened.ledger_record_intent(entry())
    async with opened._engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    await opened.close()
    with pytest.raises(StoreError, match="newer connector") as caught:
        await SqlStore.open(store_url)
    assert caught.value.context["database_revision"] == "ffff"


async def test_ping_succeeds_on_a_live_database(store: SqlStore) -> None:
    """ping() returns quietly when the database answers."""
    await store.ping()


async def test_unreachable_postgres_raises_store_error_without_password() -> None:
    """Connection failures become StoreError naming host and database, never the password."""
    with socket.socket() as probe:
        probe.bind((PG_HOST, 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError) as caught:
        await SqlStore.open(f"postgresql+asyncpg://u:s3cr3t-pw@{PG_HOST}:{port}/nowhere")
    message = str(caught.value)
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in repr(caught.value.context)
    assert caught.value.context["operation"] == "open"
    assert caught.value.context["database"] == "nowhere"


async def test_sqlite_file_gets_its_directory_and_wal_mode(tmp_path: Path) -> None:
    """A SQLite store creates missing directories and runs in WAL mode with foreign keys on."""
    path = tmp_path / "a" / "b" / "store.db"
    opened = await SqlStore.open(f"sqlite:///{path}")
    try:
        async with opened._engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA foreign_keys"))) == 1
            assert (await conn.scalar(text("PRAGMA synchronous"))) == 1  # NORMAL
        assert path.exists()
    finally:
        await opened.close()


async def test_unsupported_url_is_refused_with_store_error() -> None:
    """A URL for another database names the backend, not the URL."""
    with pytest.raises(StoreError, match="unsupported") as caught:
        await SqlStore.open("mysql://user:pw@host/db")
    assert caught.value.context["backend"] == "mysql"
