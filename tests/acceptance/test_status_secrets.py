"""Secrets planted in the configuration appear nowhere: logs, status, metrics, admin page, IWD payloads."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml

from connector.sandbox import SandboxIWD
from providers.maildir import deliver_to_maildir
from tests.acceptance.daemon_process import child_env, start_connector, stop_gracefully
from tests.acceptance.status_rig import FAST_STATUS, iwd_mailbox, wait_for
from tests.mailfactory import make_message
from tests.peers.dovecot import free_port
from tests.peers.sandbox import real_client

IWD_KEY = "iwd-Key-Secret-9917"
SMTP_PASSWORD = "smtp-Pass-Secret-4402"
HTTP_TOKEN = "http-Token-Secret-7781"
SECRETS = (IWD_KEY, SMTP_PASSWORD, HTTP_TOKEN)


async def test_planted_secrets_leak_nowhere(tmp_path: Path) -> None:
    """A real `email-connector run` with three secrets: none shows in any output it produces."""
    for n in range(2):
        deliver_to_maildir(tmp_path / "m", make_message(n), f"m{n}")
    port = free_port()
    config = tmp_path / "connector.yaml"
    async with SandboxIWD(api_key=IWD_KEY) as sandbox:
        config.write_text(
            yaml.safe_dump(
                {
                    "iwd": {
                        "url": sandbox.url,
                        "api_key": "${T_IWD}",
                        "ccid": sandbox.ccid,
                        "max_retry_seconds": 1,
                    },
                    "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"},
                    "http": {"host": "127.0.0.1", "port": port, "token": "${T_HTTP}"},
                    "status": FAST_STATUS,
                    "mailboxes": [
                        {
                            "id": "secretive",
                            "address": "support@example.com",
                            "provider": "maildir",
                            "maildir": {"path": str(tmp_path / "m")},
                            "poll_interval_seconds": 1,
                            "smtp": {
                                "host": "127.0.0.1",
                                "port": 1,
                                "username": "u",
                                "password": "${T_SMTP}",
                            },
                        }
                    ],
                }
            )
        )
        env = child_env(T_IWD=IWD_KEY, T_HTTP=HTTP_TOKEN, T_SMTP=SMTP_PASSWORD)
        proc = start_connector(config, "run", env=env)
        seen: dict[str, str] = {}
        try:

            async def settled() -> bool:
                item = iwd_mailbox(sandbox, "secretive") or {}
                return ((item.get("status") or {}).get("inbound") or {}).get("deliveredTotal") == 2

            await wait_for(settled, what="two deliveries reported to IWD")
            auth = {"authorization": f"Bearer {HTTP_TOKEN}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
                assert (await http.get("/api/v1/status")).status_code == 401  # the token is required
                for path in ("/metrics", "/admin", "/api/v1/status", "/readyz"):
                    response = await http.get(path, headers=auth)
                    assert response.status_code == 200, path
                    seen[path] = response.text
            mailboxes = sandbox.control.store.list_mailboxes()
            seen["iwd mailboxes (config and status PUTs)"] = json.dumps(mailboxes)
            assert mailboxes[0]["config"]["smtp"]["host"] == "127.0.0.1"  # the config did arrive
            async with real_client(sandbox, api_key=IWD_KEY) as iwd:
                seen["iwd items"] = json.dumps([i async for i in iwd.iter_emails()])
        finally:
            out, err = stop_gracefully(proc)
        seen["stdout"], seen["stderr"] = out, err
    assert '"event": "item_delivered"' in out
    for where, text in seen.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:8]}… found in {where}"
