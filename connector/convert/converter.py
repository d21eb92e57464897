"""bytes → EmailItem. Pure: no network, no store, no clock (only a monotonic budget for limits).

Exact on good mail, graceful on bad mail: everything that can be recovered is, and what could
not be is listed in `EmailItem.defects`. Only a message that cannot become an item at all (limits
blown, not an email) raises MessageError; the pipeline then quarantines it via `unparseable_item`.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

from connector.convert.addresses import first_address, parse_addresses
from connector.convert.attachments import make_attachment
from connector.convert.blobs import Blobs, cut_blobs
from connector.convert.flags import detect_bounce, is_auto_reply
from connector.convert.headers import (
    decode_header_value,
    header_block_size,
    join_bare_continuations,
    lenient_headers,
    raw_headers,
)
from connector.convert.html import html_to_text, sanitize_html
from connector.convert.importance import importance_from
from connector.convert.language import detect_language
from connector.convert.limits import DEFAULT_LIMITS, Budget, Limits
from connector.convert.parsing import PARSE_POLICY
from connector.convert.parts import Body, Walker, declared_charset
from connector.convert.text import codec_for
from connector.convert.threads import normalize_subject, parse_id_list, parse_message_id, synthetic_message_id
from connector.convert.threads import thread_key as choose_thread_key
from connector.errors import MessageError
from connector.models import EmailItem, ItemFlags

_MAX_DEFECTS = 50
INTERNAL_ERROR_PREFIX = "internal converter error"
_DECODED_HEADERS = frozenset(
    {"subject", "date", "importance", "priority", "x-priority", "x-msmail-priority", "precedence",
     "auto-submitted", "x-failed-recipients"}
)  # fmt: skip


def convert(
    raw: bytes,
    *,
    size: int | None = None,
    headers_only: bool = False,
    thread_hint: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> EmailItem:
    """Turn one raw RFC 5322 message into an EmailItem; MessageError when it truly cannot."""
    budget = Budget(limits)
    digest = hashlib.sha256(raw).hexdigest()
    if not raw or raw.isspace():
        raise MessageError("message is empty")
    header_bytes = header_block_size(raw)
    if header_bytes > limits.max_header_bytes:
        raise MessageError(f"header block larger than {limits.max_header_bytes} bytes")
    defects: list[str] = []
    try:
        parse_input, joined = join_bare_continuations(raw, header_bytes)
        if joined:
            defects.append(
                f"{joined} header lines folded without leading whitespace; joined to the field above"
            )
        blobs: Blobs | None = None
        if not headers_only:
            parse_input, blobs = cut_blobs(parse_input, digest[:16], limits.min_blob_bytes)
        msg = _parse(parse_input, headers_only)
        del parse_input  # the parser keeps what it needs; drop the cut copy early
        if headers_only:
            body = Body(hint=declared_charset(msg, limits.max_parts))
        else:
            body = Walker(budget, blobs).walk(msg)
            defects.extend(body.defects)
        budget.check_time()
        return _assemble(msg, body, raw, digest, size, headers_only, thread_hint, limits, defects)
    except MessageError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise MessageError(f"message too complex to convert: {type(exc).__name__}") from exc
    except Exception as exc:  # a converter bug must quarantine one message, never stop the mailbox
        raise MessageError(f"{INTERNAL_ERROR_PREFIX}: {type(exc).__name__}: {exc}") from exc


def _parse(raw: bytes, headers_only: bool) -> Message:
    parser = BytesParser(policy=PARSE_POLICY)
    try:
        msg = parser.parsebytes(raw, headersonly=headers_only)
        if not msg.keys():
            stripped = raw.lstrip(b"\r\n\t ")
            if stripped != raw:
                msg = parser.parsebytes(stripped, headersonly=headers_only)
    except Exception as exc:  # the stdlib parser almost never raises; if it does, quarantine
        raise MessageError(f"message could not be parsed: {type(exc).__name__}: {exc}") from exc
    if not msg.keys():
        raise MessageError("no header fields found: not an email message")
    return msg


def _assemble(
    msg: Message,
    body: Body,
    raw: bytes,
    digest: str,
    size: int | None,
    headers_only: bool,
    thread_hint: str | None,
    limits: Limits,
    defects: list[str],
) -> EmailItem:
    charset = body.charset if codec_for(body.charset) is not None else body.hint
    headers = _decoded_headers(msg, defects, charset)
    subject = headers.get("subject", [""])[0]
    sender = first_address(raw_headers(msg, "from"), defects, "from", charset) or first_address(
        raw_headers(msg, "sender"), defects, "sender", charset
    )
    return_path = " ".join(raw_headers(msg, "return-path")).strip()
    return_path_null = return_path.replace(" ", "") in ("<>", "<<>>")

    message_id = parse_message_id(" ".join(raw_headers(msg, "message-id")[:1]))
    if message_id is None:
        defects.append("missing or unusable Message-ID; synthesized from content")
        message_id = synthetic_message_id(digest)
    in_reply_to_ids = parse_id_list(raw_headers(msg, "in-reply-to"))
    in_reply_to = in_reply_to_ids[0] if in_reply_to_ids else None
    references = parse_id_list(raw_headers(msg, "references"))

    text_body, html_body = _bodies(body, defects, limits)
    if headers_only:
        total = size if size is not None else len(raw)
        text_body = (
            f"This message is too large to bring in ({total:,} bytes). "
            "It is kept on the mail server; open it in the mailbox to read it."
        )
    attachments = body.attachments
    if body.dropped_attachments:
        defects.append(
            f"{body.dropped_attachments} attachments beyond the limit of {limits.max_attachments} dropped"
        )
    if html_body:
        attachments = [_mark_inline(a, html_body) for a in attachments]

    auto_reply = is_auto_reply(headers, subject, return_path_null)
    bounce = detect_bounce(headers, subject, sender, return_path_null, body.report, text_body)

    to = parse_addresses(raw_headers(msg, "to"), defects, "to", charset)
    cc = parse_addresses(raw_headers(msg, "cc"), defects, "cc", charset)
    reply_to = parse_addresses(raw_headers(msg, "reply-to"), defects, "reply-to", charset)
    sent_at = _sent_at(headers.get("date", []), defects)
    language = None if headers_only else detect_language(text_body)

    unique_defects = list(dict.fromkeys(defects))
    if len(unique_defects) > _MAX_DEFECTS:
        unique_defects = [
            *unique_defects[: _MAX_DEFECTS - 1],
            f"... and {len(unique_defects) - _MAX_DEFECTS + 1} more",
        ]
    return EmailItem(
        message_id=message_id,
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        reply_to=reply_to,
        in_reply_to=in_reply_to,
        references=references,
        thread_key=choose_thread_key(thread_hint, references, in_reply_to, message_id),
        normalized_subject=normalize_subject(subject),
        sent_at=sent_at,
        text_body=text_body,
        html_body=html_body,
        language=language,
        importance=importance_from(headers),
        attachments=tuple(attachments),
        flags=ItemFlags(auto_reply=auto_reply, bounce=bounce is not None, oversize=headers_only),
        bounce=bounce,
        defects=tuple(unique_defects),
        size=size if size is not None else len(raw),
        raw_sha256=digest,
    )


def _decoded_headers(msg: Message, defects: list[str], charset: str | None) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        key = str(name).strip().lower()
        where = "subject" if key == "subject" else "header"
        if key in _DECODED_HEADERS:
            headers.setdefault(key, []).append(decode_header_value(str(value), defects, where, charset))
        else:
            headers.setdefault(key, []).append(str(value))
    return headers


def _bodies(body: Body, defects: list[str], limits: Limits) -> tuple[str, str | None]:
    text = "\n\n".join(t.rstrip() for t in body.texts if t.strip())
    html_raw = "\n".join(body.htmls) if body.htmls else None
    html: str | None = None
    if html_raw is not None:
        if len(html_raw) > limits.max_html_chars:
            defects.append(f"HTML body larger than {limits.max_html_chars} characters; kept as text only")
        else:
            html = sanitize_html(html_raw) or None
        if not text.strip():
            budget = limits.max_html_chars // 4  # pure-Python rendering: ~0.7 s per million chars
            if len(html_raw) > budget:
                defects.append(f"text derived from the first {budget} characters of the HTML only")
            text = html_to_text(html_raw[:budget])
    return text.strip("\n") + ("\n" if text.strip() else ""), html


def _mark_inline(attachment: Any, html: str) -> Any:
    if attachment.content_id and not attachment.inline and f"cid:{attachment.content_id}" in html:
        return replace(attachment, inline=True)
    return attachment


def _sent_at(values: list[str], defects: list[str]) -> datetime | None:
    if not values or not values[0].strip():
        return None
    try:
        when = parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"invalid Date header {values[0][:60]!r}")
        return None
    if when.tzinfo is None:
        defects.append("Date header without a usable time zone; read as UTC")
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return when


def unparseable_item(
    raw: bytes, error: str, *, size: int | None = None, headers_only: bool = False
) -> EmailItem:
    """A placeholder item for a quarantined message: a person sees it with the raw message attached.
    `size` is the message's size on the server; `headers_only` says `raw` is only its header block
    (oversize), so the item says so and a person knows to open the original in the mailbox."""
    digest = hashlib.sha256(raw).hexdigest()
    defects: list[str] = []
    try:
        found = lenient_headers(raw)
        subject = decode_header_value(found.get("subject"), defects, "subject")
        senders = parse_addresses([found["from"]], defects, "from") if "from" in found else ()
        message_id = parse_message_id(found.get("message-id")) or synthetic_message_id(digest)
    except Exception:  # must never raise: this is the last resort for a broken message
        subject, senders, message_id = "", (), synthetic_message_id(digest)
    safe_error = error.encode("utf-8", "replace").decode("utf-8")[:500]
    kept = (
        "Only its header block was fetched (it is over the size limit); the full message is still "
        "in the mailbox. The header block is attached as original.eml.\n"
        if headers_only
        else "The original message is attached as original.eml.\n"
    )
    text = f"This message could not be converted and was quarantined.\nReason: {safe_error}\n{kept}"
    return EmailItem(
        message_id=message_id,
        subject=subject or "(message could not be read)",
        sender=senders[0] if senders else None,
        thread_key=message_id,
        normalized_subject=normalize_subject(subject),
        text_body=text,
        attachments=(make_attachment("original.eml", "message/rfc822", raw),),
        flags=ItemFlags(unparseable=True, oversize=headers_only),
        defects=(f"unparseable: {safe_error}",),
        size=len(raw) if size is None else size,
        raw_sha256=digest,
    )


__all__ = ["convert", "unparseable_item"]
