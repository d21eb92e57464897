"""The admin page in a real headless Chromium: token once, every mailbox's state, "poll now" works."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from connector.sandbox import SandboxIWD
from connector.store.types import Store
from providers.maildir import deliver_to_maildir
from tests.acceptance.browser import CHROMIUM, Browser
from tests.acceptance.status_rig import maildir_box, running, settings_for, wait_for
from tests.mailfactory import make_message
from tests.peers.sandbox import real_client

OUTPUT = Path(__file__).resolve().parents[1] / "output"
TOKEN = "admin-Token-Value-5521"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/test installs the Debian package)"
)


async def test_admin_page_shows_every_mailbox_and_poll_now_polls(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """Chromium opens /admin?token=…, sees each mailbox's state, clicks "poll now" and a cycle runs."""
    deliver_to_maildir(tmp_path / "a", make_message(1), "a1")
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "b" / sub).mkdir(parents=True)
    boxes = [
        maildir_box("orders", tmp_path / "a", poll_interval_seconds=3600),
        maildir_box("support", tmp_path / "b", poll_interval_seconds=3600),
        maildir_box("broken", tmp_path / "missing", poll_interval_seconds=3600),
        maildir_box("archive", tmp_path / "c", inbound_enabled=False),
    ]
    settings = settings_for(sandbox_iwd, boxes, http={"host": "127.0.0.1", "port": 0, "token": TOKEN})
    OUTPUT.mkdir(exist_ok=True)
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        board = rig.board
        await wait_for(
            lambda: _true(board.get("support").inbound.last_success_at is not None), what="first cycle"
        )
        await wait_for(
            lambda: _true(board.get("broken").inbound.last_error is not None), what="broken's cycle"
        )
        first_poll = board.get("support").inbound.last_poll_at
        with Browser() as browser:
            await asyncio.to_thread(browser.navigate, f"{rig.http_url}/admin?token={TOKEN}")
            await asyncio.to_thread(browser.wait_for, "document.body && document.body.dataset.ready === '1'")
            assert await asyncio.to_thread(browser.evaluate, "location.search") == ""  # token left the URL
            states = json.loads(
                await asyncio.to_thread(
                    browser.evaluate,
                    "JSON.stringify(Object.fromEntries([...document.querySelectorAll("
                    "'span.state[data-direction=inbound]')].map(s => [s.dataset.mailbox, s.dataset.state])))",
                )
            )
            assert states == {"archive": "disabled", "broken": "error", "orders": "ok", "support": "ok"}
            assert "folder_missing" in await asyncio.to_thread(browser.evaluate, "document.body.innerText")
            await asyncio.to_thread(browser.click, 'button[data-mailbox="support"][data-action="poll"]')
            await asyncio.to_thread(
                browser.wait_for, "document.getElementById('notice').dataset.last === 'support:poll:202'"
            )
            await wait_for(
                lambda: _true(board.get("support").inbound.last_poll_at != first_poll),
                what="a cycle after the click",
            )
            await asyncio.to_thread(browser.wait_for, "document.body.innerText.includes('poll done')")
            await asyncio.to_thread(browser.screenshot, str(OUTPUT / "admin_page.png"))
            cookie_js = await asyncio.to_thread(browser.evaluate, "document.cookie")
            assert TOKEN not in cookie_js  # HttpOnly: page scripts cannot read the token
    assert (OUTPUT / "admin_page.png").stat().st_size > 5000


async def _true(value: bool) -> bool:
    return value
