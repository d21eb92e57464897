"""RLIMIT_NOFILE at start: the soft limit goes up to the hard one, never down, and is logged."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest
import structlog

from connector.config import ConnectorSettings
from connector.runtime.fd_limit import FD_HEADROOM, apply_fd_limit, raise_fd_limit


@pytest.fixture
def original_limit() -> Iterator[tuple[int, int]]:
    """The process's limits, put back afterwards (the soft one only: the hard one is never touched)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield soft, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def settings(max_total: int, imap_boxes: int) -> ConnectorSettings:
    box = {"provider": "imap", "address": "a@example.test"}
    imap = {"host": "imap.example", "username": "u", "password": "p"}
    return ConnectorSettings.model_validate(
        {
            "iwd": {"url": "http://127.0.0.1:1/iwd/v3", "api_key": "k", "ccid": "c"},
            "imap_connections": {"max_total": max_total},
            "mailboxes": [box | {"id": f"b{i}", "imap": imap} for i in range(imap_boxes)],
        }
    )


def test_the_soft_fd_limit_is_raised_to_the_hard_limit(original_limit: tuple[int, int]) -> None:
    """A soft limit below the hard one (the usual 1 024 of a shell) is raised to the hard one."""
    _, hard = original_limit
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip("needs a finite hard limit to lower the soft one under")
    lowered = min(256, hard - 1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    limit = raise_fd_limit()
    assert (limit.before, limit.after, limit.hard) == (lowered, hard, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_a_soft_limit_already_at_the_hard_one_is_left_as_it_is(original_limit: tuple[int, int]) -> None:
    """Nothing is lowered: with soft == hard the call changes nothing."""
    _, hard = original_limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = raise_fd_limit()
    assert limit.before == limit.after == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_start_logs_the_limit_and_warns_when_the_budget_could_reach_it(
    original_limit: tuple[int, int],
) -> None:
    """`fd_limit` is logged with before and after; a budget (capped by the IMAP mailboxes configured)
    plus headroom above the limit is a warning, one within it is not."""
    _, hard = original_limit
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip("needs a finite hard limit")
    with structlog.testing.capture_logs() as logs:
        apply_fd_limit(settings(max_total=hard, imap_boxes=2))
    assert [e["event"] for e in logs] == ["fd_limit"]
    assert logs[0]["after"] == hard
    too_many = hard - FD_HEADROOM + 1
    with structlog.testing.capture_logs() as logs:
        apply_fd_limit(settings(max_total=too_many, imap_boxes=too_many))
    assert [e["event"] for e in logs] == ["fd_limit", "fd_limit_low"]
    assert logs[1]["imap_sessions"] == too_many
