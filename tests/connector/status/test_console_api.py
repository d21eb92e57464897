"""The console's routes keep the local API's security model: with a token set, nothing reads or acts
without it (raw downloads and reply actions included), cookies act only with the action header, and a
mailbox's configuration never shows a secret."""

from __future__ import annotations

from pathlib import Path

from connector.api.browser_auth import COOKIE
from connector.models import RawMessage
from connector.sandbox import SandboxIWD
from connector.store.types import Store
from tests.acceptance.status_rig import maildir_box, running, settings_for, wait_for
from tests.mailfactory import make_message
from tests.peers.sandbox import real_client

TOKEN = "tok-Console-Api-9981"
SMTP_PASSWORD = "smtp-Password-Never-Shown-42"
ACTION = {"x-connector-action": "1"}


def box_with_smtp(path: Path) -> dict[str, object]:
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    smtp = {"host": "127.0.0.1", "port": 2525, "username": "u", "password": SMTP_PASSWORD}
    return maildir_box("a", path, poll_interval_seconds=3600, smtp=smtp)


async def test_without_the_token_the_console_reads_nothing_and_acts_on_nothing(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """Every console GET and POST is 401 without the token (the action header alone is not enough);
    a quarantined message stays held and no body or raw byte is returned."""
    settings = settings_for(
        sandbox_iwd,
        [box_with_smtp(tmp_path / "a")],
        http={"host": "127.0.0.1", "port": 0, "token": TOKEN},
        outbox={"poll_interval_seconds": 0.2},
    )
    raw = make_message(3)
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig:
        await wait_for(lambda: _true(rig.board.get("a").inbound.last_success_at is not None), what="cycle")
        entry = await store.quarantine_put("a", RawMessage("INBOX", "q1", raw, len(raw)), "held for a test")
        reads = [
            "/api/v1/mailboxes/a",
            "/api/v1/quarantine",
            f"/api/v1/quarantine/{entry.id}",
            f"/api/v1/quarantine/{entry.id}/raw",
            "/api/v1/outbox",
            "/api/v1/charts",
        ]
        acts = [
            "/api/v1/mailboxes/a/check",
            f"/api/v1/quarantine/{entry.id}/retry",
            f"/api/v1/quarantine/{entry.id}/deliver-unparseable",
            "/api/v1/outbox/some-reply/mark-sent",
            "/api/v1/outbox/some-reply/send-again",
        ]
        async with rig.http() as anonymous:
            for path in reads:
                response = await anonymous.get(path)
                assert response.status_code == 401, path
                assert raw not in response.content
            for path in acts:
                assert (await anonymous.post(path, headers=ACTION)).status_code == 401, path
        async with rig.http() as browser:  # the cookie counts for a POST only with the action header
            browser.cookies.set(COOKIE, TOKEN)
            assert (await browser.get(f"/api/v1/quarantine/{entry.id}/raw")).content == raw
            assert (await browser.post(f"/api/v1/quarantine/{entry.id}/retry")).status_code == 401
        async with rig.http(TOKEN) as admin:  # the token without the header: still no action
            assert (await admin.post(f"/api/v1/quarantine/{entry.id}/retry")).status_code == 403
            assert (await admin.post("/api/v1/outbox/some-reply/mark-sent")).status_code == 403
        assert await store.quarantine_count("a") == 1
        async with rig.http(TOKEN) as admin:
            response = await admin.post(f"/api/v1/quarantine/{entry.id}/retry", headers=ACTION)
            assert response.json()["delivered"] == 1
        assert await store.quarantine_count("a") == 0


async def test_the_mailbox_page_shows_the_configuration_with_every_secret_masked(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """The effective configuration names the SMTP server and user but never the password."""
    settings = settings_for(sandbox_iwd, [box_with_smtp(tmp_path / "a")])
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig, rig.http() as http:
        await wait_for(lambda: _true(rig.board.get("a").inbound.last_success_at is not None), what="cycle")
        response = await http.get("/api/v1/mailboxes/a")
        assert response.status_code == 200
        body = response.json()
        assert body["config"]["smtp"]["host"] == "127.0.0.1"
        assert body["config"]["smtp"]["password"] == "••••••"
        assert SMTP_PASSWORD not in response.text and sandbox_iwd.api_key not in response.text
        assert [f["name"] for f in body["folders"]] == ["INBOX"]


async def _true(value: bool) -> bool:
    return value


async def test_deliver_unparseable_sends_a_held_message_flagged_and_check_reconnects(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """ "Deliver as unparseable" makes a held message an IWD item flagged unparseable at once (no new
    conversion), and "re-check connection" answers what `check` answers for the mailbox."""
    settings = settings_for(sandbox_iwd, [box_with_smtp(tmp_path / "a")])
    raw = make_message(4)
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig, rig.http() as http:
        await wait_for(lambda: _true(rig.board.get("a").inbound.last_success_at is not None), what="cycle")
        entry = await store.quarantine_put("a", RawMessage("INBOX", "q4", raw, len(raw)), "held for a test")
        response = await http.post(f"/api/v1/quarantine/{entry.id}/deliver-unparseable", headers=ACTION)
        assert response.json() == {
            "entry": entry.id,
            "action": "deliver-unparseable",
            "tried": 1,
            "delivered": 1,
        }
        (item,) = sandbox_iwd.control.store.recent_items(1)
        assert item["flags"]["unparseable"] is True
        assert (await http.get("/api/v1/quarantine")).json() == {"entries": []}
        checked = (await http.post("/api/v1/mailboxes/a/check", headers=ACTION)).json()
        assert checked["ok"] is True and checked["action"] == "check"
