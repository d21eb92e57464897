"""The PostgreSQL every session and CI run at 127.0.0.1:5432 (trust auth): a fresh database per test.

Each test gets a database of its own, dropped afterwards (WITH (FORCE): a daemon a test killed may
still hold a connection), so tests never see each other's rows.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_HOST, PG_PORT = "127.0.0.1", 5432


def postgres_listening() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """The URL of an empty database made for this test; skips the test when nothing listens."""
    if not postgres_listening():
        pytest.skip(f"nothing listens on {PG_HOST}:{PG_PORT}; this test needs PostgreSQL")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test", isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
