"""The open-file limit at start: each IMAP session is a socket, so the soft RLIMIT_NOFILE (often
1 024) is raised to the hard limit before any mailbox connects, and logged; a warning says when
the IMAP connection budget could still run into it."""

from __future__ import annotations

import resource
from dataclasses import dataclass

import structlog

from connector.config import ConnectorSettings

log = structlog.get_logger("connector.runtime.fd_limit")

FD_HEADROOM = 100  # store, HTTP server and clients, IWD client, logs, SMTP sends


@dataclass(frozen=True)
class FdLimit:
    before: int  # soft limit found at start (resource.RLIM_INFINITY: unlimited)
    after: int  # soft limit in force now
    hard: int


def raise_fd_limit() -> FdLimit:
    """Raises the soft RLIMIT_NOFILE to the hard one; never lowers it, never fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or (hard != resource.RLIM_INFINITY and soft >= hard):
        return FdLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # e.g. an unlimited hard limit the kernel caps (fs.nr_open)
        return FdLimit(soft, soft, hard)
    return FdLimit(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)


def expected_imap_sessions(settings: ConnectorSettings) -> int:
    """What the budget may hold open: its bound, or fewer when fewer IMAP mailboxes are configured
    (mailboxes from IWD are not known at start: the bound)."""
    bound = settings.imap_connections.max_total
    if settings.config_source != "file":
        return bound
    return min(bound, sum(1 for box in settings.mailboxes if box.provider == "imap"))


def apply_fd_limit(settings: ConnectorSettings) -> FdLimit:
    """`run`'s first step: raise the limit, say what it is, warn when it is too low."""
    limit = raise_fd_limit()
    shown = {k: _show(getattr(limit, k)) for k in ("before", "after", "hard")}
    log.info("fd_limit", **shown)
    sessions = expected_imap_sessions(settings)
    if limit.after != resource.RLIM_INFINITY and sessions + FD_HEADROOM > limit.after:
        log.warning(
            "fd_limit_low",
            limit=limit.after,
            imap_sessions=sessions,
            headroom=FD_HEADROOM,
            advice="raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower imap_connections.max_total",
        )
    return limit


def _show(value: int) -> int | str:
    return "unlimited" if value == resource.RLIM_INFINITY else value
