"""The IMAP connection budget (issue #9) in the running daemon against a real Dovecot: the server
never sees more sessions than `imap_connections` allows, every mailbox's mail still becomes an
item, IDLE mailboxes keep their session, and logins to one host are paced.

What the server saw comes from two places: Dovecot's own log (one `Login:` and one `Logged out` /
`Disconnected` line per session, microsecond timestamps) and a sampler that counts the
established TCP connections on Dovecot's port in /proc/net/tcp throughout the run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from connector.sandbox import SandboxIWD
from connector.store.types import Store
from tests.acceptance.replica_peers import Session, all_sessions_closed, imap_sessions
from tests.acceptance.status_rig import Running, running, settings_for, wait_for
from tests.acceptance.test_outages import _pushed_delivery, _true
from tests.peers.dovecot import Dovecot, imap_mailbox_config, sample_message
from tests.peers.sandbox import real_client

_ESTABLISHED = "01"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(spare_users=24) as server:
        yield server


def established(port: int) -> int:
    """Server-side TCP connections on `port` in state ESTABLISHED (IPv4 loopback)."""
    peers = set()  # a set: a line read twice (the table moves between reads) counts once
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == _ESTABLISHED:
                peers.add(fields[2])
    return len(peers)


@contextlib.contextmanager
def sampled_connections(port: int, every_seconds: float = 0.005) -> Iterator[list[int]]:
    """Counts Dovecot's established connections every few ms in a thread; the list fills meanwhile."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(established(port))
            stop.wait(every_seconds)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def peak_sessions(sessions: list[Session]) -> int:
    """The most sessions Dovecot had open at one time, from its log (an end sorts before a start
    at the same instant; a session still open counts until the end)."""
    events: list[tuple[datetime, int]] = []
    for s in sessions:
        events.append((s.start, 1))
        if s.end is not None:
            events.append((s.end, -1))
    peak = now = 0
    for _, change in sorted(events):
        now += change
        peak = max(peak, now)
    return peak


def server_warnings(dovecot: Dovecot) -> list[str]:
    """Dovecot's log lines above Info (IDLE falls back to a 30 s poll when inotify runs out)."""
    lines = dovecot.log_file.read_text(errors="replace").splitlines()
    return [line for line in lines if ": Info: " not in line]


def polled_box(dovecot: Dovecot, user: tuple[str, str], mailbox_id: str) -> dict[str, Any]:
    return imap_mailbox_config(
        dovecot, user, mailbox_id=mailbox_id, mailbox={"poll_interval_seconds": 1}, idle=False
    )


async def _count(sandbox: SandboxIWD, want: int) -> bool:
    return sandbox.control.store.count_items() >= want


def metric(rig: Running, name: str) -> float:
    value = rig.daemon.metrics.registry.get_sample_value(name, {"host": "127.0.0.1"})
    return value or 0.0


