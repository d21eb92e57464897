"""Engine construction and error translation for the SQL store.

SQLite is switched to WAL once at open; every connection gets `synchronous=NORMAL`, a busy
timeout and foreign keys. SQLAlchemy (not the sqlite3 driver) emits BEGIN, so that write
transactions can start with BEGIN IMMEDIATE: they take the write lock before reading, and a
concurrent writer then waits for the busy timeout instead of failing with "database is locked"
when it upgrades a stale snapshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from connector.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option that marks an engine's transactions as writes (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "connector_write"
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
_ERROR_TEXT_CHARS = 300
_WAL_RETRY_SECONDS = 0.05
_PG_RECYCLE_SECONDS = 1800


def parse_url(url: str) -> URL:
    """Parses a store URL; plain `sqlite:` / `postgresql:` URLs get their async driver."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError("store URL is not a valid SQLAlchemy URL") from exc
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            "unsupported store database; use sqlite+aiosqlite:///file.db or postgresql+asyncpg://...",
            backend=parsed.get_backend_name(),
        )
    return parsed


def describe_url(url: URL) -> str:
    """The URL as safe to show: password hidden."""
    return url.render_as_string(hide_password=True)


def create_engine(url: URL) -> AsyncEngine:
    """An async engine for `url`; creates a SQLite file's directory."""
    if url.get_backend_name() == "sqlite":
        _ensure_sqlite_directory(url)
        engine = create_async_engine(url)
        _install_sqlite_hooks(engine)
        return engine
    try:
        # No pool_pre_ping: it cost 3-4x per operation on asyncpg. A connection broken by a
        # server restart fails one operation (StoreError) and SQLAlchemy then drops the pool.
        return create_async_engine(url, pool_size=5, max_overflow=10, pool_recycle=_PG_RECYCLE_SECONDS)
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreError("cannot create the database engine", url=describe_url(url)) from exc


def _ensure_sqlite_directory(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError("cannot create the SQLite database directory", path=database) from exc


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the driver; _on_begin below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


async def enable_sqlite_wal(engine: AsyncEngine) -> None:
    """Switches the SQLite file to WAL (a persistent property of the file).

    Done once at open, not per connection: the switch needs an exclusive lock and SQLite may
    refuse it at once ("database is locked") without consulting the busy timeout while another
    connection is using a brand-new file, so it is retried here until the busy timeout passes.
    """
    if (engine.url.database or ":memory:") == ":memory:":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    async with engine.connect() as conn:
        # On the driver connection, so no BEGIN is emitted: the mode cannot change in a transaction.
        driver: Any = (await conn.get_raw_connection()).driver_connection
        while True:
            try:
                cursor = await driver.execute("PRAGMA journal_mode = WAL")
                row = await cursor.fetchone()
                await cursor.close()
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(_WAL_RETRY_SECONDS)
                continue
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError("SQLite refused WAL mode", path=engine.url.database)
            return


def error_text(exc: BaseException, secret: str | None = None) -> str:
    """A short description of a driver error: no SQL, no bound parameters (which may hold
    message bytes), and never the password."""
    orig = getattr(exc, "orig", None) or exc
    if orig.__cause__ is not None:  # SQLAlchemy's asyncpg adapter wraps the driver's own class
        orig = orig.__cause__
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else ""
    text = f"{type(orig).__name__}: {first}" if first else type(orig).__name__
    if secret:
        text = text.replace(secret, "***")
    return text[:_ERROR_TEXT_CHARS]


@contextmanager
def translated_errors(operation: str, secret: str | None = None, **context: Any) -> Iterator[None]:
    """Turns SQLAlchemy, driver and network errors into StoreError naming the operation."""
    try:
        yield
    except StoreError:
        raise
    except (SQLAlchemyError, sqlite3.Error, OSError, TimeoutError) as exc:
        raise StoreError(
            f"store {operation} failed: {error_text(exc, secret)}", operation=operation, **context
        ) from exc
