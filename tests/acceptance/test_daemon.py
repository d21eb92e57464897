"""The running daemon: resumes by itself after an IWD outage, isolates mailboxes, stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from connector.config import ConnectorSettings
from connector.errors import IWDUnavailable
from connector.runtime.daemon import Daemon
from connector.sandbox import SandboxIWD
from connector.status import MailboxState, StatusBoard
from connector.store.types import Store
from providers.maildir import deliver_to_maildir
from providers.registry import build_inbound
from tests.acceptance.daemon_process import OutputLines, child_env, start_connector, write_config
from tests.mailfactory import make_message
from tests.peers.sandbox import iwd_settings, real_client


async def wait_for(predicate: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if await predicate():  # type: ignore[operator]
                return
        except IWDUnavailable:
            pass  # the peer is still down; keep waiting
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached before the deadline")


def settings_for(
    sandbox: SandboxIWD, boxes: list[dict[str, object]], retry: float = 0.5
) -> ConnectorSettings:
    return ConnectorSettings.model_validate(
        {
            "iwd": iwd_settings(sandbox.url, max_retry_seconds=retry).model_dump()
            | {"api_key": "sandbox-key"},
            "mailboxes": boxes,
        }
    )


def box(mailbox_id: str, path: Path) -> dict[str, object]:
    return {
        "id": mailbox_id,
        "address": f"{mailbox_id}@example.com",
        "provider": "maildir",
        "maildir": {"path": str(path)},
        "poll_interval_seconds": 1,
    }


async def test_delivery_resumes_by_itself_after_iwd_was_down(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """IWD down for 3 s while mail waits: the mailbox goes degraded, then everything arrives once."""
    for n in range(3):
        deliver_to_maildir(tmp_path / "a", make_message(n), f"m{n}")
    board = StatusBoard()
    sandbox_iwd.down_for(3.0)
    settings = settings_for(sandbox_iwd, [box("resume", tmp_path / "a")])
    async with real_client(sandbox_iwd, max_retry_seconds=0.5) as iwd:
        daemon = Daemon(settings, store, iwd, provider_factory=build_inbound, board=board)
        await daemon.start()
        try:

            async def degraded() -> bool:
                return board.get("resume").inbound.state is MailboxState.DEGRADED

            await wait_for(degraded)
            assert len(os.listdir(tmp_path / "a" / "new")) == 3

            async def recovered() -> bool:
                # IWD holds the items a moment before the commit, the post-action and the status
                # that follow it: wait for all three, as an administrator would see them
                items = [i async for i in iwd.iter_emails(mailbox_id="resume")]
                state = board.get("resume").inbound.state
                return len(items) == 3 and state is MailboxState.OK and not os.listdir(tmp_path / "a" / "new")

            await wait_for(recovered)
        finally:
            await daemon.stop()
    assert board.get("resume").inbound.delivered_total == 3


async def test_a_broken_mailbox_does_not_hold_up_the_others(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """One mailbox whose folder is missing reports error; its neighbour delivers as usual."""
    deliver_to_maildir(tmp_path / "good", make_message(1), "m1")
    settings = settings_for(
        sandbox_iwd, [box("broken", tmp_path / "missing"), box("good", tmp_path / "good")]
    )
    board = StatusBoard()
    async with real_client(sandbox_iwd) as iwd:
        reports = await Daemon(settings, store, iwd, provider_factory=build_inbound, board=board).run_once()
    assert reports["broken"] is None and reports["good"] is not None and reports["good"].delivered == 1
    broken = board.get("broken").inbound
    assert broken.state is MailboxState.ERROR and broken.last_error is not None
    assert broken.last_error.code == "folder_missing"


async def test_sigterm_finishes_in_flight_work_and_exits_zero(
    tmp_path: Path, sandbox_iwd: SandboxIWD
) -> None:
    """SIGTERM while delivering under IWD latency: exit 0, the batch in flight finishes rather than
    being cancelled, and nothing is marked on the server that IWD does not hold."""
    for n in range(20):
        deliver_to_maildir(tmp_path / "Maildir", make_message(n), f"m{n:02d}")
    # one slow POST per item (no batch create), so the signal lands in the middle of the work
    sandbox_iwd.control.faults.set(latency_seconds=0.1, batch_disabled=True)
    config = write_config(tmp_path, sandbox_iwd.url, mailbox="sigterm")
    proc = start_connector(config, "run", env=child_env())
    async with real_client(sandbox_iwd) as iwd:

        async def some_delivered() -> bool:
            return len([i async for i in iwd.iter_emails(mailbox_id="sigterm")]) >= 3

        await wait_for(some_delivered)
        at_signal = len([i async for i in iwd.iter_emails(mailbox_id="sigterm")])
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, stderr
        delivered = [i async for i in iwd.iter_emails(mailbox_id="sigterm")]
    marked = [n for n in os.listdir(tmp_path / "Maildir" / "cur")]
    # every marked message is in IWD; nothing is marked that IWD does not hold
    assert at_signal < 20  # the signal landed in the middle of the work
    assert len(marked) <= len(delivered)
    sandbox_iwd.control.faults.reset()
    proc2 = start_connector(config, "run", env=child_env())
    assert proc2.stdout is not None
    output = OutputLines(proc2.stdout)
    async with real_client(sandbox_iwd) as iwd:

        async def all_there() -> bool:
            return len([i async for i in iwd.iter_emails(mailbox_id="sigterm")]) == 20

        await wait_for(all_there)
    await asyncio.to_thread(output.wait_for, "daemon_started")  # its SIGTERM handler is in place
    proc2.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc2.wait, 30)
    assert proc2.returncode == 0, output.finish()[-5:]


async def test_a_cycle_longer_than_the_interval_makes_the_scheduler_skip_nothing(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1 s interval and a cycle of several seconds: the interval job only starts cycles, so
    APScheduler never logs "maximum number of running instances" and all mail arrives once."""
    for n in range(24):
        deliver_to_maildir(tmp_path / "slow", make_message(n), f"m{n:02d}")
    # one POST per item, 4 in flight: about 3 s for the batch
    sandbox_iwd.control.faults.set(latency_seconds=0.5, batch_disabled=True)
    caplog.set_level(logging.INFO, logger="apscheduler")
    settings = settings_for(sandbox_iwd, [box("slow", tmp_path / "slow")], retry=5)
    async with real_client(sandbox_iwd) as iwd:
        daemon = Daemon(settings, store, iwd, provider_factory=build_inbound)
        await daemon.start()
        try:

            async def all_there() -> bool:
                return len([i async for i in iwd.iter_emails(mailbox_id="slow")]) == 24

            await wait_for(all_there)
        finally:
            await daemon.stop()
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
