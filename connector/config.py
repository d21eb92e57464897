"""Configuration: one YAML file, validated by pydantic, secrets resolved by reference at load.

The settings models live here; reading the file and turning validation errors into messages that
name file, field and line is in connector/config_loading.py (re-exported below).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from connector.models import PostAction
from connector.secrets import expand_env, is_secret_key, resolve_optional

DEFAULT_POLL_SECONDS = 60
DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024


def _secret(value: Any) -> Any:
    if isinstance(value, str):
        return resolve_optional(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return expand_env(value)
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be 1..65535")
    return value


Secret = Annotated[SecretStr, BeforeValidator(_secret)]
Text = Annotated[str, BeforeValidator(_plain)]
Port = Annotated[int, AfterValidator(_port)]
MailboxId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IWDSettings(_Model):
    url: Text = Field(description="Base URL including /iwd/v3, e.g. https://iwd.example:4024/iwd/v3")
    api_key: Secret = Field(description="Sent as x-api-key")
    ccid: Text = Field(description="Tenant contact-center id, sent as x-ccid")
    timeout_seconds: float = Field(default=15.0, gt=0)
    verify_tls: bool = Field(default=True, description="Only a person may turn this off")
    ca_file: Text | None = None
    max_retry_seconds: float = Field(default=60.0, ge=0, description="Retry budget for one call")
    batch_create: bool = Field(
        default=True,
        description="Create items with POST /emails/batch when IWD offers it (profile v1.1); "
        "false: always one POST /emails per item",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/]+", value):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class StoreSettings(_Model):
    url: Text = Field(
        default="sqlite+aiosqlite:///./connector.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///file.db or postgresql+asyncpg://...",
    )


class MaildirSettings(_Model):
    path: Text = Field(
        description="Maildir root; folders are Maildir++ subfolders ('.Name'), INBOX is the root"
    )


Security = Literal["tls", "starttls", "plain"]


class OAuthSettings(_Model):
    """Token source for XOAUTH2 (IMAP and SMTP)."""

    kind: Literal["static", "microsoft", "google_refresh", "google_service_account"]
    token: Secret | None = None  # static
    tenant_id: Text | None = None  # microsoft
    client_id: Text | None = None
    client_secret: Secret | None = None
    authority: Text | None = None  # override for sovereign clouds and tests
    scope: Text | None = None
    refresh_token: Secret | None = None  # google_refresh
    token_uri: Text | None = None
    service_account_file: Text | None = None  # google_service_account
    subject: Text | None = None
    ca_file: Text | None = Field(
        default=None,
        description="CA bundle for the token endpoint (private PKI or tests); system CAs otherwise",
    )


class ImapSettings(_Model):
    host: Text
    port: Port = 993
    security: Security = "tls"
    username: Text
    password: Secret | None = None
    auth: Literal["password", "xoauth2"] = "password"
    oauth: OAuthSettings | None = None
    ca_file: Text | None = None
    verify_tls: bool = True
    allow_insecure: bool = Field(default=False, description="Permit plaintext to a non-loopback host")
    timeout_seconds: float = Field(default=30.0, gt=0)
    idle: bool = True
    fetch_batch: int = Field(default=50, ge=1, le=500)

    @model_validator(mode="after")
    def _auth(self) -> ImapSettings:
        if self.auth == "password" and self.password is None:
            raise ValueError("password is required when auth is password")
        if self.auth == "xoauth2" and self.oauth is None:
            raise ValueError("oauth is required when auth is xoauth2")
        return self


class SmtpSettings(_Model):
    host: Text
    port: Port = 587
    security: Security = "starttls"
    username: Text | None = None
    password: Secret | None = None
    auth: Literal["none", "password", "xoauth2"] = "password"
    oauth: OAuthSettings | None = None
    ca_file: Text | None = None
    verify_tls: bool = True
    allow_insecure: bool = False
    timeout_seconds: float = Field(default=60.0, gt=0)


class GmailSettings(_Model):
    user_id: Text = "me"
    oauth: OAuthSettings
    api_endpoint: Text | None = None  # emulator or proxy


class GraphSettings(_Model):
    user_id: Text
    oauth: OAuthSettings
    api_endpoint: Text = "https://graph.microsoft.com/v1.0"


ProviderKind = Literal["maildir", "imap", "gmail", "graph"]


class AutoAckSettings(_Model):
    """A template reply to the first message of a new thread (never to auto-replies, bounces, lists)."""

    enabled: bool = False
    subject: Text = Field(default="", description="Empty: 'Re: <their subject>'; else this, after 'Re: '")
    text: Text = Field(default="Thank you for your message. We will answer as soon as we can.")
    html: Text | None = None
    period_seconds: float = Field(default=86400, ge=1, description="At most one per sender per period")


class OutboxSettings(_Model):
    """Agents' replies: polling, retries, and what to do when a send may or may not have arrived."""

    poll_interval_seconds: float = Field(default=5.0, gt=0, description="IWD queue and local outbox poll")
    iwd_queue_enabled: bool = Field(default=True, description="Poll IWD's GET /emails/outbound queue")
    retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [60.0, 300.0, 900.0, 1800.0, 3600.0],
        min_length=1,
        description="Waits after each temporary failure; the last one repeats",
    )
    retry_horizon_seconds: float = Field(
        default=2 * 86400.0, gt=0, description="Give up (failed) this long after the first attempt"
    )
    retry_jitter: float = Field(default=0.1, ge=0, le=1, description="Random extra wait, as a fraction")
    on_uncertain: Literal["report", "resend"] = Field(
        default="report", description="A send lost after the DATA dot: report to a person, or resend"
    )

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("every wait must be > 0 seconds")
        return value


