"""StatusReporter: bursts coalesce into one PUT per mailbox, nothing unchanged is resent, IWD down waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.config import ConnectorSettings, MailboxSettings, StatusSettings
from connector.iwd import IWDClient
from connector.runtime import reporter as reporter_module
from connector.runtime.daemon import Daemon
from connector.runtime.reporter import StatusReporter
from connector.sandbox import SandboxControl, control_of, create_app
from connector.status import MailboxStatus, StatusBoard
from connector.store.types import Store
from tests.acceptance.status_rig import maildir_box
from tests.conftest import maildir_mailbox
from tests.peers.sandbox import asgi_client, iwd_settings


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[tuple[IWDClient, SandboxControl]]:
    app = create_app(str(tmp_path / "iwd.db"))
    async with asgi_client(app, max_retry_seconds=0) as client:
        yield client, control_of(app)


async def test_a_burst_of_changes_is_one_put_and_unchanged_status_is_not_resent(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """50 deliveries then a flush: one status PUT and one config PUT; a second flush sends nothing."""
    iwd, control = sandbox
    board = StatusBoard()
    box = maildir_mailbox(tmp_path, "burst")
    reporter = StatusReporter(board, iwd, lambda: [box], StatusSettings())
    for _ in range(50):
        board.inbound_delivered("burst", 1.0)
    assert await reporter.flush() is True
    assert await reporter.flush() is True
    assert control.requests.count("PUT", "/iwd/v3/emails/mailboxes/burst/status") == 1
    assert control.requests.count("PUT", "/iwd/v3/emails/mailboxes/burst") == 1
    stored = control.store.list_mailboxes()[0]
    assert stored["status"]["inbound"]["deliveredTotal"] == 50
    assert stored["config"]["maildir"]["path"] == str(tmp_path)


async def test_iwd_down_keeps_the_change_for_later_without_raising(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """A failed PUT returns False (no exception) and the same change is sent once IWD answers."""
    iwd, control = sandbox
    board = StatusBoard()
    board.inbound_succeeded("x", datetime.now(UTC), quarantined=2)
    reporter = StatusReporter(board, iwd, lambda: [], StatusSettings())
    control.faults.set(fail_next=10, fail_status=503)
    assert await reporter.flush() is False
    assert reporter.failing
    control.faults.reset()
    assert await reporter.flush() is True
    assert not reporter.failing
    assert control.store.list_mailboxes()[0]["status"]["inbound"]["quarantined"] == 2


async def test_heartbeat_resends_everything(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """force=True (the heartbeat) PUTs status and config even when nothing changed."""
    iwd, control = sandbox
    board = StatusBoard()
    board.get("hb")
    reporter = StatusReporter(board, iwd, lambda: [maildir_mailbox(tmp_path, "hb")], StatusSettings())
    await reporter.flush()
    await reporter.flush(force=True)
    assert control.requests.count("PUT", "/iwd/v3/emails/mailboxes/hb/status") == 2


MAILBOX_PUT = "PUT /iwd/v3/emails/mailboxes/"


def put_ids(control: SandboxControl, kind: str) -> list[str]:
    """The mailboxes IWD received a `kind` ("status" or "config") PUT for, once per request."""
    ids: list[str] = []
    for key, count in control.requests.snapshot().items():
        if not key.startswith(MAILBOX_PUT):
            continue
        rest = key.removeprefix(MAILBOX_PUT)
        if rest.endswith("/status") == (kind == "status"):
            ids += [rest.removesuffix("/status")] * count
    return sorted(ids)


def delivered_totals(control: SandboxControl) -> dict[str, int]:
    """Each mailbox's inbound deliveredTotal as IWD stored it."""
    return {m["mailboxId"]: m["status"]["inbound"]["deliveredTotal"] for m in control.store.list_mailboxes()}


@dataclass
class Work:
    """Status bodies and configuration views built: the per-mailbox cost of a flush."""

    bodies: int = 0
    views: int = 0


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    counted = Work()
    real_to_json = MailboxStatus.to_json
    real_view = reporter_module.public_view

    def to_json(status: MailboxStatus) -> dict[str, Any]:
        counted.bodies += 1
        return real_to_json(status)

    def public_view(box: MailboxSettings) -> dict[str, Any]:
        counted.views += 1
        return real_view(box)

    monkeypatch.setattr(MailboxStatus, "to_json", to_json)
    monkeypatch.setattr(reporter_module, "public_view", public_view)
    return counted


@dataclass
class Settings:
    """The daemon's settings as the reporter sees them: a reload replaces `mailboxes` (a new list)."""

    mailboxes: Sequence[MailboxSettings]


async def reported_fleet(
    tmp_path: Path, iwd: IWDClient, control: SandboxControl, count: int = 200
) -> tuple[StatusBoard, Settings, StatusReporter]:
    """`count` mailboxes, each reported once already (the request log is then cleared)."""
    board = StatusBoard()
    settings = Settings([maildir_mailbox(tmp_path, f"m-{i:03}") for i in range(count)])
    reporter = StatusReporter(board, iwd, lambda: settings.mailboxes, StatusSettings())
    for box in settings.mailboxes:
        board.set_delivered_total(box.id, 0)
    assert await reporter.flush() is True
    assert len(put_ids(control, "status")) == len(put_ids(control, "config")) == count
    control.requests.reset()
    return board, settings, reporter


async def test_one_changed_mailbox_among_200_costs_one_status_put_and_one_body(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl], work: Work
) -> None:
    """Only the changed mailbox is looked at: one status PUT, no config PUT, one body built."""
    iwd, control = sandbox
    board, _, reporter = await reported_fleet(tmp_path, iwd, control)
    board.inbound_delivered("m-007", 2.0)
    work.bodies = work.views = 0
    assert await reporter.flush() is True
    assert put_ids(control, "status") == ["m-007"]
    assert put_ids(control, "config") == []
    assert (work.bodies, work.views) == (1, 0)


