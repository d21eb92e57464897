"""config_source iwd: IWD holds the public configuration, secrets come only from the local file."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import ConnectorSettings, GraphSettings, public_view
from connector.errors import ConfigError
from connector.remote_config import mailbox_from_iwd, settings_with_iwd_mailboxes
from connector.sandbox import control_of, create_app
from tests.peers.sandbox import asgi_client

IMAP_PUBLIC = {
    "id": "support",
    "address": "support@example.com",
    "provider": "imap",
    "imap": {"host": "imap.example.com", "username": "support"},
}
PIN = {"imap.host": "imap.example.com"}  # where the local imap secrets may go


def test_secret_references_are_merged_and_resolved_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """imap.password comes from the local map's ${VAR}; the public view sent back has no secret."""
    monkeypatch.setenv("SUPPORT_PW", "pw-Local-Only-1")
    box = mailbox_from_iwd(IMAP_PUBLIC, {"imap.password": "${SUPPORT_PW}", **PIN}, "support")
    assert box.imap is not None and box.imap.password is not None
    assert box.imap.password.get_secret_value() == "pw-Local-Only-1"
    view = public_view(box)
    assert "pw-Local-Only-1" not in str(view) and "password" not in view["imap"]


def test_references_inside_iwd_held_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """IWD cannot make the connector expand a local variable into a field it reports back."""
    monkeypatch.setenv("IWD_API_KEY", "would-leak")
    hostile = IMAP_PUBLIC | {"display_name": "${IWD_API_KEY}"}
    with pytest.raises(ConfigError, match="only allowed in the local file"):
        mailbox_from_iwd(hostile, {"imap.password": "${IWD_API_KEY}"}, "support")


def test_secret_map_may_only_name_secret_fields() -> None:
    """A reference aimed at a public field (which is reported to IWD) is refused."""
    with pytest.raises(ConfigError, match="not a secret setting"):
        mailbox_from_iwd(IMAP_PUBLIC, {"display_name": "${SOMETHING}"}, "support")


def test_the_local_secrets_map_accepts_only_references() -> None:
    """A literal secret in `secrets:` is a configuration error."""
    with pytest.raises(ValueError, match="reference"):
        ConnectorSettings.model_validate(
            {
                "iwd": {"url": "http://x/iwd/v3", "api_key": "k", "ccid": "c"},
                "config_source": "iwd",
                "secrets": {"support": {"imap.password": "hunter2"}},
            }
        )


async def test_mailboxes_are_read_from_iwd_and_an_invalid_one_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two IWD-held configurations, one broken: the good one loads, the broken one is left out."""
    monkeypatch.setenv("SUPPORT_PW", "pw-Local-Only-2")
    app = create_app(str(tmp_path / "iwd.db"))
    control_of(app).store.put_mailbox("support", config=IMAP_PUBLIC)
    control_of(app).store.put_mailbox("broken", config={"id": "broken", "provider": "imap"})
    base = ConnectorSettings.model_validate(
        {
            "iwd": {"url": "http://sandbox.test/iwd/v3", "api_key": "sandbox-key", "ccid": "sandbox"},
            "config_source": "iwd",
            "secrets": {"support": {"imap.password": "${SUPPORT_PW}", **PIN}},
        }
    )
    async with asgi_client(app) as iwd:
        settings = await settings_with_iwd_mailboxes(base, iwd)
    assert [b.id for b in settings.mailboxes] == ["support"]


@pytest.mark.parametrize(
    ("block", "field", "value"),
    [
        ("imap", "verify_tls", False),
        ("imap", "allow_insecure", True),
        ("imap", "security", "plain"),
        ("imap", "ca_file", "/tmp/evil-ca.pem"),
        ("imap.oauth", "token_uri", "https://evil.example/token"),
        ("imap.oauth", "authority", "https://evil.example"),
        ("imap.oauth", "service_account_file", "/etc/other-service/key.json"),
    ],
)
def test_iwd_cannot_weaken_tls_or_move_endpoints(block: str, field: str, value: object) -> None:
    """A TLS-weakening or endpoint field from IWD is refused, naming mailbox and field."""
    config: dict[str, object] = {**IMAP_PUBLIC, "imap": dict(IMAP_PUBLIC["imap"])}  # type: ignore[arg-type]
    imap = config["imap"]
    assert isinstance(imap, dict)
    if block == "imap.oauth":
        imap.update(auth="xoauth2", oauth={"kind": "static", field: value})
    else:
        imap[field] = value
    with pytest.raises(ConfigError, match=rf"mailboxes\[support\]\.{block}\.{field}: refused from IWD"):
        mailbox_from_iwd(config, {"imap.password": "${SUPPORT_PW}", **PIN}, "support")


def test_graph_endpoint_from_iwd_is_refused_but_the_default_is_accepted() -> None:
    """graph.api_endpoint may only be the public default when it comes from IWD."""
    graph = {
        "id": "g",
        "address": "g@example.com",
        "provider": "graph",
        "graph": {"user_id": "u", "oauth": {"kind": "static"}},
    }
    secrets = {"graph.oauth.token": "${G_TOKEN}"}
    default = GraphSettings.model_fields["api_endpoint"].default
    moved = {**graph, "graph": {**graph["graph"], "api_endpoint": "https://evil.example/v1.0"}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"graph\.api_endpoint: refused"):
        mailbox_from_iwd(moved, secrets, "g")
    kept = {**graph, "graph": {**graph["graph"], "api_endpoint": default}}  # type: ignore[dict-item]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("G_TOKEN", "tok-Graph-1")
        box = mailbox_from_iwd(kept, secrets, "g")
    assert box.graph is not None and box.graph.api_endpoint == default


def test_a_local_override_allows_the_same_weakening_and_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """IWD's verify_tls false passes when the local secrets entry says the same; ca_file from file:."""
    monkeypatch.setenv("SUPPORT_PW", "pw-Local-Only-3")
    monkeypatch.setenv("SUPPORT_VERIFY", "false")
    config = IMAP_PUBLIC | {"imap": {**IMAP_PUBLIC["imap"], "verify_tls": False}}  # type: ignore[dict-item]
    local = {
        "imap.password": "${SUPPORT_PW}",
        "imap.verify_tls": "${SUPPORT_VERIFY}",
        "imap.ca_file": "file:/etc/ssl/local-ca.pem",
        **PIN,
    }
    box = mailbox_from_iwd(config, local, "support")
    assert box.imap is not None and box.imap.verify_tls is False
    assert box.imap.ca_file == "/etc/ssl/local-ca.pem"
    monkeypatch.setenv("SUPPORT_VERIFY", "true")
    with pytest.raises(ConfigError, match="differs from the local override"):
        mailbox_from_iwd(config, local, "support")