class MailboxSettings(_Model):
    id: MailboxId
    address: Text = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: Text | None = None
    provider: ProviderKind
    maildir: MaildirSettings | None = None
    imap: ImapSettings | None = None
    gmail: GmailSettings | None = None
    graph: GraphSettings | None = None
    smtp: SmtpSettings | None = None
    folders: list[Text] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    poll_interval_seconds: float = Field(default=DEFAULT_POLL_SECONDS, ge=1)
    post_action: Text = "mark_read"
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    inbound_enabled: bool = True
    outbound_enabled: bool = True
    auto_ack: AutoAckSettings | None = None
    sent_copy: bool | None = Field(
        default=None,
        description="APPEND replies to the Sent folder (default: IMAP mailboxes, but not Gmail's)",
    )
    sent_folder: Text | None = Field(default=None, description="Sent folder name when SPECIAL-USE finds none")

    @field_validator("post_action")
    @classmethod
    def _post_action(cls, value: str) -> str:
        PostAction.parse(value)
        return value

    @model_validator(mode="after")
    def _provider_block(self) -> MailboxSettings:
        if getattr(self, self.provider) is None:
            raise ValueError(f"provider is {self.provider} but there is no '{self.provider}:' block")
        return self

    @property
    def action(self) -> PostAction:
        return PostAction.parse(self.post_action)

    @property
    def sends_via(self) -> Literal["smtp", "gmail", "graph"] | None:
        """How replies leave this mailbox: its `smtp:` block when it has one, else the Gmail or
        Graph API it is read through; None when it cannot send (or outbound is switched off)."""
        if not self.outbound_enabled:
            return None
        if self.smtp is not None:
            return "smtp"
        if self.provider == "gmail" and self.gmail is not None:
            return "gmail"
        if self.provider == "graph" and self.graph is not None:
            return "graph"
        return None


class HttpSettings(_Model):
    enabled: bool = True
    host: Text = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8025
    token: Secret | None = Field(default=None, description="Bearer token; required when host is not loopback")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpSettings:
        if self.enabled and self.token is None and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(
                f"http.host is {self.host}: a bearer token (http.token) is required off loopback"
            )
        return self


class StatusSettings(_Model):
    """Status to IWD and the watchdog (docs/operations.md)."""

    heartbeat_seconds: float = Field(default=60.0, gt=0, description="PUT every mailbox's status this often")
    coalesce_seconds: float = Field(default=0.5, ge=0, description="Changes within this window make one PUT")
    stall_factor: float = Field(
        default=5.0, ge=1, description="A mailbox is stalled when no cycle ended for this many intervals"
    )
    stall_min_seconds: float = Field(default=30.0, ge=0, description="Lower bound of the stall window")
    watchdog_seconds: float = Field(default=5.0, gt=0, description="How often the watchdog looks")


def _secret_ref(value: str) -> str:
    if not (value.startswith("file:") or re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value)):
        raise ValueError("must be a reference (${ENV_VAR} or file:/path), never a literal secret")
    return value


class ReloadSettings(_Model):
    """Hot reload of mailboxes: on SIGHUP, when the file changes, or (source iwd) from IWD."""

    watch_file: bool = Field(default=True, description="Reload when the configuration file changes")
    poll_seconds: float = Field(default=2.0, gt=0, description="How often the file's mtime is checked")
    iwd_poll_seconds: float = Field(
        default=30.0, gt=0, description="config_source iwd: how often IWD is read"
    )


