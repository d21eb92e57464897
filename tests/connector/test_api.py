"""The local HTTP server: probes are open, everything else needs the token when one is set."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from connector.api import ApiContext, create_api_app
from connector.api.app import allowed_hosts
from connector.api.browser_auth import COOKIE
from connector.config import ConnectorSettings
from connector.iwd import IWDClient
from connector.sandbox import SandboxIWD
from connector.status import StatusBoard
from connector.store.types import Store
from tests.peers.sandbox import iwd_settings


def settings(sandbox: SandboxIWD, **http: Any) -> ConnectorSettings:
    return ConnectorSettings.model_validate(
        {
            "iwd": iwd_settings(sandbox.url).model_dump() | {"api_key": "sandbox-key"},
            "http": http,
            "mailboxes": [
                {"id": "a", "address": "a@example.com", "provider": "maildir", "maildir": {"path": "/x"}}
            ],
        }
    )


async def test_readyz_reports_each_dependency_and_turns_503_when_iwd_is_down(
    sandbox_iwd: SandboxIWD, store: Store, iwd: IWDClient
) -> None:
    """/readyz is 200 with store and IWD reachable, 503 naming IWD once it is down."""
    ctx = ApiContext(settings(sandbox_iwd), store, iwd, StatusBoard())
    transport = httpx.ASGITransport(app=create_api_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "iwd": "ok"}
        sandbox_iwd.down_for(2.0)
        down = await client.get("/readyz")
        deadline = asyncio.get_running_loop().time() + 15
        while (await client.get("/readyz")).status_code != 200:  # the next test shares this sandbox
            assert asyncio.get_running_loop().time() < deadline, "the sandbox did not come back"
            await asyncio.sleep(0.05)
    assert down.status_code == 503
    assert down.json()["checks"]["iwd"].startswith("iwd_unavailable")


async def test_token_is_required_when_configured_but_not_for_probes(
    sandbox_iwd: SandboxIWD, store: Store, iwd: IWDClient
) -> None:
    ctx = ApiContext(settings(sandbox_iwd, host="0.0.0.0", token="t0ken-abc"), store, iwd, StatusBoard())
    transport = httpx.ASGITransport(app=create_api_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/anything")).status_code == 401
        authed = await client.get("/anything", headers={"authorization": "Bearer t0ken-abc"})
    assert authed.status_code == 404


async def test_the_cookie_authorizes_reads_and_action_posts_but_not_plain_posts(
    sandbox_iwd: SandboxIWD, store: Store, iwd: IWDClient
) -> None:
    """A cookie-only POST (e.g. /api/v1/replies, which a cross-site form can send) is 401."""
    ctx = ApiContext(settings(sandbox_iwd, token="t0ken-abc"), store, iwd, StatusBoard())
    transport = httpx.ASGITransport(app=create_api_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        client.cookies.set(COOKIE, "t0ken-abc")
        assert (await client.get("/anything")).status_code == 404  # authorized, no such route
        assert (await client.post("/api/v1/replies", json={})).status_code == 401
        assert (await client.post("/api/v1/replies/r1/resend")).status_code == 401
        acted = await client.post("/api/v1/nothing-here", headers={"x-connector-action": "1"})
    assert acted.status_code == 404


async def test_non_ascii_tokens_are_refused_not_a_server_error(
    sandbox_iwd: SandboxIWD, store: Store, iwd: IWDClient
) -> None:
    """`Bearer é`, `?token=%C3%A9` and a non-ASCII cookie give 401, not a TypeError (500)."""
    ctx = ApiContext(settings(sandbox_iwd, token="t0ken-abc"), store, iwd, StatusBoard())
    transport = httpx.ASGITransport(app=create_api_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        header = await client.get("/anything", headers={b"authorization": "Bearer é".encode()})
        query = await client.get("/admin?token=%C3%A9")
        cookie = await client.get("/anything", headers={b"cookie": f"{COOKIE}=é".encode()})
    assert (header.status_code, query.status_code, cookie.status_code) == (401, 401, 401)


async def test_a_foreign_host_header_is_refused_against_dns_rebinding(
    sandbox_iwd: SandboxIWD, store: Store, iwd: IWDClient
) -> None:
    """Host evil.example (a rebound DNS name) gets 400; loopback names and the configured host pass."""
    ctx = ApiContext(settings(sandbox_iwd, host="localhost"), store, iwd, StatusBoard())
    transport = httpx.ASGITransport(app=create_api_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8025") as client:
        assert (await client.get("/healthz", headers={"host": "evil.example:8025"})).status_code == 400
        for host in ("127.0.0.1:8025", "localhost:8025", "[::1]:8025", "localhost"):
            assert (await client.get("/healthz", headers={"host": host})).status_code == 200, host
    assert allowed_hosts("0.0.0.0") == ["*"]
    assert "[fd00::5]" in allowed_hosts("fd00::5")
