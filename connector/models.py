"""Values that cross module boundaries: small, frozen, provider-neutral."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message as a provider hands it over; the pipeline never asks which provider.

    `provider_id` is the message's stable identity within (mailbox, folder) as long as the
    server keeps it (IMAP: "UIDVALIDITY:UID", Maildir: unique file name, Gmail/Graph: message id).
    `cursor` is the folder position *after* this message, persisted only once it is delivered.
    """

    folder: str
    provider_id: str
    raw: bytes
    size: int
    internal_date: datetime | None = None
    flags: frozenset[str] = frozenset()
    cursor: str | None = None
    headers_only: bool = False  # oversize: only the header block was fetched
    thread_hint: str | None = None  # provider thread id (Gmail threadId, Graph conversationId)
    stand_in: bool = False  # a note standing in for a message the provider could not download


# A stand-in's Message-ID is in this domain, so the ledger still knows it after a restart: the
# original it stands for stays on the server untouched (no post-action), whatever the mailbox says.
STAND_IN_DOMAIN = "iwd-email-connector.invalid"


def is_stand_in_message_id(message_id: str | None) -> bool:
    return message_id is not None and message_id.rstrip(">").endswith(f"@{STAND_IN_DOMAIN}")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch returns. `resync` is set when the provider lost its place (UIDVALIDITY
    change, expired history id) and is replaying a folder: the ledger then dedupes by content."""

    messages: list[RawMessage]
    cursor: str | None = None  # folder cursor after the whole batch (even if no messages)
    more: bool = False  # another fetch would return more right away
    resync: bool = False


class PostActionKind(enum.StrEnum):
    NONE = "none"
    MARK_READ = "mark_read"
    MOVE = "move"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class PostAction:
    kind: PostActionKind
    target: str | None = None  # folder for MOVE

    @classmethod
    def parse(cls, text: str) -> PostAction:
        """`none` | `mark_read` | `move:<folder>` | `delete`; raises ValueError with the reason."""
        if text.startswith("move:"):
            target = text[5:].strip()
            if not target:
                raise ValueError("move needs a folder: move:<folder>")
            return cls(PostActionKind.MOVE, target)
        try:
            kind = PostActionKind(text)
        except ValueError:
            raise ValueError("must be none, mark_read, move:<folder> or delete") from None
        if kind is PostActionKind.MOVE:
            raise ValueError("move needs a folder: move:<folder>")
        return cls(kind)

    def __str__(self) -> str:
        return f"move:{self.target}" if self.kind is PostActionKind.MOVE else self.kind.value


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment as the converter found it; `data` is uploaded to IWD before the item."""

    filename: str
    content_type: str
    data: bytes
    sha256: str
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class ItemFlags:
    auto_reply: bool = False
    bounce: bool = False
    oversize: bool = False
    unparseable: bool = False


@dataclass(frozen=True, slots=True)
class BounceInfo:
    failed_recipients: tuple[str, ...] = ()
    original_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class EmailItem:
    """The converter's output: everything IWD needs for an inbound email item except the
    identifiers the pipeline assigns (externalId, mailboxId, provider, attachment ids)."""

    message_id: str
    subject: str
    sender: Address | None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    thread_key: str | None = None
    normalized_subject: str = ""
    sent_at: datetime | None = None
    text_body: str = ""
    html_body: str | None = None
    language: str | None = None
    importance: str = "normal"  # low | normal | high
    attachments: tuple[Attachment, ...] = ()
    flags: ItemFlags = field(default_factory=ItemFlags)
    bounce: BounceInfo | None = None
    defects: tuple[str, ...] = ()
    size: int = 0
    raw_sha256: str = ""


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What the SMTP server said to one envelope recipient (RCPT TO, or DATA for the accepted)."""

    address: str
    accepted: bool
    code: int | None = None
    message: str = ""

    @property
    def temporary(self) -> bool:
        """A 4xx refusal: this recipient may be tried again later."""
        return not self.accepted and self.code is not None and 400 <= self.code < 500


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The result of one accepted SMTP transaction (at least one recipient took the message)."""

    recipients: tuple[RecipientResult, ...]
    data_response: str = ""  # the server's answer to the final dot (often carries its queue id)

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.accepted)

    @property
    def refused(self) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.recipients if not r.accepted)
