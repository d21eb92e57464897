"""The IWD email API profile v1.2: every path, header, query parameter and field name in one place.

Genesys does not publish IWD's email endpoints, so the project defines one documented profile
(docs/iwd-api.md). A deployment whose IWD differs adapts *this module* only: the client, the
sandbox server and the OpenAPI document all read their names and shapes from here.

The pydantic models are the wire shapes. Their attribute names *are* the JSON field names
(camelCase on purpose), except `from`, which is a Python keyword and so an alias.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from connector.errors import MessageError
from connector.models import Address as ItemAddress
from connector.models import EmailItem
from connector.secrets import SECRET_KEY_NAMES as SECRET_KEY_NAMES  # keys refused in IWD-held config
from connector.secrets import is_secret_key

# 1.1 = 1 plus the optional POST /emails/batch;
# 1.2 = 1.1 plus Idempotency-Key on POST /emails/attachments (attachment_idempotency_key)
PROFILE_VERSION = "1.2"
BASE_PATH = "/iwd/v3"  # part of IWDSettings.url; the sandbox mounts the profile here

# ---------------------------------------------------------------- paths (relative to the base URL)
EMAILS = "/emails"
EMAIL = "/emails/{id}"
ATTACHMENTS = "/emails/attachments"
ATTACHMENT = "/emails/attachments/{attachmentId}"
MAILBOXES = "/emails/mailboxes"
MAILBOX = "/emails/mailboxes/{mailboxId}"
MAILBOX_STATUS = "/emails/mailboxes/{mailboxId}/status"
OUTBOUND = "/emails/outbound"
# v1.1, optional: a deployment without it answers 404/405 and the connector uses POST /emails.
EMAILS_BATCH = "/emails/batch"
MAX_BATCH_ITEMS = 100
ALL_PATHS = (
    EMAILS,
    EMAILS_BATCH,
    EMAIL,
    ATTACHMENTS,
    ATTACHMENT,
    MAILBOXES,
    MAILBOX,
    MAILBOX_STATUS,
    OUTBOUND,
)

# ---------------------------------------------------------------- headers
API_KEY_HEADER = "x-api-key"
CCID_HEADER = "x-ccid"
IDEMPOTENCY_HEADER = "Idempotency-Key"  # POST /emails (inbound) and, since v1.2, POST /emails/attachments
MAX_IDEMPOTENCY_KEY_CHARS = 200
REQUEST_ID_HEADER = "x-request-id"
FILENAME_HEADER = "x-filename"  # percent-encoded UTF-8; RFC 5987 `UTF-8''...` also accepted
RETRY_AFTER_HEADER = "Retry-After"

# ---------------------------------------------------------------- query parameters
Q_MAILBOX = "mailboxId"
Q_DIRECTION = "direction"
Q_LIMIT = "limit"
Q_CURSOR = "cursor"
Q_STATUS = "status"
MAX_PAGE_LIMIT = 500

# ---------------------------------------------------------------- response field names
F_ID = "id"
F_ATTACHMENT_ID = "attachmentId"
F_ITEMS = "items"
F_NEXT_CURSOR = "nextCursor"
F_CODE = "code"
F_MESSAGE = "message"
F_REQUEST_ID = "requestId"
F_EXTERNAL_ID = "externalId"
F_RESULTS = "results"  # POST /emails/batch answer: one result per item, in request order
F_STATUS = "status"
F_ERROR = "error"

INBOUND = "inbound"
OUTBOUND_DIRECTION = "outbound"
MailboxState = Literal["ok", "degraded", "throttled", "auth_required", "error", "stalled", "disabled"]
OutboundStatus = Literal["queued", "sending", "sent", "failed"]
MAILBOX_STATES: tuple[str, ...] = get_args(MailboxState)
OUTBOUND_STATUSES: tuple[str, ...] = get_args(OutboundStatus)


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


Timestamp = Annotated[AwareDatetime, PlainSerializer(_iso_utc, return_type=str)]
MAILBOX_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MailboxId = Annotated[str, Field(pattern=MAILBOX_ID_PATTERN)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
NonEmpty = Annotated[str, Field(min_length=1, max_length=998)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


class Address(_Wire):
    name: str | None = None
    address: NonEmpty


class AttachmentRef(_Wire):
    """An attachment of an inbound item; its bytes were uploaded first (POST /emails/attachments)."""

    attachmentId: NonEmpty
    filename: str
    contentType: NonEmpty
    size: int = Field(ge=0)
    sha256: Sha256
    contentId: str | None = None
    inline: bool = False


class Flags(_Wire):
    autoReply: bool = False
    bounce: bool = False
    oversize: bool = False
    unparseable: bool = False


class Bounce(_Wire):
    failedRecipients: list[str] = Field(default_factory=list)
    originalMessageId: str | None = None


class InboundEmail(_Wire):
    """Body of POST /emails for a customer's email (direction "inbound")."""

    externalId: Annotated[str, Field(min_length=1, max_length=200)]
    mailboxId: MailboxId
    direction: Literal["inbound"]
    provider: Annotated[str, Field(min_length=1, max_length=32)]
    messageId: str
    inReplyTo: str | None = None
    references: list[str] = Field(default_factory=list)
    threadKey: str | None = None
    subject: str
    normalizedSubject: str = ""
    sender: Address | None = Field(alias="from")
    replyTo: list[Address] = Field(default_factory=list)
    to: list[Address] = Field(default_factory=list)
    cc: list[Address] = Field(default_factory=list)
    sentAt: Timestamp | None = None
    receivedAt: Timestamp
    textBody: str
    htmlBody: str | None = None
    language: str | None = None
    importance: Literal["low", "normal", "high"] = "normal"
    attachments: list[AttachmentRef] = Field(default_factory=list)
    flags: Flags
    bounce: Bounce | None = None
    defects: list[str] = Field(default_factory=list)
    size: int = Field(ge=0)
    rawSha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]


