"""SQLite storage for the sandbox IWD: items, attachment bytes, mailbox configuration and status.

One connection guarded by a lock, so handlers may call it from any thread. Idempotency rests
on a UNIQUE constraint on external_id: the insert either wins or finds the winner, which holds
even for concurrent duplicate POSTs. Attachment uploads are idempotent on their key (profile
v1.2): looked up and inserted under the lock, with a UNIQUE column behind it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    external_id TEXT UNIQUE,
    mailbox_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_mailbox ON items (mailbox_id, direction, seq);
CREATE INDEX IF NOT EXISTS items_status ON items (direction, status, seq);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at TEXT NOT NULL,
    idempotency_key TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS mailboxes (
    mailbox_id TEXT PRIMARY KEY,
    config TEXT,
    config_updated_at TEXT,
    status TEXT,
    status_updated_at TEXT
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes


class AttachmentKeyConflict(Exception):
    """An upload reused an Idempotency-Key for different bytes; `first` is what the key holds."""

    def __init__(self, first: StoredAttachment) -> None:
        super().__init__(first.id)
        self.first = first


class SandboxStore:
    """Thread-safe; every method is one short transaction."""

    def __init__(self, db_path: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        if db_path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(attachments)")}
        if "idempotency_key" not in columns:  # a database written before profile v1.2
            self._db.execute("ALTER TABLE attachments ADD COLUMN idempotency_key TEXT")
            self._db.execute(
                "CREATE UNIQUE INDEX attachments_idempotency_key ON attachments (idempotency_key)"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def clear(self) -> None:
        with self._lock:
            self._db.executescript("DELETE FROM items; DELETE FROM attachments; DELETE FROM mailboxes;")

    # ------------------------------------------------------------ items

    def find_by_external_id(self, external_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM items WHERE external_id = ?", (external_id,)).fetchone()
        return str(row[0]) if row else None

    def create_item(self, record: dict[str, Any], *, external_id: str | None) -> tuple[str, bool]:
        """Inserts the item (adding `id` and `createdAt`); returns (id, created)."""
        item_id = "em_" + uuid.uuid4().hex
        body = {"id": item_id, **record, "createdAt": utc_now()}
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO items (id, external_id, mailbox_id, direction, status, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        item_id,
                        external_id,
                        record["mailboxId"],
                        record["direction"],
                        record.get("status"),
                        json.dumps(body),
                    ),
                )
                return item_id, True
            except sqlite3.IntegrityError:
                row = self._db.execute(
                    "SELECT id FROM items WHERE external_id = ?", (external_id,)
                ).fetchone()
                if row is None:
                    raise
                return str(row[0]), False

    def find_by_external_ids(self, external_ids: list[str]) -> dict[str, str]:
        """externalId -> id for those of `external_ids` that exist."""
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(external_ids), 500):
                part = external_ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT external_id, id FROM items WHERE external_id IN ({marks})", part
                ).fetchall()
                found.update((str(ext), str(item_id)) for ext, item_id in rows)
        return found

    def create_items(self, records: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """Inserts inbound items (keyed by externalId) in ONE transaction; (id, created) each.

        A record whose externalId exists (or won a race) is not inserted: its first id comes back.
        """
        out: list[tuple[str, bool]] = []
        now = utc_now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for record in records:
                    item_id = "em_" + uuid.uuid4().hex
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO items (id, external_id, mailbox_id, direction, status, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            item_id,
                            record["externalId"],
                            record["mailboxId"],
                            record["direction"],
                            record.get("status"),
                            json.dumps({"id": item_id, **record, "createdAt": now}),
                        ),
                    )
                    if cursor.rowcount == 1:
                        out.append((item_id, True))
                        continue
                    row = self._db.execute(
                        "SELECT id FROM items WHERE external_id = ?", (record["externalId"],)
                    ).fetchone()
                    out.append((str(row[0]), False))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM items WHERE id = ?", (item_id,)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def update_item(self, item_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return None
            body = {**json.loads(row[0]), **changes}
            self._db.execute(
                "UPDATE items SET body = ?, status = ? WHERE id = ?",
                (json.dumps(body), body.get("status"), item_id),
            )
        return dict(body)

    def list_items(
        self,
        *,
        mailbox_id: str | None = None,
        direction: str | None = None,
        status: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Oldest first; returns the page and the seq to continue after (None at the end)."""
        sql = "SELECT seq, body FROM items WHERE seq > ?"
        args: list[Any] = [after_seq]
        for column, value in (("mailbox_id", mailbox_id), ("direction", direction), ("status", status)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit + 1)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        page = rows[:limit]
        more = len(rows) > limit
        return [json.loads(body) for _, body in page], (int(page[-1][0]) if more and page else None)

    def recent_items(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM items ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def count_items(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    # ------------------------------------------------------------ attachments

    def add_attachment(
        self, data: bytes, *, filename: str, content_type: str, idempotency_key: str | None = None
    ) -> tuple[StoredAttachment, bool]:
        """Stores the bytes; (attachment, created). With a key already used for the same bytes,
        nothing is stored and the first attachment comes back (created False); used for other
        bytes, AttachmentKeyConflict. The check and the insert are one step under the lock."""
        stored = StoredAttachment(
            id="att_" + uuid.uuid4().hex,
            filename=filename,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
        with self._lock:
            if idempotency_key is not None:
                row = self._db.execute(
                    "SELECT id, filename, content_type, size, sha256 FROM attachments "
                    "WHERE idempotency_key = ?",
                    (idempotency_key,),
                ).fetchone()
                if row is not None:
                    first = StoredAttachment(
                        str(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4]), b""
                    )
                    if (first.size, first.sha256) != (stored.size, stored.sha256):
                        raise AttachmentKeyConflict(first)
                    return first, False
            self._db.execute(
                "INSERT INTO attachments "
                "(id, filename, content_type, size, sha256, data, created_at, idempotency_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stored.id,
                    filename,
                    content_type,
                    stored.size,
                    stored.sha256,
                    data,
                    utc_now(),
                    idempotency_key,
                ),
            )
        return stored, True

    def get_attachment(self, attachment_id: str, *, with_data: bool = True) -> StoredAttachment | None:
        columns = "id, filename, content_type, size, sha256, " + ("data" if with_data else "x''")
        with self._lock:
            row = self._db.execute(
                f"SELECT {columns} FROM attachments WHERE id = ?", (attachment_id,)
            ).fetchone()
        if row is None:
            return None
        return StoredAttachment(
            str(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4]), bytes(row[5])
        )

    def list_attachments(self) -> list[StoredAttachment]:
        """Every stored attachment without its bytes, oldest first (tests count them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, filename, content_type, size, sha256 FROM attachments ORDER BY rowid"
            ).fetchall()
        return [StoredAttachment(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), b"") for r in rows]

    # ------------------------------------------------------------ mailboxes

    def put_mailbox(self, mailbox_id: str, *, config: Any = None, status: Any = None) -> None:
        now = utc_now()
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO mailboxes (mailbox_id) VALUES (?)", (mailbox_id,))
            if config is not None:
                self._db.execute(
                    "UPDATE mailboxes SET config = ?, config_updated_at = ? WHERE mailbox_id = ?",
                    (json.dumps(config), now, mailbox_id),
                )
            if status is not None:
                self._db.execute(
                    "UPDATE mailboxes SET status = ?, status_updated_at = ? WHERE mailbox_id = ?",
                    (json.dumps(status), now, mailbox_id),
                )

    def list_mailboxes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT mailbox_id, config, config_updated_at, status, status_updated_at "
                "FROM mailboxes ORDER BY mailbox_id"
            ).fetchall()
        return [
            {
                "mailboxId": mailbox_id,
                "config": json.loads(config) if config else None,
                "configUpdatedAt": config_at,
                "status": json.loads(status) if status else None,
                "statusUpdatedAt": status_at,
            }
            for mailbox_id, config, config_at, status, status_at in rows
        ]
