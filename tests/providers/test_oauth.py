"""Token providers for XOAUTH2: static, Google refresh, Microsoft client credentials against a fake
HTTPS authority (tests/peers/authority.py), dispatch, errors, and XOAUTH2 into a real Dovecot."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from connector.config import OAuthSettings
from connector.errors import AuthFailed, ConfigError, ProviderUnavailable
from providers.imap import ImapInboundProvider
from providers.oauth import (
    GoogleTokenProvider,
    MicrosoftAppTokenProvider,
    StaticTokenProvider,
    TokenProvider,
    build_token_provider,
)
from tests.peers.authority import OUTLOOK_SCOPE, FakeAuthority
from tests.peers.dovecot import Dovecot, free_port, imap_mailbox, sample_message


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """A local OAuth token endpoint: refresh token 'rt-good' yields 'at-N', anything else invalid_grant."""
    calls: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            calls.append(form)
            if form.get("refresh_token") == ["rt-good"]:
                status, body = (
                    200,
                    {"access_token": f"at-{len(calls)}", "expires_in": 3600, "token_type": "Bearer"},
                )
            else:
                status, body = 400, {"error": "invalid_grant", "error_description": "Bad Request"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", calls
    finally:
        server.shutdown()
        server.server_close()


async def test_static_provider_returns_its_token_and_hides_it() -> None:
    """The static provider hands out its token and never shows it in repr."""
    provider = StaticTokenProvider("secret-token")
    assert await provider.token() == "secret-token"
    assert "secret-token" not in repr(provider)
    assert isinstance(provider, TokenProvider)


async def test_google_refresh_token_is_cached_until_invalidated(
    token_endpoint: tuple[str, list[dict[str, list[str]]]],
) -> None:
    """A refresh token gives an access token once; invalidate() forces a new refresh with the IMAP scope."""
    url, calls = token_endpoint
    settings = OAuthSettings.model_validate(
        {
            "kind": "google_refresh",
            "client_id": "cid",
            "client_secret": "cs",
            "refresh_token": "rt-good",
            "token_uri": url,
        }
    )
    provider = build_token_provider(settings, default_scope="https://mail.google.com/")
    assert isinstance(provider, GoogleTokenProvider)
    assert await provider.token() == "at-1"
    assert await provider.token() == "at-1"
    provider.invalidate()
    assert await provider.token() == "at-2"
    assert len(calls) == 2 and calls[0]["scope"] == ["https://mail.google.com/"]


async def test_google_rejected_refresh_token_is_auth_failed(
    token_endpoint: tuple[str, list[dict[str, list[str]]]],
) -> None:
    """invalid_grant from the token endpoint raises AuthFailed without the refresh token in the text."""
    url, _ = token_endpoint
    settings = OAuthSettings.model_validate(
        {
            "kind": "google_refresh",
            "client_id": "cid",
            "client_secret": "cs",
            "refresh_token": "rt-bad-42",
            "token_uri": url,
        }
    )
    provider = build_token_provider(settings, default_scope="https://mail.google.com/")
    with pytest.raises(AuthFailed, match="invalid_grant") as info:
        await provider.token()
    assert "rt-bad-42" not in str(info.value)


def test_build_microsoft_provider_uses_default_scope_and_tenant_authority() -> None:
    """kind microsoft builds an app-only provider for the tenant; a missing field is a ConfigError."""
    settings = OAuthSettings.model_validate(
        {"kind": "microsoft", "tenant_id": "t1", "client_id": "c1", "client_secret": "s1"}
    )
    provider = build_token_provider(settings, default_scope="https://outlook.office365.com/.default")
    assert isinstance(provider, MicrosoftAppTokenProvider)
    assert "login.microsoftonline.com/t1" in repr(provider) and "s1" not in repr(provider)
    with pytest.raises(ConfigError, match="client_secret"):
        build_token_provider(
            OAuthSettings(kind="microsoft", tenant_id="t1", client_id="c1"), default_scope="x"
        )


async def test_microsoft_error_dict_becomes_auth_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """msal's error result (e.g. invalid_client) is AuthFailed naming the error code, not the secret."""
    provider = MicrosoftAppTokenProvider(tenant_id="t1", client_id="c1", client_secret="very-secret")

    def fake_acquire() -> dict[str, Any]:
        return {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret.\nTrace",
        }

    monkeypatch.setattr(provider, "_acquire", fake_acquire)
    with pytest.raises(AuthFailed, match="invalid_client") as info:
        await provider.token()
    assert "very-secret" not in str(info.value)


