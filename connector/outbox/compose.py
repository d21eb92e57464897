"""Builds the reply's MIME message. Pure: the inputs are fetched elsewhere, no IO here.

Threading follows RFC 5322 §3.6.4 (In-Reply-To = the parent's Message-ID; References = the
parent's References, else its In-Reply-To, plus its Message-ID) so the customer's client files
the reply under the original mail. The subject gets one "Re: " whatever reply prefix it
already carried ("RE:", "AW:", "SV:", "Re[2]:" ...). Only automatic messages are marked
`Auto-Submitted: auto-replied` (RFC 3834); an agent's reply is a person's answer.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from connector.config import MailboxSettings
from connector.convert.threads import parse_id_list, parse_message_id
from connector.outbox.request import ReplyAddress, ReplyRequest

MAX_REFERENCES = 50
_REPLY_PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|vs|antw|antwort|ynt|res|rif|r|odp|vá|答复|回复|回覆|返信|ответ)"
    r"\s*(?:\[\d+\]|\^\d+|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """Where the reply hangs in the conversation."""

    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    parent_subject: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


def new_message_id(mailbox_address: str) -> str:
    """A globally unique Message-ID on the mailbox's domain; generated once, before the first attempt."""
    domain = mailbox_address.rsplit("@", 1)[-1].strip().lower() or "localhost"
    return f"<reply.{uuid.uuid4().hex}@{domain}>"


def thread_from_parent(
    message_id: str | None,
    references: list[str] | tuple[str, ...],
    in_reply_to: str | None,
    subject: str | None,
) -> ThreadInfo:
    """ThreadInfo for answering a message with these headers (RFC 5322 §3.6.4)."""
    parent = parse_message_id(message_id)
    chain = list(parse_id_list(list(references)))
    if not chain and in_reply_to and (irt := parse_message_id(in_reply_to)):
        chain = [irt]
    if parent and parent not in chain:
        chain.append(parent)
    return ThreadInfo(in_reply_to=parent, references=_trim(chain), parent_subject=subject)


def explicit_thread(request: ReplyRequest, fallback: ThreadInfo) -> ThreadInfo:
    """The request's own In-Reply-To/References win over what was looked up."""
    if not request.inReplyTo and not request.references:
        return fallback
    irt = parse_message_id(request.inReplyTo) if request.inReplyTo else fallback.in_reply_to
    chain = list(parse_id_list(request.references)) or list(fallback.references)
    if irt and irt not in chain:
        chain.append(irt)
    return ThreadInfo(in_reply_to=irt, references=_trim(chain), parent_subject=fallback.parent_subject)


def _trim(chain: list[str]) -> tuple[str, ...]:
    if len(chain) > MAX_REFERENCES:  # keep the root and the recent chain, as RFC 5322 suggests
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return tuple(chain)


def reply_subject(subject: str, parent_subject: str | None = None) -> str:
    """`Re: <subject>` with every leading reply prefix folded into one; the parent's subject
    when the reply gives none. A subject that is not a reply at all stays as written if there
    is no parent (a fresh message)."""
    text = " ".join((subject or "").split())
    if not text and parent_subject:
        text = " ".join(parent_subject.split())
    if not text:
        return "Re:" if parent_subject is not None else ""
    stripped = text
    for _ in range(20):
        shorter = _REPLY_PREFIX.sub("", stripped, count=1)
        if shorter == stripped:
            break
        stripped = shorter
    return f"Re: {stripped}" if stripped else "Re:"


def _addr(a: ReplyAddress) -> str:
    return formataddr((a.name or "", a.address))


def compose(
    request: ReplyRequest,
    *,
    mailbox: MailboxSettings,
    message_id: str,
    thread: ThreadInfo,
    date: datetime,
    attachments: tuple[OutgoingAttachment, ...] = (),
    automatic: bool = False,
) -> EmailMessage:
    """The message as sent: no Bcc header (Bcc recipients are envelope-only)."""
    msg = EmailMessage()
    msg["From"] = formataddr((mailbox.display_name or "", mailbox.address))
    msg["To"] = ", ".join(_addr(a) for a in request.to)
    if request.cc:
        msg["Cc"] = ", ".join(_addr(a) for a in request.cc)
    msg["Subject"] = reply_subject(request.subject, thread.parent_subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if thread.in_reply_to:
        msg["In-Reply-To"] = thread.in_reply_to
    if thread.references:
        msg["References"] = " ".join(thread.references)
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "auto_reply"
    msg.set_content(request.textBody or "", cte="quoted-printable")
    html_part: EmailMessage | None = None
    if request.htmlBody:
        msg.add_alternative(request.htmlBody, subtype="html", cte="quoted-printable")
        part = msg.get_payload()[1]  # type: ignore[index]
        html_part = part if isinstance(part, EmailMessage) else None
    for att in attachments:
        maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        cid = f"<{att.content_id.strip('<>')}>" if att.content_id else None
        if att.inline and cid and html_part is not None:
            html_part.add_related(
                att.data,
                maintype=maintype,
                subtype=subtype,
                cid=cid,
                filename=att.filename,
                disposition="inline",
            )
        else:
            msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)
    return msg


def sent_copy(raw: bytes, request: ReplyRequest) -> bytes:
    """The bytes filed in the Sent folder: as sent, plus the Bcc header mail clients keep there."""
    if not request.bcc:
        return raw
    header = EmailMessage()
    header["Bcc"] = ", ".join(_addr(a) for a in request.bcc)
    line = header.as_bytes().split(b"\n\n", 1)[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return line + b"\r\n" + raw
