"""A tiny fake Microsoft identity platform and Google token endpoint on https://127.0.0.1.

Serves what msal's ConfidentialClientApplication and google-auth's refresh need (see
/work/shared/reference/test-peers.md §5): tenant OpenID discovery, the v2.0 token endpoint for
the client_credentials grant, and a Google-style `POST /token` for the refresh_token grant.
TLS comes from a trustme CA written to `ca_file`; `wrong_ca_file` is a second CA that did not
sign the server certificate. Every request is counted; `fail_status` makes every answer an error
(e.g. 503). `on_token` sees each access token as it is issued, so a test can register it with
Dovecot's introspection map before the client presents it.

The TLS handshake runs in the per-connection thread (not in accept), so a client that aborts
its handshake cannot stall the server. The handler speaks HTTP/1.0: one request per connection,
so no pooled client socket is left open when the server stops.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

from tests.peers.threaded import ThreadedPeer

START_TIMEOUT_SECONDS = 5.0
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"


class _TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that wraps each accepted socket in TLS inside the worker thread."""

    daemon_threads = True
    tls: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client gave up on our certificate: that is the test's point, not ours
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                conn.close()


class FakeAuthority(ThreadedPeer):
    """One fake authority; use as a context manager (`with FakeAuthority() as auth:`)."""

    peer_name = "fake authority"

    def __init__(
        self,
        *,
        tenant: str = "tenant-1",
        client_id: str = "cid-1",
        client_secret: str = "secret-1",
        scope: str = OUTLOOK_SCOPE,
        refresh_token: str = "rt-good",
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.refresh_token = refresh_token
        self.on_token = on_token
        self.fail_status: int | None = None
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self.forms: list[dict[str, str]] = []  # token POST bodies (tests must not print them)
        self.issued: list[str] = []
        self._lock = threading.Lock()
        self.dir = Path(tempfile.mkdtemp(prefix="authority-"))
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.dir / "ca.pem"))
        trustme.CA().cert_pem.write_to_path(str(self.dir / "wrong-ca.pem"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        server = _TLSServer(("127.0.0.1", 0), self._handler())
        server.tls = context
        super().__init__(server)

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        """What to put in `oauth.authority` (msal's `authority=`)."""
        return f"{self.base_url}/{self.tenant}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def google_token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def wrong_ca_file(self) -> str:
        """A CA that did not sign the server certificate."""
        return str(self.dir / "wrong-ca.pem")

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests seen so far, optionally only those with this method and/or path."""
        with self._lock:
            return sum(
                1 for m, p in self.requests if (method is None or m == method) and (path is None or p == path)
            )

    @property
    def token_posts(self) -> int:
        return self.count("POST", urlsplit(self.token_endpoint).path)

    # ------------------------------------------------------------------ behaviour

    def _issue(self) -> str:
        token = f"at-{uuid.uuid4().hex}"
        with self._lock:
            self.issued.append(token)
        if self.on_token is not None:
            self.on_token(token)
        return token

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": f"{self.authority}/v2.0",
            "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["code", "token"],
        }

    def _client_credentials(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "only client_credentials"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: fake",
                "error_codes": [7000215],
            }
        if self.scope not in form.get("scope", "").split():
            return 400, {
                "error": "invalid_scope",
                "error_description": f"AADSTS70011: scope must be {self.scope}",
            }
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": self._issue(),
        }

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        return 200, {
            "access_token": self._issue(),
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": form.get("scope", ""),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def _reply(self, status: int, body: dict[str, Any] | str) -> None:
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(status)
                kind = "application/json" if isinstance(body, dict) else "text/plain"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> str:
                path = urlsplit(self.path).path
                with fake._lock:
                    fake.requests.append((self.command, path))
                return path

            def do_GET(self) -> None:
                path = self._record()
                if fake.fail_status is not None:
                    self._reply(fake.fail_status, "Service Unavailable")
                elif path == f"/{fake.tenant}/v2.0/.well-known/openid-configuration":
                    self._reply(200, fake._discovery())
                else:
                    self._reply(404, {"error": "not_found", "error_description": path})

            def do_POST(self) -> None:
                path = self._record()
                length = int(self.headers.get("Content-Length", "0"))
                raw = parse_qs(self.rfile.read(length).decode())
                form = {k: v[0] for k, v in raw.items()}
                with fake._lock:
                    fake.forms.append(form)
                if fake.fail_status is not None:
                    self._reply(fake.fail_status, "Service Unavailable")
                elif path == f"/{fake.tenant}/oauth2/v2.0/token":
                    self._reply(*fake._client_credentials(form))
                elif path == "/token":
                    self._reply(*fake._refresh(form))
                else:
                    self._reply(404, {"error": "not_found", "error_description": path})

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    # ------------------------------------------------------------------ lifecycle

    def _cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
