"""Fixtures for the replica runtime's tests (PostgreSQL databases made per test)."""

from tests.connector.runtime.pg import pg_store, pg_url  # noqa: F401  (fixtures)
