"""deliveredTotal counts IWD items (issue #12): a UIDVALIDITY change re-lists every message under a new
identity (an alias row in the ledger), which must not count again, live or after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.sandbox import SandboxIWD
from connector.store.types import Store
from tests.acceptance.status_rig import running, settings_for, wait_for
from tests.peers.dovecot import Dovecot, imap_mailbox_config, sample_message
from tests.peers.sandbox import real_client

MESSAGES = 6
BOX = "renumbered"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(spare_users=1) as server:
        yield server


def poll_box(dovecot: Dovecot, user: str, password: str) -> dict[str, Any]:
    return imap_mailbox_config(
        dovecot,
        (user, password),
        mailbox_id=BOX,
        mailbox={"poll_interval_seconds": 1},
        timeout_seconds=5,
        idle=False,
    )


async def _true(value: bool) -> bool:
    return value


async def test_delivered_total_equals_iwd_items_after_uidvalidity_changes_and_a_restart(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """Two UIDVALIDITY changes re-list every message twice: IWD holds MESSAGES items, and so says
    deliveredTotal while running and after a restart, although the ledger holds three rows each."""
    user, password = dovecot.add_user()
    dovecot.deliver(user, [sample_message(n) for n in range(MESSAGES)])
    settings = settings_for(sandbox_iwd, [poll_box(dovecot, user, password)])
    items = sandbox_iwd.control.store.count_items
    async with real_client(sandbox_iwd) as iwd:
        async with running(settings, store, iwd) as rig:
            inbound = rig.board.get(BOX).inbound
            await wait_for(lambda: _true(inbound.delivered_total == MESSAGES), what="first delivery")
            for validity, rows in (("4242", 2 * MESSAGES), ("4343", 3 * MESSAGES)):
                dovecot.doveadm("mailbox", "update", "-u", user, "--uid-validity", validity, "INBOX")

                async def relisted(rows: int = rows) -> bool:
                    return await store.ledger_count(BOX) == rows

                await wait_for(relisted, what=f"UIDVALIDITY {validity} re-listed as alias rows")
                assert inbound.delivered_total == MESSAGES  # an alias is not a new delivery
        assert items() == MESSAGES

        async with running(settings, store, iwd) as rig:
            assert rig.board.get(BOX).inbound.delivered_total == items() == MESSAGES
            await wait_for(
                lambda: _true(rig.board.get(BOX).inbound.last_success_at is not None), what="a cycle"
            )
            assert rig.board.get(BOX).inbound.delivered_total == items() == MESSAGES
