"""SQLite serves one daemon: a second `email-connector run` on the same file refuses to start,
naming the file and the process that holds it; read commands still work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from connector.runtime.sqlite_guard import SqliteGuard, StoreInUse, sqlite_guard

CLI = [sys.executable, "-m", "connector"]


def config_file(tmp_path: Path) -> tuple[Path, Path]:
    database = tmp_path / "data" / "store.db"
    (tmp_path / "md").mkdir()
    config = tmp_path / "connector.yaml"
    config.write_text(
        f"""
iwd: {{url: "http://127.0.0.1:9/iwd/v3", api_key: k, ccid: c}}
store: {{url: "sqlite+aiosqlite:///{database}"}}
http: {{enabled: false}}
mailboxes:
  - {{id: mb-1, address: mb-1@example.com, provider: maildir, maildir: {{path: "{tmp_path / "md"}"}}}}
""",
        encoding="utf-8",
    )
    return config, database


def test_a_second_guard_on_the_same_file_names_the_holder(tmp_path: Path) -> None:
    """The lock is exclusive; the refusal names the database file, our pid and host."""
    database = tmp_path / "store.db"
    first = SqliteGuard(database)
    first.acquire()
    try:
        with pytest.raises(StoreInUse) as refused:
            SqliteGuard(database).acquire()
        text = str(refused.value)
        assert str(database) in text and f"pid {os.getpid()}" in text and socket.gethostname() in text
    finally:
        first.release()
    again = SqliteGuard(database)
    again.acquire()  # released: free for the next daemon
    again.release()


def test_postgresql_and_memory_stores_have_no_guard() -> None:
    """Only a SQLite file is guarded; PostgreSQL is made for several replicas."""
    assert sqlite_guard("postgresql+asyncpg://postgres@127.0.0.1/x") is None
    assert sqlite_guard("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_guard("sqlite+aiosqlite:////tmp/x.db") is not None


def test_second_run_on_one_sqlite_file_exits_2_and_status_still_works(tmp_path: Path) -> None:
    """While a daemon holds the file, `run` exits 2 naming file and holder; `status` reads the store."""
    config, database = config_file(tmp_path)
    guard = SqliteGuard(database.resolve())
    guard.acquire()  # as the first daemon would
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
        run = subprocess.run(
            [*CLI, "run", "--config", str(config)], capture_output=True, text=True, env=env, timeout=60
        )
        assert run.returncode == 2, run.stderr
        assert str(database.resolve()) in run.stderr and f"pid {os.getpid()}" in run.stderr
        status = subprocess.run(
            [*CLI, "status", "--config", str(config)], capture_output=True, text=True, env=env, timeout=60
        )
        assert status.returncode == 0, status.stderr
        assert "mb-1" in status.stdout
    finally:
        guard.release()
