"""Hot reload: mailboxes added and removed while running, the others untouched, in-flight work kept."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from connector.config import MailboxSettings
from connector.models import FetchResult, PostAction, RawMessage
from connector.sandbox import SandboxIWD
from connector.store.types import LedgerState, Store
from providers.base import InboundProvider
from providers.maildir import MaildirInboundProvider, deliver_to_maildir
from tests.acceptance.daemon_process import child_env, start_connector, stop_gracefully
from tests.acceptance.status_rig import FAST_STATUS, iwd_state, maildir_box, running, wait_for
from tests.mailfactory import make_message
from tests.peers.dovecot import free_port
from tests.peers.sandbox import iwd_settings, real_client


class GatedMaildir:
    """Maildir whose fetch can be held at a gate, to have a cycle in flight at a chosen moment."""

    def __init__(self, box: MailboxSettings) -> None:
        self.inner = MaildirInboundProvider(box)
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def fetch(self, folder: str, cursor: str | None, limit: int) -> FetchResult:
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
        return await self.inner.fetch(folder, cursor, limit)

    async def apply_post_action(self, message: RawMessage, action: PostAction) -> None:
        await self.inner.apply_post_action(message, action)

    async def close(self) -> None:
        await self.inner.close()


def write(path: Path, sandbox: SandboxIWD, boxes: list[dict[str, Any]], **top: Any) -> None:
    data = {
        "iwd": iwd_settings(sandbox.url, max_retry_seconds=0.5).model_dump(mode="json")
        | {"api_key": sandbox.api_key},
        "store": {"url": f"sqlite+aiosqlite:///{path.parent / 'store.db'}"},
        "http": {"host": "127.0.0.1", "port": top.pop("port", 0)},
        "status": FAST_STATUS,
        "reload": {"poll_seconds": 0.1, **top.pop("reload", {})},
        "mailboxes": boxes,
        **top,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data))
    os.replace(tmp, path)  # atomic, as an editor or config management would


async def test_reload_adds_and_removes_mailboxes_without_losing_in_flight_work(
    tmp_path: Path, sandbox_iwd: SandboxIWD, store: Store
) -> None:
    """Adding B leaves A's job alone; removing A mid-cycle lets that cycle deliver and commit first."""
    from connector.config import load_config

    deliver_to_maildir(tmp_path / "a", make_message(1), "a1")
    for n in range(2):
        deliver_to_maildir(tmp_path / "b", make_message(10 + n), f"b{n}")
    config = tmp_path / "connector.yaml"
    write(config, sandbox_iwd, [maildir_box("alpha", tmp_path / "a")])
    providers: dict[str, GatedMaildir] = {}

    def factory(box: MailboxSettings) -> InboundProvider:
        providers[box.id] = GatedMaildir(box)
        return providers[box.id]

    items = sandbox_iwd.control.store.count_items
    async with (
        real_client(sandbox_iwd) as iwd,
        running(load_config(config), store, iwd, config_path=config, provider_factory=factory) as rig,
    ):
        daemon = rig.daemon
        await wait_for(lambda: _true(items() == 1), what="alpha's first mail")
        alpha = daemon.runners["alpha"]

        write(
            config, sandbox_iwd, [maildir_box("alpha", tmp_path / "a"), maildir_box("beta", tmp_path / "b")]
        )
        await wait_for(lambda: _true(items() == 3), what="beta added and delivering")
        assert daemon.runners["alpha"] is alpha  # untouched
        await wait_for(lambda: _true(iwd_state(sandbox_iwd, "beta") == "ok"), what="beta's status in IWD")

        # a cycle of alpha in flight, holding three new messages, when alpha is removed
        providers["alpha"].gate = gate = asyncio.Event()
        for n in range(3):
            deliver_to_maildir(tmp_path / "a", make_message(20 + n), f"a2{n}")
        daemon.poll_now("alpha")
        await asyncio.wait_for(providers["alpha"].entered.wait(), 10)
        write(config, sandbox_iwd, [maildir_box("beta", tmp_path / "b")])
        await wait_for(lambda: _true(alpha.flags.closing), what="alpha closing")
        assert "alpha" not in daemon.runners and items() == 3
        gate.set()  # the in-flight cycle goes on and finishes
        await wait_for(lambda: _true(rig.board.find("alpha") is None), what="alpha removed")
        assert items() == 6
        assert await store.ledger_count("alpha", LedgerState.PENDING) == 0
        assert await store.ledger_count("alpha", LedgerState.ACTED) == 4
        assert list(daemon.runners) == ["beta"]
        async with rig.http() as http:
            doc = (await http.get("/api/v1/status")).json()
        assert [m["mailboxId"] for m in doc["mailboxes"]] == ["beta"]


async def test_sighup_reloads_a_running_connector(tmp_path: Path, sandbox_iwd: SandboxIWD) -> None:
    """`kill -HUP` makes the real process pick up a new mailbox (file watching off), without a restart."""
    for n in range(2):
        deliver_to_maildir(tmp_path / "new-box", make_message(n), f"n{n}")
    port = free_port()
    config = tmp_path / "connector.yaml"
    first = [maildir_box("first", tmp_path / "first-box")]
    (tmp_path / "first-box").mkdir()
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "first-box" / sub).mkdir()
    write(config, sandbox_iwd, first, port=port, reload={"watch_file": False})
    proc = start_connector(config, "run", env=child_env())
    try:

        async def up() -> bool:
            try:
                async with httpx.AsyncClient(trust_env=False) as http:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None and False

        await wait_for(up, what="daemon listening")
        write(
            config,
            sandbox_iwd,
            [*first, maildir_box("second", tmp_path / "new-box")],
            port=port,
            reload={"watch_file": False},
        )
        proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _true(sandbox_iwd.control.store.count_items() == 2), what="second's mail")
        await wait_for(lambda: _true(iwd_state(sandbox_iwd, "second") == "ok"), what="second's status")
        assert proc.poll() is None  # the same process, still running
    finally:
        out, err = stop_gracefully(proc)
    assert proc.returncode == 0, err[-2000:]
    assert '"event": "mailboxes_reloaded"' in out


async def _true(value: bool) -> bool:
    return value
