"""What a reply asks for, from either source (the local API or IWD's outbound queue).

The same fields and camelCase names as IWD's outbound item (docs/iwd-api.md), so one model
validates both and the stored JSON reads the same whichever way a reply came in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from connector.config import ConnectorSettings, MailboxSettings


def _ascii_address(value: str) -> str:
    if not value.isascii():
        raise ValueError("must be ASCII (internationalized addresses cannot be sent)")
    return value


def _one_line(value: str | None) -> str | None:
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError("must not contain CR or LF")
    return value


Email = Annotated[
    str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$", max_length=320), AfterValidator(_ascii_address)
]
HeaderText = Annotated[str | None, AfterValidator(_one_line)]


class ReplyAddress(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: Email
    name: HeaderText = None


class ReplyAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attachmentId: Annotated[str, Field(min_length=1)]
    filename: HeaderText = None
    contentType: HeaderText = None
    contentId: HeaderText = None
    inline: bool = False


class ReplyRequest(BaseModel):
    """One reply. `inReplyToItemId` names the IWD item answered; `inReplyTo`/`references` may be
    given instead (or as well: explicit values win)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    mailboxId: str | None = None
    sender: ReplyAddress | None = Field(default=None, alias="from")
    to: list[ReplyAddress] = Field(min_length=1, max_length=100)
    cc: list[ReplyAddress] = Field(default_factory=list, max_length=100)
    bcc: list[ReplyAddress] = Field(default_factory=list, max_length=100)
    subject: str = Field(default="", max_length=998)
    textBody: str = ""
    htmlBody: str | None = None
    inReplyToItemId: str | None = None
    inReplyTo: str | None = None
    references: list[str] = Field(default_factory=list, max_length=100)
    attachments: list[ReplyAttachment] = Field(default_factory=list, max_length=100)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: tells a retried POST from a different reply with the same id."""
        text = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def recipients(self) -> list[str]:
        """Envelope recipients, To then Cc then Bcc, each once (case-insensitive)."""
        seen: set[str] = set()
        out: list[str] = []
        for addr in (*self.to, *self.cc, *self.bcc):
            key = addr.address.lower()
            if key not in seen:
                seen.add(key)
                out.append(addr.address)
        return out


def parse_request(data: dict[str, Any]) -> ReplyRequest:
    """Raises ValueError naming the first bad field."""
    try:
        return ReplyRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        raise ValueError(f"{where}: {err['msg']}") from None


def choose_mailbox(settings: ConnectorSettings, request: ReplyRequest) -> MailboxSettings | None:
    """The mailbox named in the request, else the one whose address is the From, else the
    configured default outbound mailbox; None when none applies (or outbound is disabled)."""
    boxes = {b.id: b for b in settings.mailboxes}
    chosen: MailboxSettings | None = None
    if request.mailboxId and request.mailboxId in boxes:
        chosen = boxes[request.mailboxId]
    elif request.sender is not None:
        wanted = request.sender.address.lower()
        chosen = next((b for b in settings.mailboxes if b.address.lower() == wanted), None)
    if chosen is None and settings.default_outbound_mailbox in boxes:
        chosen = boxes[settings.default_outbound_mailbox or ""]
    if chosen is None or chosen.sends_via is None:
        return None
    return chosen


# The daemon's settings change on reload (mailboxes added or changed): outbox parts read them
# through a getter, or take a fixed value in tests.
SettingsSource = ConnectorSettings | Callable[[], ConnectorSettings]


def current(source: SettingsSource) -> ConnectorSettings:
    return source if isinstance(source, ConnectorSettings) else source()