# ---------------------------------------------------------------------- Microsoft via the fake authority


@pytest.fixture
def authority() -> Iterator[FakeAuthority]:
    with FakeAuthority() as fake:
        yield fake


def microsoft(authority: FakeAuthority, **overrides: Any) -> TokenProvider:
    """The provider `build_token_provider` makes for an oauth block pointing at the fake."""
    block: dict[str, Any] = {
        "kind": "microsoft",
        "tenant_id": authority.tenant,
        "client_id": authority.client_id,
        "client_secret": authority.client_secret,
        "authority": authority.authority,
        "ca_file": authority.ca_file,
    }
    block.update(overrides)
    return build_token_provider(OAuthSettings.model_validate(block), default_scope=OUTLOOK_SCOPE)


async def test_microsoft_client_credentials_token_is_cached_until_invalidated(
    authority: FakeAuthority,
) -> None:
    """One discovery + one POST gives the token; the second call is served from msal's cache;
    invalidate() forces exactly one new POST and a new token."""
    provider = microsoft(authority)
    assert isinstance(provider, MicrosoftAppTokenProvider)
    first = await provider.token()
    assert first == authority.issued[0]
    assert authority.token_posts == 1 and len(authority.requests) == 2
    assert authority.forms[0]["grant_type"] == "client_credentials"
    assert authority.forms[0]["scope"].split() == [OUTLOOK_SCOPE]
    assert await provider.token() == first
    assert len(authority.requests) == 2  # no HTTP at all for the cached token
    provider.invalidate()
    second = await provider.token()
    assert second != first and second == authority.issued[1]
    assert authority.token_posts == 2 and len(authority.requests) == 3  # no second discovery


async def test_microsoft_concurrent_callers_share_one_token_request(authority: FakeAuthority) -> None:
    """Five concurrent token() calls make one token POST and all get the same token."""
    provider = microsoft(authority)
    tokens = await asyncio.gather(*(provider.token() for _ in range(5)))
    assert set(tokens) == {authority.issued[0]} and authority.token_posts == 1


async def test_microsoft_wrong_secret_is_auth_failed_without_the_secret(authority: FakeAuthority) -> None:
    """invalid_client becomes AuthFailed naming tenant and client id, fast, with no secret anywhere."""
    secret = "wrong-secret-5f3a9c"
    provider = microsoft(authority, client_secret=secret)
    started = time.monotonic()
    with pytest.raises(AuthFailed, match="invalid_client") as info:
        await provider.token()
    assert time.monotonic() - started < 2
    text = str(info.value)
    assert "tenant=tenant-1" in text and "client_id=cid-1" in text
    assert info.value.code == "auth_required"
    for shown in (text, repr(info.value), repr(info.value.context), repr(provider)):
        assert secret not in shown


async def test_microsoft_token_endpoint_503_is_provider_unavailable(authority: FakeAuthority) -> None:
    """A 503 from the token endpoint (after a good discovery) and from discovery itself are
    ProviderUnavailable, never AuthFailed: the credentials are not at fault."""
    provider = microsoft(authority)
    await provider.token()
    provider.invalidate()
    authority.fail_status = 503
    with pytest.raises(ProviderUnavailable, match="503"):
        await provider.token()
    assert authority.token_posts == 2
    fresh = microsoft(authority)
    with pytest.raises(ProviderUnavailable, match="503") as info:
        await fresh.token()
    assert info.value.code == "unavailable"


async def test_microsoft_unreachable_authority_is_provider_unavailable() -> None:
    """Nothing listening on the authority's port is ProviderUnavailable naming the authority."""
    authority = f"https://127.0.0.1:{free_port()}/tenant-1"
    provider = MicrosoftAppTokenProvider(
        tenant_id="tenant-1", client_id="cid-1", client_secret="s3cr3t-x", authority=authority
    )
    with pytest.raises(ProviderUnavailable, match="unreachable") as info:
        await provider.token()
    assert authority in str(info.value) and "s3cr3t-x" not in str(info.value)