class OutboundAttachmentRef(_Wire):
    attachmentId: NonEmpty
    filename: str | None = None
    contentType: str | None = None
    contentId: str | None = None
    inline: bool = False


class OutboundEmail(_Wire):
    """Body of POST /emails for an agent's reply (direction "outbound"), queued for the connector."""

    externalId: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    mailboxId: MailboxId
    direction: Literal["outbound"]
    status: Literal["queued"] = "queued"
    sender: Address | None = Field(default=None, alias="from")
    to: list[Address] = Field(min_length=1)
    cc: list[Address] = Field(default_factory=list)
    bcc: list[Address] = Field(default_factory=list)
    subject: str
    textBody: str = ""
    htmlBody: str | None = None
    inReplyToItemId: str | None = None
    attachments: list[OutboundAttachmentRef] = Field(default_factory=list)


class SendError(_Wire):
    code: NonEmpty
    message: str
    permanent: bool


class EmailPatch(_Wire):
    """Body of PATCH /emails/{id}: the connector reports what happened to an outbound item."""

    status: Literal["sending", "sent", "failed"]
    sentAt: Timestamp | None = None
    messageId: str | None = None
    error: SendError | None = None


class LastError(_Wire):
    code: NonEmpty
    message: str
    at: Timestamp
    since: Timestamp | None = None  # when this run of failures began (its first failed call)
    peer: Literal["iwd", "mail_server", "store"] | None = None  # whose outage it is, if any


class DirectionStatus(_Wire):
    state: MailboxState
    lastPollAt: Timestamp | None = None
    lastSuccessAt: Timestamp | None = None
    lastError: LastError | None = None
    backlog: int = Field(default=0, ge=0)
    quarantined: int = Field(default=0, ge=0)
    deliveredTotal: int = Field(default=0, ge=0)
    lagSeconds: float | None = Field(default=None, ge=0)


class MailboxStatus(_Wire):
    """Body of PUT /emails/mailboxes/{mailboxId}/status: separate inbound and outbound health."""

    inbound: DirectionStatus
    outbound: DirectionStatus
    updatedAt: Timestamp


class ErrorBody(_Wire):
    code: str
    message: str
    requestId: str


class BatchCreate(_Wire):
    """Body of POST /emails/batch (v1.1): each item is a POST /emails inbound body, keyed by its
    externalId (no Idempotency-Key header)."""

    items: list[InboundEmail] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchItemError(_Wire):
    code: str
    message: str


class BatchItemResult(_Wire):
    """One item's outcome: 201 created, 200 existed (its id), 400 breaks the profile, 409 the same
    externalId came earlier in this batch with different content."""

    externalId: str
    status: Literal[201, 200, 400, 409]
    id: str | None = None
    error: BatchItemError | None = None


class BatchCreateResponse(_Wire):
    results: list[BatchItemResult]


# ---------------------------------------------------------------- helpers


