"""The admin HTTP surface: token by cookie for browsers, actions need the CSRF header, actions work."""

from __future__ import annotations

from pathlib import Path

from connector.api.browser_auth import COOKIE
from connector.models import RawMessage
from connector.sandbox import SandboxIWD
from connector.store.types import Store
from providers.maildir import deliver_to_maildir
from tests.acceptance.status_rig import maildir_box, running, settings_for, wait_for
from tests.mailfactory import make_message
from tests.peers.sandbox import real_client

TOKEN = "tok-Admin-Api-1234"


def held(provider_id: str, raw: bytes) -> RawMessage:
    """A message as fetched from INBOX, to put into quarantine."""
    return RawMessage(folder="INBOX", provider_id=provider_id, raw=raw, size=len(raw))


async def test_token_query_sets_a_strict_httponly_cookie_that_then_authorizes(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """?token= on /admin answers 303 without the token, with an HttpOnly SameSite=Strict cookie."""
    settings = settings_for(
        sandbox_iwd, [maildir_box("a", tmp_path / "a")], http={"host": "127.0.0.1", "port": 0, "token": TOKEN}
    )
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig, rig.http() as http:
        assert (await http.get("/admin")).status_code == 401
        assert (await http.get("/admin?token=wrong")).status_code == 401
        response = await http.get(f"/admin?token={TOKEN}")
        assert response.status_code == 303 and response.headers["location"] == "/admin"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        http.cookies.set(COOKIE, TOKEN)
        assert (await http.get("/api/v1/status")).status_code == 200
        http.cookies.set(COOKIE, "nope")
        assert (await http.get("/api/v1/status")).status_code == 401
        assert (await http.get("/healthz")).status_code == 200  # probes stay open


async def test_actions_need_the_action_header_and_then_pause_resume_and_retry(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """Without X-Connector-Action a POST is 403; with it, pause/resume/poll act, and retry-quarantine
    delivers a held message at once (even while paused, when no cycle competes for it)."""
    deliver_to_maildir(tmp_path / "a", make_message(1), "a1")
    settings = settings_for(sandbox_iwd, [maildir_box("a", tmp_path / "a", poll_interval_seconds=3600)])
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig, rig.http() as http:
        await wait_for(lambda: _true(rig.board.get("a").inbound.delivered_total == 1), what="first delivery")
        assert (await http.post("/api/v1/mailboxes/a/pause")).status_code == 403
        headers = {"x-connector-action": "1"}
        assert (await http.post("/api/v1/mailboxes/a/pause", headers=headers)).status_code == 200
        doc = (await http.get("/api/v1/status")).json()
        assert doc["mailboxes"][0]["paused"] is True and doc["mailboxes"][0]["inbound"]["state"] == "disabled"
        assert (await http.post("/api/v1/mailboxes/a/poll", headers=headers)).status_code == 409
        assert (await http.post("/api/v1/mailboxes/a/resume", headers=headers)).status_code == 200
        assert (await http.post("/api/v1/mailboxes/a/poll", headers=headers)).status_code == 202
        assert (await http.post("/api/v1/mailboxes/zz/poll", headers=headers)).status_code == 404
        assert (await http.post("/api/v1/mailboxes/a/pause", headers=headers)).status_code == 200
        async with rig.daemon.runners["a"].lock:
            pass  # the cycle the poll above started has finished; none starts while paused
        await store.quarantine_put("a", held("q1", make_message(5)), "converter failed: test")
        response = await http.post("/api/v1/mailboxes/a/retry-quarantine", headers=headers)
        assert response.json() == {"mailboxId": "a", "action": "retry-quarantine", "tried": 1, "delivered": 1}
        assert await store.quarantine_count("a") == 0
        assert rig.board.get("a").inbound.quarantined == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_malformed_quarantine_entry_is_400_not_retry_everything(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """`?entry=abc` or `?entry=-1` is refused with invalid_entry, and nothing held is retried."""
    settings = settings_for(sandbox_iwd, [maildir_box("a", tmp_path / "a", poll_interval_seconds=3600)])
    async with real_client(sandbox_iwd) as iwd, running(settings, store, iwd) as rig, rig.http() as http:
        await store.quarantine_put("a", held("q1", make_message(6)), "converter failed: test")
        headers = {"x-connector-action": "1"}
        for bad in ("abc", "-1", ""):
            response = await http.post(
                "/api/v1/mailboxes/a/retry-quarantine", params={"entry": bad}, headers=headers
            )
            assert response.status_code == 400 and response.json()["code"] == "invalid_entry", bad
        assert await store.quarantine_count("a") == 1