async def test_a_flush_with_nothing_changed_sends_nothing_and_builds_nothing(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl], work: Work
) -> None:
    """At rest a flush does no per-mailbox work: no status body, no configuration view, no PUT."""
    iwd, control = sandbox
    _, _, reporter = await reported_fleet(tmp_path, iwd, control)
    work.bodies = work.views = 0
    assert await reporter.flush() is True
    assert control.requests.count("PUT", prefix="/iwd/v3/emails/mailboxes/") == 0
    assert (work.bodies, work.views) == (0, 0)


async def test_a_status_put_that_failed_is_sent_by_a_later_flush_without_another_change(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl], work: Work
) -> None:
    """IWD answering 503 loses no update: the next flush retries that mailbox, and only that one."""
    iwd, control = sandbox
    board, _, reporter = await reported_fleet(tmp_path, iwd, control)
    board.inbound_delivered("m-042", 2.0)
    control.faults.set(fail_next=1, fail_status=503)
    assert await reporter.flush() is False
    assert delivered_totals(control)["m-042"] == 0
    control.faults.reset()
    control.requests.reset()
    work.bodies = 0
    assert await reporter.flush() is True
    assert put_ids(control, "status") == ["m-042"]
    assert work.bodies == 1
    assert delivered_totals(control)["m-042"] == 1


async def test_a_reload_that_changes_one_mailbox_sends_that_one_config_and_no_status(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl], work: Work
) -> None:
    """A new mailbox list (a reload) is compared once: one config PUT; no status body is built."""
    iwd, control = sandbox
    _, settings, reporter = await reported_fleet(tmp_path, iwd, control)
    reloaded = list(settings.mailboxes)
    reloaded[5] = maildir_mailbox(tmp_path, "m-005", poll_interval_seconds=30)
    settings.mailboxes = reloaded
    work.bodies = 0
    assert await reporter.flush() is True
    assert put_ids(control, "config") == ["m-005"]
    assert put_ids(control, "status") == []
    assert work.bodies == 0
    configs = {m["mailboxId"]: m["config"] for m in control.store.list_mailboxes()}
    assert configs["m-005"]["poll_interval_seconds"] == 30


async def test_a_mailbox_held_by_another_replica_is_reported_once_this_one_takes_it(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl]
) -> None:
    """Skipped while another replica holds it; the take (Daemon.take touches it) sends status and
    config, though neither changed meanwhile."""
    iwd, control = sandbox
    box = maildir_mailbox(tmp_path, "leased")
    board = StatusBoard()
    held: set[str] = set()
    reporter = StatusReporter(board, iwd, lambda: [box], StatusSettings(), holds=held.__contains__)
    board.set_delivered_total("leased", 4)
    assert await reporter.flush() is True
    assert control.requests.count("PUT", prefix="/iwd/v3/emails/mailboxes/") == 0
    held.add("leased")
    board.touch("leased")
    assert await reporter.flush() is True
    assert put_ids(control, "status") == put_ids(control, "config") == ["leased"]
    assert control.store.list_mailboxes()[0]["status"]["inbound"]["deliveredTotal"] == 4


async def test_a_reload_that_changes_no_mailbox_costs_the_reporter_no_configuration_view(
    tmp_path: Path, sandbox: tuple[IWDClient, SandboxControl], store: Store, work: Work
) -> None:
    """config_source iwd reloads every 30 s: an unchanged configuration keeps the daemon's mailbox
    list, so the next flush derives no view and sends nothing."""
    iwd, control = sandbox
    boxes = [maildir_box(f"m-{i}", tmp_path) for i in range(20)]
    settings = ConnectorSettings.model_validate({"iwd": iwd_settings().model_dump(), "mailboxes": boxes})
    daemon = Daemon(settings, store, iwd, provider_factory=lambda box: pytest.fail("no runner is built"))
    reporter = StatusReporter(daemon.board, iwd, lambda: daemon.settings.mailboxes, StatusSettings())
    assert await reporter.flush() is True
    control.requests.reset()
    work.views = 0
    result = await daemon.apply_settings(settings.model_copy(deep=True))
    assert result == {"added": [], "changed": [], "removed": []}
    assert await reporter.flush() is True
    assert (work.views, control.requests.count("PUT")) == (0, 0)


async def test_a_change_made_while_a_put_is_in_flight_is_sent_at_once_not_at_the_heartbeat(
    sandbox: tuple[IWDClient, SandboxControl],
) -> None:
    """A delivery counted while the previous status PUT is still on the wire wakes the reporter
    again: IWD has the new total within seconds, not a heartbeat (here 10 minutes) later."""
    iwd, control = sandbox
    board = StatusBoard()
    board.get("w")
    reporter = StatusReporter(
        board, iwd, lambda: [], StatusSettings(heartbeat_seconds=600, coalesce_seconds=0)
    )
    await reporter.start()
    try:
        await _until(lambda: control.requests.count("PUT", "/iwd/v3/emails/mailboxes/w/status") == 1)
        control.faults.set(latency_seconds=0.5, latency_next=1)
        board.inbound_delivered("w", None)
        await _until(lambda: control.requests.in_flight > 0)
        board.inbound_delivered("w", None)  # while the PUT of the first delivery is on the wire
        await _until(lambda: _delivered_in_iwd(control) == 2, within=5)
    finally:
        await reporter.stop()


def _delivered_in_iwd(control: SandboxControl) -> int:
    status = control.store.list_mailboxes()[0].get("status") or {}
    return int(status.get("inbound", {}).get("deliveredTotal", 0))


async def _until(predicate: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.01)
