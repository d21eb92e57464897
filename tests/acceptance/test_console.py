"""The admin console in a real headless Chromium, on the real daemon, a real Dovecot and the sandbox IWD.

Each test clicks through what an administrator does when paged, and writes the screenshots that
docs/console.md shows (tests/output/console-*.png, at 390 px and at 1280 px).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.sandbox import DEFAULT_API_KEY, DEFAULT_CCID, SandboxIWD
from connector.store.types import Store
from tests.acceptance.browser import CHROMIUM, Browser
from tests.acceptance.status_rig import Running, running, settings_for, wait_for
from tests.connector.outbox.smtp_peer import PASSWORD, USER, Rules, SmtpPeer
from tests.peers.dovecot import Dovecot, imap_mailbox_config, sample_message
from tests.peers.sandbox import real_client

OUTPUT = Path(__file__).resolve().parents[1] / "output"
TOKEN = "console-Token-Value-7731"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/test installs the Debian package)"
)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(spare_users=2) as server:
        yield server


def imap_box(dovecot: Dovecot, user: str, password: str, **extra: Any) -> dict[str, Any]:
    return imap_mailbox_config(
        dovecot,
        (user, password),
        mailbox_id="support",
        mailbox={"poll_interval_seconds": 1, **extra},
        timeout_seconds=3,
    )


def http_with_token() -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 0, "token": TOKEN}


async def page(browser: Browser, rig: Running, fragment: str) -> None:
    """Opens the console with the token once (it becomes a cookie), at `fragment`."""
    await asyncio.to_thread(browser.navigate, f"{rig.http_url}/admin?token={TOKEN}")
    await asyncio.to_thread(browser.wait_for, "document.body && document.body.dataset.ready === '1'")
    await asyncio.to_thread(browser.evaluate, f"location.hash = {json.dumps(fragment)}")
    await asyncio.to_thread(browser.wait_for, "document.body.dataset.ready === '1'")


async def js(browser: Browser, expression: str) -> Any:
    return await asyncio.to_thread(browser.evaluate, expression)


async def until(browser: Browser, expression: str, within: float = 20.0) -> Any:
    return await asyncio.to_thread(browser.wait_for, expression, within)


async def shots(browser: Browser, stem: str, ready: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    written = await asyncio.to_thread(browser.screenshots, stem, str(OUTPUT), ready=ready)
    assert all(
        size > 5000 for size in await asyncio.to_thread(lambda: [Path(p).stat().st_size for p in written])
    )


async def test_degraded_mailbox_shows_its_cause_and_turns_ok_without_a_reload(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """With Dovecot down the mailbox page names the mail server as the cause; once it is back the same
    page (never reloaded) shows ok, the timeline holds ok → degraded → ok, and deliveries are listed."""
    user, password = dovecot.add_user()
    dovecot.deliver(user, [sample_message(1, subject="Where is my parcel?")])
    settings = settings_for(sandbox_iwd, [imap_box(dovecot, user, password)], http=http_with_token())
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        await wait_for(lambda: _true(rig.board.get("support").inbound.delivered_total == 1), what="delivery")
        with Browser() as browser:
            await page(browser, rig, "#/mailbox/support")
            await until(browser, "document.body.innerText.includes('Where is my parcel?')")
            await js(browser, "window.sameDocument = 'yes'")
            await asyncio.to_thread(dovecot.kill)
            try:
                inbound = "document.querySelector('span.state[data-direction=inbound]').dataset.state"
                await until(browser, f"{inbound} === 'degraded'")
                cause = await js(browser, "document.querySelector('[data-section=state]').innerText")
                assert "mail server failing" in cause
                await shots(browser, "console-mailbox-degraded", f"{inbound} === 'degraded'")
            finally:
                await asyncio.to_thread(dovecot.start)
            await until(browser, f"{inbound} === 'ok'", within=30)
            assert await js(browser, "window.sameDocument") == "yes"  # live: no reload happened
            timeline = await js(browser, "document.querySelector('[data-section=timeline]').innerText")
            # the cause, in the degraded row (the first failure, or the backoff that names it)
            assert "unavailable:" in timeline and "cannot connect" in timeline
            states = await js(
                browser,
                "JSON.stringify([...document.querySelectorAll('[data-section=timeline] span.state')]"
                ".map(s => s.dataset.state))",
            )
            assert json.loads(states)[-2:] == ["degraded", "ok"]
            await shots(browser, "console-mailbox", f"{inbound} === 'ok'")
            await js(browser, "location.hash = ''")
            await until(browser, "document.body.dataset.view === 'overview'")
            assert await js(browser, "document.querySelectorAll('[data-charts] svg.chart').length") == 3
            await shots(browser, "console-overview", "!!document.querySelector('[data-charts]')")


async def test_quarantined_message_is_shown_downloaded_retried_and_becomes_an_item(
    dovecot: Dovecot, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """IWD refuses a message's payload (400), so the daemon quarantines it; the page lists it with the
    reason, shows its headers, its raw source downloads byte for byte, and "retry" makes it an IWD item."""
    user, password = dovecot.add_user()
    raw = sample_message(7, subject="Invoice 7 refused")
    dovecot.deliver(user, [raw])
    box = imap_box(dovecot, user, password, poll_interval_seconds=3600)
    settings = settings_for(sandbox_iwd, [box], http=http_with_token())
    sandbox_iwd.control.faults.set(fail_rate=1.0, fail_status=400)
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        await wait_for(lambda: _held(store), what="the refused message held")
        sandbox_iwd.control.faults.reset()
        (entry,) = await store.quarantine_list("support")
        with Browser() as browser:
            await page(browser, rig, "#/quarantine")
            row = f"tr[data-entry='{entry.id}']"
            await until(browser, f'!!document.querySelector("{row}")')
            await asyncio.to_thread(browser.click, f"{row} details summary")
            await until(browser, "document.body.innerText.includes('Message-ID')")
            shown = await js(browser, f'document.querySelector("{row}").innerText')
            assert "Invoice 7 refused" in shown and "400" in shown
            downloaded = await js(
                browser,
                f'fetch(document.querySelector("{row} a[data-download]").href,'
                " {credentials: 'same-origin'}).then(r => r.text())",
            )
            assert downloaded.encode() == raw
            await shots(browser, "console-quarantine", f'!!document.querySelector("{row} pre")')
            await asyncio.to_thread(browser.click, f"{row} button[data-action=retry]")
            await until(
                browser, f"document.getElementById('notice').dataset.last === 'q{entry.id}:retry:200'"
            )
            await until(browser, "document.body.innerText.includes('Nothing is quarantined.')")
    subjects = [i.get("subject") for i in sandbox_iwd.control.store.recent_items()]
    assert "Invoice 7 refused" in subjects
    assert await store.quarantine_count("support") == 0


def smtp_box(smtp: SmtpPeer, maildir: Path) -> dict[str, Any]:
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    return {
        "id": "support",
        "address": "support@example.com",
        "provider": "maildir",
        "maildir": {"path": str(maildir)},
        "poll_interval_seconds": 60,
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "starttls",
            "username": USER,
            "password": PASSWORD,
            "ca_file": smtp.ca_file,
            "timeout_seconds": 5,
        },
    }


async def queue_outbound(sandbox: SandboxIWD, to: str, subject: str) -> str:
    async with httpx.AsyncClient(
        base_url=sandbox.url, headers={"x-api-key": DEFAULT_API_KEY, "x-ccid": DEFAULT_CCID}
    ) as http:
        body = {
            "direction": "outbound",
            "mailboxId": "support",
            "to": [{"address": to}],
            "subject": subject,
            "textBody": "Your parcel left the depot.",
        }
        resp = await http.post("/emails", json=body)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])


async def test_uncertain_reply_is_resolved_from_the_replies_page(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store, smtp: SmtpPeer
) -> None:
    """A reply cut off after DATA is listed on top as uncertain with the risk named; "mark sent" and
    its confirmation make it sent, and nothing is sent a second time."""
    smtp.rules = Rules(drop_after_data=lambda msg: str(msg["To"]) == "late@example.net")
    item_id = await queue_outbound(sandbox_iwd, "late@example.net", "Re: parcel")
    settings = settings_for(
        sandbox_iwd,
        [smtp_box(smtp, tmp_path / "Maildir")],
        http=http_with_token(),
        outbox={"poll_interval_seconds": 0.2},
    )
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        reply = f"iwd-{item_id}"
        with Browser() as browser:
            await page(browser, rig, "#/replies")
            row = f"tr[data-reply='{reply}']"
            await until(browser, f"document.querySelector(\"{row}\")?.dataset.state === 'uncertain'", 30)
            first_group = await js(browser, "document.querySelector('#view h2 span.state').dataset.state")
            assert first_group == "uncertain"
            await asyncio.to_thread(browser.click, f"{row} button[data-action=mark-sent]")
            risk = await until(browser, f'document.querySelector("{row} [data-confirm]")?.innerText')
            assert "no reply at all" in risk
            await shots(browser, "console-replies", f'!!document.querySelector("{row} [data-confirm]")')
            await asyncio.to_thread(browser.click, f"{row} button[data-confirm]")
            await until(browser, f"document.querySelector(\"{row}\")?.dataset.state === 'sent'")
        await wait_for(
            lambda: _true((sandbox_iwd.control.store.get_item(item_id) or {}).get("status") == "sent"),
            what="IWD told the reply is sent",
        )
        assert rig.runtime.api is not None
        entry = await rig.runtime.api.extras["outbox"].outbox.outbox_get(reply)
        assert entry is not None and entry.state.value == "sent"
    assert set(smtp.by_message_id().values()) == {1}


async def _held(store: Store) -> bool:
    return await store.quarantine_count("support") == 1


async def _true(value: bool) -> bool:
    return value