def field_path(loc: Sequence[int | str]) -> str:
    """`("attachments", 0, "sha256")` -> `attachments[0].sha256`, the way errors name fields."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def describe_validation_error(exc: ValidationError, *, at: Sequence[int | str] = ()) -> str:
    """The first problem as `field.path: what is wrong`; never echoes the offending value.

    `at` prefixes the path, e.g. `("items", 3)` for the fourth item of a batch.
    """
    err = exc.errors(include_input=False, include_url=False)[0]
    kind = err["type"]
    if kind == "missing":
        what = "required"
    elif kind == "extra_forbidden":
        what = "not a field of the profile"
    else:
        what = str(err["msg"]).removeprefix("Value error, ")
    return f"{field_path((*at, *err['loc']))}: {what}"


def find_secret_keys(value: Any, path: tuple[int | str, ...] = ()) -> list[str]:
    """Paths of keys whose name marks a secret (password, token, client_secret...), anywhere."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            here = (*path, str(key))
            if is_secret_key(str(key)):
                found.append(field_path(here))
            found.extend(find_secret_keys(child, here))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found.extend(find_secret_keys(child, (*path, i)))
    return found


def attachment_idempotency_key(external_id: str, index: int, sha256: str) -> str:
    """The Idempotency-Key of one attachment upload (v1.2): the same for every retry and every
    re-fetch of the same email, so IWD answers a repeated upload with the attachment it stored.

    Derived from the item's externalId, the attachment's position in it and its content's
    sha256: different bytes under the same position (a changed conversion) get a new key and a
    new upload rather than a conflict. Hashed, so every key has the same short length.
    """
    material = f"{external_id}\n{index}\n{sha256}".encode()
    return "att-" + hashlib.sha256(material).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _address(addr: ItemAddress) -> dict[str, Any]:
    return {"name": addr.name, "address": addr.address}


def build_email_payload(
    item: EmailItem,
    *,
    external_id: str,
    mailbox_id: str,
    provider: str,
    received_at: datetime,
    attachment_ids: Sequence[str],
) -> dict[str, Any]:
    """The POST /emails body for a converted message. Naive datetimes are taken as UTC.

    Raises MessageError naming the field when the item does not fit the profile, so the
    pipeline quarantines it instead of sending IWD something it must reject.
    """
    if len(attachment_ids) != len(item.attachments):
        raise ValueError(f"{len(attachment_ids)} attachment ids for {len(item.attachments)} attachments")
    body: dict[str, Any] = {
        "externalId": external_id,
        "mailboxId": mailbox_id,
        "direction": INBOUND,
        "provider": provider,
        "messageId": item.message_id,
        "inReplyTo": item.in_reply_to,
        "references": list(item.references),
        "threadKey": item.thread_key,
        "subject": item.subject,
        "normalizedSubject": item.normalized_subject,
        "from": _address(item.sender) if item.sender is not None else None,
        "replyTo": [_address(a) for a in item.reply_to],
        "to": [_address(a) for a in item.to],
        "cc": [_address(a) for a in item.cc],
        "sentAt": _aware(item.sent_at) if item.sent_at is not None else None,
        "receivedAt": _aware(received_at),
        "textBody": item.text_body,
        "htmlBody": item.html_body,
        "language": item.language,
        "importance": item.importance,
        "attachments": [
            {
                "attachmentId": attachment_id,
                "filename": att.filename,
                "contentType": att.content_type,
                "size": att.size,
                "sha256": att.sha256,
                "contentId": att.content_id,
                "inline": att.inline,
            }
            for att, attachment_id in zip(item.attachments, attachment_ids, strict=True)
        ],
        "flags": {
            "autoReply": item.flags.auto_reply,
            "bounce": item.flags.bounce,
            "oversize": item.flags.oversize,
            "unparseable": item.flags.unparseable,
        },
        "bounce": None
        if item.bounce is None
        else {
            "failedRecipients": list(item.bounce.failed_recipients),
            "originalMessageId": item.bounce.original_message_id,
        },
        "defects": list(item.defects),
        "size": item.size,
        "rawSha256": item.raw_sha256,
    }
    try:
        model = InboundEmail.model_validate(body)
    except ValidationError as exc:
        raise MessageError(
            f"item does not fit the IWD profile: {describe_validation_error(exc)}",
            mailbox=mailbox_id,
            external_id=external_id,
        ) from None
    return model.model_dump(mode="json", by_alias=True)
