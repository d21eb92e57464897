"""Each mailbox state reached through a real cause, seen in the sandbox IWD; /metrics matches IWD."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.config import MailboxSettings
from connector.models import FetchResult, PostAction, RawMessage
from connector.sandbox import SandboxIWD
from connector.status import MailboxState
from connector.store.types import Store
from providers.base import InboundProvider
from providers.maildir import MaildirInboundProvider, deliver_to_maildir
from tests.acceptance.status_rig import iwd_mailbox, iwd_state, maildir_box, running, settings_for, wait_for
from tests.mailfactory import make_message
from tests.peers.dovecot import Dovecot, imap_mailbox_config, sample_message
from tests.peers.sandbox import real_client


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(spare_users=4) as server:
        yield server


def imap_box(dovecot: Dovecot, user: str, password: str, mailbox_id: str = "imap-box") -> dict[str, Any]:
    return imap_mailbox_config(
        dovecot,
        (user, password),
        mailbox_id=mailbox_id,
        mailbox={"poll_interval_seconds": 1},
        timeout_seconds=5,
        idle=False,
    )


async def test_wrong_password_is_auth_required_in_iwd(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """A password Dovecot refuses makes the mailbox auth_required, with a secret-free lastError, in IWD."""
    user, _ = dovecot.add_user()
    settings = settings_for(sandbox_iwd, [imap_box(dovecot, user, "Not-The-Password-4411")])
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd):
        await wait_for(
            lambda: _true(iwd_state(sandbox_iwd, "imap-box") == "auth_required"), what="auth_required in IWD"
        )
    status = (iwd_mailbox(sandbox_iwd, "imap-box") or {})["status"]
    assert status["inbound"]["lastError"]["code"] == "auth_required"
    assert "Not-The-Password-4411" not in str(status)


async def test_dovecot_stopped_is_degraded_in_iwd_after_ok(sandbox_iwd: SandboxIWD, store: Store) -> None:
    """A working IMAP mailbox is ok in IWD; with Dovecot stopped it turns degraded naming the mail
    server, and back to ok after."""
    with Dovecot(spare_users=1) as server:
        user, password = server.add_user()
        server.deliver(user, [sample_message(1)])
        settings = settings_for(sandbox_iwd, [imap_box(server, user, password, "flaky")])
        async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd):

            async def ok_with_item() -> bool:
                status = (iwd_mailbox(sandbox_iwd, "flaky") or {}).get("status") or {}
                inbound = status.get("inbound", {})
                return bool(inbound.get("state") == "ok" and inbound.get("deliveredTotal") == 1)

            await wait_for(ok_with_item, what="ok with one delivery in IWD")
            await asyncio.to_thread(server.stop)
            await wait_for(
                lambda: _true(iwd_state(sandbox_iwd, "flaky") == "degraded"), what="degraded in IWD"
            )
            last_error = (iwd_mailbox(sandbox_iwd, "flaky") or {})["status"]["inbound"]["lastError"]
            assert (last_error["code"], last_error["peer"]) == ("unavailable", "mail_server")
            await asyncio.to_thread(server.start)
            await wait_for(lambda: _true(iwd_state(sandbox_iwd, "flaky") == "ok"), what="ok again in IWD")


async def test_iwd_down_is_degraded_and_the_status_arrives_once_iwd_is_back(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """IWD unreachable: the mailbox is degraded with its backlog; once IWD is back, items and an ok
    status (whose lastError tells of the outage) arrive without anyone acting."""
    for n in range(3):
        deliver_to_maildir(tmp_path / "m", make_message(n), f"m{n}")
    sandbox_iwd.down_for(2.5)
    settings = settings_for(sandbox_iwd, [maildir_box("outage", tmp_path / "m")], retry=0.3)
    async with real_client(sandbox_iwd, max_retry_seconds=0.3) as iwd, running(settings, store, iwd) as rig:
        await wait_for(
            lambda: _true(rig.board.get("outage").inbound.state is MailboxState.DEGRADED), what="degraded"
        )
        assert rig.board.get("outage").inbound.backlog == 3

        async def ok_in_iwd() -> bool:
            status = (iwd_mailbox(sandbox_iwd, "outage") or {}).get("status") or {}
            return bool(
                status.get("inbound", {}).get("deliveredTotal") == 3 and status["inbound"]["state"] == "ok"
            )

        await wait_for(ok_in_iwd, what="ok status with 3 deliveries in IWD")
    status = (iwd_mailbox(sandbox_iwd, "outage") or {})["status"]["inbound"]
    assert status["lastError"]["code"] == "iwd_unavailable"
    assert status["backlog"] == 0
    assert sandbox_iwd.control.store.count_items() == 3


class _NeverEndingFetch:
    """A provider whose fetch never returns (a hung server that keeps the socket open)."""

    def __init__(self) -> None:
        self.closed = False

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


async def test_a_cycle_that_never_ends_is_stalled_then_restarted(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """The first connection hangs forever: the watchdog marks the mailbox stalled (seen in IWD), cancels
    the cycle, builds a new connection, and the mail then arrives."""
    deliver_to_maildir(tmp_path / "m", make_message(1), "m1")
    hung = _NeverEndingFetch()
    built: list[InboundProvider] = []

    def factory(box: MailboxSettings) -> InboundProvider:
        provider: InboundProvider = hung if not built else MaildirInboundProvider(box)
        built.append(provider)
        return provider

    settings = settings_for(sandbox_iwd, [maildir_box("hang", tmp_path / "m")])
    async with (
        real_client(sandbox_iwd) as iwd,
        running(settings, store, iwd, provider_factory=factory) as rig,
    ):
        seen_stalled = False

        async def stalled_in_iwd() -> bool:
            nonlocal seen_stalled
            seen_stalled = seen_stalled or iwd_state(sandbox_iwd, "hang") == "stalled"
            return seen_stalled

        await wait_for(stalled_in_iwd, what="stalled in IWD")
        await wait_for(lambda: _true(sandbox_iwd.control.store.count_items() == 1), what="the mail delivered")
        await wait_for(lambda: _true(iwd_state(sandbox_iwd, "hang") == "ok"), what="ok after restart")
        assert hung.closed and len(built) >= 2
        assert rig.daemon.metrics.stalls.labels("hang")._value.get() >= 1


async def test_metrics_parse_and_their_delivery_counts_match_iwd(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """/metrics is valid Prometheus text; items_delivered per mailbox equals the items IWD holds."""
    for n in range(4):
        deliver_to_maildir(tmp_path / "a", make_message(n), f"a{n}")
    for n in range(2):
        deliver_to_maildir(tmp_path / "b", make_message(10 + n), f"b{n}")
    boxes = [maildir_box("alpha", tmp_path / "a"), maildir_box("beta", tmp_path / "b")]
    settings = settings_for(sandbox_iwd, boxes)
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        await wait_for(lambda: _true(sandbox_iwd.control.store.count_items() == 6), what="6 items")
        # IWD holds an item a moment before the ledger commit that counts it: wait for the count
        board = rig.board
        await wait_for(
            lambda: _true(
                board.get("alpha").inbound.delivered_total + board.get("beta").inbound.delivered_total == 6
            ),
            what="6 committed deliveries",
        )
        async with rig.http() as http:
            text = (await http.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        delivered = {
            s.labels["mailbox"]: s.value
            for s in families["iwd_email_items_delivered"].samples
            if s.name.endswith("_total")
        }
        in_iwd = {box: len([i async for i in iwd.iter_emails(mailbox_id=box)]) for box in ("alpha", "beta")}
        assert delivered == {k: float(v) for k, v in in_iwd.items()} == {"alpha": 4.0, "beta": 2.0}
        states = {
            (s.labels["mailbox"], s.labels["state"])
            for s in families["iwd_email_mailbox_state"].samples
            if s.labels["direction"] == "inbound" and s.value == 1
        }
        assert states == {("alpha", "ok"), ("beta", "ok")}
        assert "iwd_email_iwd_request_duration_seconds" in families
        assert "iwd_email_poll_duration_seconds" in families
        assert "iwd_email_arrival_to_item_seconds" in families
        routes = {s.labels["route"] for s in families["iwd_email_iwd_request_duration_seconds"].samples}
        assert routes & {"/emails", "/emails/batch"}  # items are created one by one or in batches


async def _true(value: bool) -> bool:
    return value