async def test_microsoft_wrong_ca_is_provider_unavailable_with_ca_file_hint(
    authority: FakeAuthority,
) -> None:
    """A certificate from a CA not in oauth.ca_file fails verification and says to set oauth.ca_file."""
    provider = microsoft(authority, ca_file=authority.wrong_ca_file)
    with pytest.raises(ProviderUnavailable, match=r"oauth\.ca_file") as info:
        await provider.token()
    assert "TLS verification" in str(info.value) and "certificate" in str(info.value)
    assert authority.count() == 0  # never got as far as an HTTP request


async def test_environment_ca_bundle_neither_breaks_nor_widens_verification(
    authority: FakeAuthority, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE do not replace oauth.ca_file (bogus bundle: still works),
    and pointing them at the fake's CA does not make an unconfigured provider trust it."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    assert await microsoft(authority).token() == authority.issued[0]

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", authority.ca_file)
    monkeypatch.setenv("CURL_CA_BUNDLE", authority.ca_file)
    with pytest.raises(ProviderUnavailable, match=r"oauth\.ca_file"):
        await microsoft(authority, ca_file=None).token()


def test_missing_ca_file_is_config_error(tmp_path: Path) -> None:
    """An oauth.ca_file that does not exist is a ConfigError naming the field, at build time."""
    block = {"kind": "microsoft", "tenant_id": "t1", "client_id": "c1", "client_secret": "s1"}
    settings = OAuthSettings.model_validate({**block, "ca_file": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match=r"oauth\.ca_file"):
        build_token_provider(settings, default_scope=OUTLOOK_SCOPE)


async def test_google_refresh_token_over_https_with_ca_file(
    authority: FakeAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Google refresh-token provider verifies the token endpoint with oauth.ca_file, ignoring
    REQUESTS_CA_BUNDLE; the wrong CA is ProviderUnavailable with the ca_file hint."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    block = {
        "kind": "google_refresh",
        "client_id": authority.client_id,
        "client_secret": authority.client_secret,
        "refresh_token": authority.refresh_token,
        "token_uri": authority.google_token_uri,
        "ca_file": authority.ca_file,
    }
    provider = build_token_provider(
        OAuthSettings.model_validate(block), default_scope="https://mail.google.com/"
    )
    assert isinstance(provider, GoogleTokenProvider)
    token = await provider.token()
    assert token == authority.issued[0] and await provider.token() == token
    assert authority.count("POST", "/token") == 1
    assert authority.forms[0]["grant_type"] == "refresh_token"
    wrong = build_token_provider(
        OAuthSettings.model_validate({**block, "ca_file": authority.wrong_ca_file}),
        default_scope="https://mail.google.com/",
    )
    with pytest.raises(ProviderUnavailable, match=r"oauth\.ca_file"):
        await wrong.token()


# ---------------------------------------------------------------------- end to end into Dovecot


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot(oauth=True, spare_users=2) as server:
        yield server


async def test_microsoft_token_from_fake_authority_logs_into_dovecot_over_xoauth2(
    dovecot: Dovecot,
) -> None:
    """ImapInboundProvider with oauth kind microsoft gets a token from the fake authority over
    verified HTTPS and Dovecot's oauth2 passdb accepts it: login and fetch succeed."""
    user, _ = dovecot.add_user()
    dovecot.deliver(user, [sample_message(1), sample_message(2)])

    def register(token: str) -> None:
        dovecot.oauth_tokens[token] = user

    with FakeAuthority(on_token=register) as fake:
        oauth = {
            "kind": "microsoft",
            "tenant_id": fake.tenant,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "authority": fake.authority,
            "ca_file": fake.ca_file,
        }
        provider = ImapInboundProvider(imap_mailbox(dovecot, (user, None), auth="xoauth2", oauth=oauth))
        try:
            result = await provider.fetch("INBOX", None, 10)
        finally:
            await provider.close()
    assert len(result.messages) == 2
    assert fake.token_posts == 1 and len(fake.issued) == 1


async def test_microsoft_transient_error_dict_is_provider_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JSON 'temporarily_unavailable' token answer is ProviderUnavailable, not AuthFailed."""
    provider = MicrosoftAppTokenProvider(tenant_id="t1", client_id="c1", client_secret="very-secret")

    def fake_acquire() -> dict[str, Any]:
        return {"error": "temporarily_unavailable", "error_description": "AADSTS50196: try again later"}

    monkeypatch.setattr(provider, "_acquire", fake_acquire)
    with pytest.raises(ProviderUnavailable, match="temporarily_unavailable"):
        await provider.token()