class ReplicaSettings(_Model):
    """Several daemons on one PostgreSQL share the mailboxes through leases (docs/operations.md)."""

    replica_id: Text | None = Field(
        default=None,
        max_length=128,
        description="This daemon's name among replicas; empty: the host name plus a random suffix",
    )
    lease_ttl_seconds: float = Field(
        default=30.0, gt=0, description="A dead replica's mailboxes are taken over after this long"
    )
    renew_seconds: float | None = Field(
        default=None, gt=0, description="How often leases are renewed; empty: a third of the TTL"
    )

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> ReplicaSettings:
        if self.renew_seconds is not None and self.renew_seconds >= self.lease_ttl_seconds:
            raise ValueError("renew_seconds must be shorter than lease_ttl_seconds")
        return self

    @property
    def renew_every_seconds(self) -> float:
        """The renewal period in force."""
        return self.renew_seconds if self.renew_seconds is not None else self.lease_ttl_seconds / 3


class ImapConnectionSettings(_Model):
    """The daemon's bound on open IMAP sessions and login pace (docs/operations.md, "Connection budget")."""

    max_total: int = Field(
        default=1000,
        ge=1,
        description="IMAP sessions held open at most, all mailboxes together; IDLE mailboxes keep "
        "theirs, polled mailboxes share the rest (least recently used closed first)",
    )
    max_per_host: int | None = Field(
        default=None,
        ge=1,
        description="Sessions held open at most to one server host; empty: max_total",
    )
    logins_per_second_per_host: float = Field(
        default=10.0,
        gt=0,
        description="Logins started per second to one server host (bursts of as many), so a restart "
        "with thousands of mailboxes does not storm the server",
    )


class ConnectorSettings(_Model):
    iwd: IWDSettings
    store: StoreSettings = Field(default_factory=StoreSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    status: StatusSettings = Field(default_factory=StatusSettings)
    reload: ReloadSettings = Field(default_factory=ReloadSettings)
    quarantine_max_attempts: int = Field(default=3, ge=1)
    max_concurrent_mailboxes: int = Field(default=16, ge=1)
    default_outbound_mailbox: MailboxId | None = Field(
        default=None, description="Mailbox that sends replies whose From matches no mailbox"
    )
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    replicas: ReplicaSettings = Field(default_factory=ReplicaSettings)
    imap_connections: ImapConnectionSettings = Field(default_factory=ImapConnectionSettings)
    config_source: Literal["file", "iwd"] = Field(
        default="file",
        description="file: mailboxes come from this file; "
        "iwd: from GET /emails/mailboxes, with secrets from 'secrets:'",
    )
    secrets: dict[MailboxId, dict[str, str]] = Field(  # kept as written: resolved per use
        default_factory=dict,
        description="Per mailbox id, dotted setting path -> secret reference (e.g. imap.password: ${VAR}) "
        "or local pin/override (imap.host, imap.verify_tls, imap.ca_file...); merged locally into "
        "IWD-held configuration, so no secret travels through IWD",
    )
    mailboxes: list[MailboxSettings] = Field(default_factory=list)

    @field_validator("secrets")
    @classmethod
    def _secret_fields_take_references(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """A secret field takes only a reference; a pin or override (host, verify_tls) may be literal."""
        for mailbox_id, entries in value.items():
            for dotted, setting in entries.items():
                if is_secret_key(dotted.rsplit(".", 1)[-1]):
                    try:
                        _secret_ref(setting)
                    except ValueError as exc:
                        raise ValueError(f"{mailbox_id}.{dotted}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> ConnectorSettings:
        if not self.mailboxes and self.config_source == "file":
            raise ValueError("mailboxes: at least one mailbox is required (or config_source: iwd)")
        seen: set[str] = set()
        for box in self.mailboxes:
            if box.id in seen:
                raise ValueError(f"mailbox id '{box.id}' is used twice")
            seen.add(box.id)
        default = self.default_outbound_mailbox
        if default is not None and self.config_source == "file" and default not in seen:
            raise ValueError(f"default_outbound_mailbox: '{default}' is not a mailbox id")
        return self

    def mailbox(self, mailbox_id: str) -> MailboxSettings:
        for box in self.mailboxes:
            if box.id == mailbox_id:
                return box
        raise KeyError(mailbox_id)


# the loader imports the models above, so it is imported last
from connector.config_loading import load_config, parse_config, public_view  # noqa: E402

__all__ = [
    "AutoAckSettings",
    "ConnectorSettings",
    "GmailSettings",
    "GraphSettings",
    "HttpSettings",
    "IWDSettings",
    "ImapConnectionSettings",
    "ImapSettings",
    "MailboxSettings",
    "MaildirSettings",
    "OAuthSettings",
    "OutboxSettings",
    "ReloadSettings",
    "ReplicaSettings",
    "SmtpSettings",
    "StatusSettings",
    "StoreSettings",
    "load_config",
    "parse_config",
    "public_view",
]