async def test_eight_polled_mailboxes_share_three_sessions_and_all_mail_becomes_items(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """max_total 3, eight polled mailboxes (IDLE off) with mail before and during the run: every
    message becomes an item, and Dovecot never holds more than 3 sessions of ours at once."""
    users = [dovecot.add_user() for _ in range(8)]
    for i, (user, _) in enumerate(users):
        dovecot.deliver(user, [sample_message(10 * i + k) for k in range(2)])
    boxes = [polled_box(dovecot, user, f"polled{i}") for i, user in enumerate(users)]
    settings = settings_for(sandbox_iwd, boxes, imap_connections={"max_total": 3})
    with sampled_connections(dovecot.tls_port) as samples:
        async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
            await wait_for(lambda: _count(sandbox_iwd, 16), within=30, what="the 16 waiting messages")
            for i, (user, _) in enumerate(users):
                dovecot.deliver(user, [sample_message(10 * i + 5)])
            await wait_for(lambda: _count(sandbox_iwd, 24), within=30, what="the 8 later messages")
            evictions = metric(rig, "iwd_email_imap_session_evictions_total")
            assert metric(rig, "iwd_email_imap_sessions_open") <= 3
    await wait_for(lambda: _true(all_sessions_closed(dovecot)), within=5, what="stop closes every session")
    sessions = imap_sessions(dovecot)
    assert sandbox_iwd.control.store.count_items() == 24
    assert peak_sessions(sessions) == 3, "the server's log shows more (or fewer) sessions at once"
    assert samples and max(samples) <= 3, f"established connections peaked at {max(samples)}"
    assert len(sessions) > 8 and evictions > 0  # the sessions really were passed around


async def test_idle_mailboxes_keep_their_session_while_polled_ones_share_the_rest(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """max_total 3, one IDLE mailbox and five polled ones: the IDLE mailbox logs in once and its
    mail still arrives by push within seconds; the five polled mailboxes pass 2 sessions around."""
    idle_user = dovecot.add_user()
    users = [dovecot.add_user() for _ in range(5)]
    for i, (user, _) in enumerate(users):
        dovecot.deliver(user, [sample_message(i)])
    idler = imap_mailbox_config(
        dovecot, idle_user, mailbox_id="idler", mailbox={"poll_interval_seconds": 60}, idle=True
    )
    boxes = [idler] + [polled_box(dovecot, user, f"polled{i}") for i, user in enumerate(users)]
    settings = settings_for(sandbox_iwd, boxes, imap_connections={"max_total": 3})
    with sampled_connections(dovecot.tls_port) as samples:
        async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
            await wait_for(lambda: _count(sandbox_iwd, 5), within=30, what="the polled mailboxes' mail")
            try:
                await _pushed_delivery(rig, dovecot, idle_user[0], "idler")
            except AssertionError as exc:  # e.g. inotify instances used up by other Dovecots
                raise AssertionError(f"{exc}; Dovecot said: {server_warnings(dovecot)}") from None
            pushed = rig.board.get("idler").inbound.delivered_total
            for round_ in range(2):  # in IDLE now: pushed mail arrives while the polled ones rotate
                dovecot.deliver(idle_user[0], [sample_message(100 + round_)])
                await wait_for(
                    lambda want=pushed + round_ + 1: _true(
                        rig.board.get("idler").inbound.delivered_total == want
                    ),
                    within=3,
                    what="a pushed message (IDLE latency is about 0.5 s)",
                )
            polled_sessions = [s for s in imap_sessions(dovecot) if s.user != idle_user[0]]
            idle_sessions = [s for s in imap_sessions(dovecot) if s.user == idle_user[0]]
            assert len(idle_sessions) == 1 and idle_sessions[0].end is None
            assert len(polled_sessions) > 5  # the five shared what was left
            assert metric(rig, "iwd_email_imap_session_evictions_total") > 0
    assert peak_sessions(imap_sessions(dovecot)) <= 3
    assert samples and max(samples) <= 3


async def test_logins_to_one_host_are_paced_at_the_configured_rate(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """20 mailboxes, 5 logins/s per host (bursts of 5): Dovecot logs their logins over at least
    about 3 s, and the daemon counts the delayed ones."""
    users = [dovecot.add_user() for _ in range(20)]
    boxes = [polled_box(dovecot, user, f"box{i}") for i, user in enumerate(users)]
    settings = settings_for(
        sandbox_iwd,
        boxes,
        imap_connections={"logins_per_second_per_host": 5},
        max_concurrent_mailboxes=20,
    )
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        mine = {user for user, _ in users}

        async def all_logged_in() -> bool:
            return {s.user for s in imap_sessions(dovecot)} >= mine

        await wait_for(all_logged_in, within=20, what="a login per mailbox")
        delayed = metric(rig, "iwd_email_imap_logins_delayed_total")
    first_logins = sorted(min(s.start for s in imap_sessions(dovecot) if s.user == u) for u in mine)
    spread = (first_logins[-1] - first_logins[0]).total_seconds()
    assert spread >= 2.8, f"20 logins within {spread:.2f} s"
    # no more than 5 (the burst) plus 5 per second in any window
    for i, start in enumerate(first_logins):
        within_one_second = [t for t in first_logins[i:] if (t - start).total_seconds() < 1.0]
        assert len(within_one_second) <= 10
    assert delayed >= 10  # the first runs are staggered by 50 ms: a few find a token


async def test_a_mailbox_waiting_for_its_login_turn_is_not_taken_for_stalled(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """0.4 logins/s and a 3 s stall window: the third mailbox waits 5 s for its login, longer than
    the window, yet the watchdog leaves it alone and its mail arrives."""
    users = [dovecot.add_user() for _ in range(3)]
    for i, (user, _) in enumerate(users):
        dovecot.deliver(user, [sample_message(i)])
    boxes = [polled_box(dovecot, user, f"slow{i}") for i, user in enumerate(users)]
    settings = settings_for(sandbox_iwd, boxes, imap_connections={"logins_per_second_per_host": 0.4})
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        await wait_for(lambda: _count(sandbox_iwd, 3), within=15, what="a message per mailbox")
        restarts = [rig.daemon.metrics.stalls.labels(f"slow{i}")._value.get() for i in range(3)]
    assert restarts == [0, 0, 0]