def test_an_unset_secret_variable_is_a_config_error_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unresolvable ${VAR} reaches the caller as ConfigError with the field path (pydantic wraps it)."""
    monkeypatch.delenv("SUPPORT_PW_UNSET", raising=False)
    with pytest.raises(
        ConfigError, match=r"mailboxes\[support\]\.imap\.password: .*SUPPORT_PW_UNSET is not set"
    ):
        mailbox_from_iwd(IMAP_PUBLIC, {"imap.password": "${SUPPORT_PW_UNSET}", **PIN}, "support")


def test_local_secrets_go_only_to_the_locally_pinned_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """IWD naming another IMAP host than the local pin is refused, so it cannot collect the password."""
    monkeypatch.setenv("SUPPORT_PW", "pw-Local-Only-4")
    moved = IMAP_PUBLIC | {"imap": {**IMAP_PUBLIC["imap"], "host": "imap.evil.example"}}  # type: ignore[dict-item]
    with pytest.raises(
        ConfigError, match=r"mailboxes\[support\]\.imap\.host: IWD sets a value that differs from the local"
    ):
        mailbox_from_iwd(moved, {"imap.password": "${SUPPORT_PW}", **PIN}, "support")
    same = IMAP_PUBLIC | {"imap": {**IMAP_PUBLIC["imap"], "host": "IMAP.example.com."}}  # type: ignore[dict-item]
    box = mailbox_from_iwd(same, {"imap.password": "${SUPPORT_PW}", **PIN}, "support")
    assert box.imap is not None and box.imap.host == "imap.example.com"


def test_a_local_secret_without_a_host_pin_is_refused_naming_the_pin_to_add() -> None:
    """Without `imap.host` in the local entry the mailbox does not run; the error says what to add."""
    with pytest.raises(ConfigError, match=r"imap\.host: .*add secrets\.support\.imap\.host"):
        mailbox_from_iwd(IMAP_PUBLIC, {"imap.password": "${SUPPORT_PW}"}, "support")


def test_the_host_pin_fills_in_a_host_iwd_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """IWD may omit the host entirely; the local pin is the host used."""
    monkeypatch.setenv("SUPPORT_PW", "pw-Local-Only-5")
    hostless = IMAP_PUBLIC | {"imap": {"username": "support"}}
    box = mailbox_from_iwd(hostless, {"imap.password": "${SUPPORT_PW}", **PIN}, "support")
    assert box.imap is not None and box.imap.host == "imap.example.com"


def test_a_block_without_local_secrets_takes_its_host_from_iwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMTP without authentication sends no secret, so IWD may choose its relay."""
    monkeypatch.setenv("SUPPORT_PW", "pw-Local-Only-6")
    config = IMAP_PUBLIC | {"smtp": {"host": "relay.example.com", "auth": "none"}}
    box = mailbox_from_iwd(config, {"imap.password": "${SUPPORT_PW}", **PIN}, "support")
    assert box.smtp is not None and box.smtp.host == "relay.example.com"


def test_a_literal_secret_in_the_local_map_is_refused_but_a_literal_pin_is_accepted() -> None:
    """`imap.password: hunter2` is refused naming mailbox and key; `imap.host: ...` may be literal."""
    base: dict[str, object] = {
        "iwd": {"url": "http://x/iwd/v3", "api_key": "k", "ccid": "c"},
        "config_source": "iwd",
    }
    with pytest.raises(ValueError, match=r"support\.imap\.password: must be a reference"):
        ConnectorSettings.model_validate(base | {"secrets": {"support": {"imap.password": "hunter2"}}})
    ok = ConnectorSettings.model_validate(base | {"secrets": {"support": {"imap.password": "${PW}", **PIN}}})
    assert ok.secrets["support"]["imap.host"] == "imap.example.com"
