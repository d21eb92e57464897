"""/api/v1/status reuses each mailbox's row until one of its fields changes, and only then."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from connector.api.admin import _RowCache
from connector.errors import IWDUnavailable
from connector.status import StatusBoard


def context(board: StatusBoard, ids: list[str]) -> SimpleNamespace:
    settings = SimpleNamespace(mailboxes=[SimpleNamespace(id=i) for i in ids])
    return SimpleNamespace(daemon=SimpleNamespace(settings=settings, runners=dict.fromkeys(ids)), board=board)


def rows(cache: _RowCache, ctx: SimpleNamespace) -> dict[str, dict[str, object]]:
    return {m["mailboxId"]: m for m in json.loads(cache.document(ctx))["mailboxes"]}  # type: ignore[arg-type]


def test_a_changed_field_a_pause_and_a_field_added_later_each_show_in_the_next_document() -> None:
    """A failure, a pause and an attribute another module adds (a field a later change adds) are never hidden
    by the cached row; an unchanged mailbox keeps its cached text."""
    board = StatusBoard()
    now = datetime.now(UTC)
    for box in ("a", "b"):
        board.inbound_succeeded(box, now, 0)
    cache, ctx = _RowCache(), context(board, ["a", "b"])
    first = rows(cache, ctx)
    assert first["a"]["inbound"]["state"] == "ok"  # type: ignore[index]
    cached_b = cache.rows["b"][1]
    board.inbound_fault("a", now, IWDUnavailable("IWD POST /emails failed: HTTP 503"))
    assert rows(cache, ctx)["a"]["inbound"]["state"] == "degraded"  # type: ignore[index]
    board.set_paused("a", True)
    assert rows(cache, ctx)["a"]["paused"] is True
    assert cache.rows["b"][1] is cached_b
    status = board.get("b")
    status.added_later = "value"  # type: ignore[attr-defined]
    original = type(status).to_admin_json
    try:
        type(status).to_admin_json = lambda s: original(s) | {"addedLater": getattr(s, "added_later", None)}  # type: ignore[method-assign]
        assert rows(cache, ctx)["b"]["addedLater"] == "value"
    finally:
        type(status).to_admin_json = original  # type: ignore[method-assign]


def test_one_process_rows_name_this_replica_as_the_owner_of_what_it_runs() -> None:
    """Without leases the cached rows carry this process's replica id for the mailboxes it runs."""
    board = StatusBoard()
    for box in ("a", "b"):
        board.inbound_succeeded(box, datetime.now(UTC), 0)
    ctx = context(board, ["a", "b"])
    del ctx.daemon.runners["b"]
    found = {m["mailboxId"]: m for m in json.loads(_RowCache().document(ctx, "host-1"))["mailboxes"]}  # type: ignore[arg-type]
    assert (found["a"]["owner"], found["a"]["leaseExpiresAt"]) == ("host-1", None)
    assert found["b"]["owner"] is None
