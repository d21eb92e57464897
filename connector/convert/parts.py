"""The MIME walk: one pass over the part tree that sorts parts into bodies, attachments and reports.

Every part costs budget (count, time) so a hostile message fails fast with MessageError. Nesting past
`Limits.max_depth` is flattened without recursion rather than refused; that and every other surprise
(broken boundary, bad encoding, unreadable TNEF) becomes a defect and the walk goes on.
"""

from __future__ import annotations

import io
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser

from connector.convert.attachments import extract_uuencoded, is_tnef, make_attachment, unpack_tnef
from connector.convert.blobs import Blobs
from connector.convert.flags import ReportParts
from connector.convert.headers import decode_header_value, encoded_word_charsets, raw_header, raw_headers
from connector.convert.limits import Budget
from connector.convert.names import declared_filename, eml_filename, safe_filename
from connector.convert.parsing import PARSE_POLICY
from connector.convert.text import codec_for, decode_bytes
from connector.models import Attachment

_PARAM = re.compile(r"""(?:^|;)\s*{name}\s*=\s*"?([^";]*)"?""", re.IGNORECASE)
_BODY_TYPES = ("text/plain", "text/html")
_UUENCODE = ("x-uuencode", "uuencode", "x-uue", "uue")
_BOUNDARY_LINE = re.compile(rb"^--([!-~]{1,200}?)[ \t]*\r?$", re.MULTILINE)
_EML_POLICY = policy.default.clone(refold_source="none", max_line_length=0, linesep="\r\n")


@dataclass
class Body:
    """What the walk found."""

    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    report: ReportParts = field(default_factory=ReportParts)
    defects: list[str] = field(default_factory=list)
    charset: str | None = None  # first declared text charset: the best guess for raw 8-bit headers
    hint: str | None = None  # first usable charset declared anywhere: the guide for short unlabelled text
    dropped_attachments: int = 0


def content_type(part: Message) -> str:
    """Lower-case maintype/subtype; tolerant of headers the stdlib chokes on."""
    try:
        return part.get_content_type()
    except Exception:  # header parser bugs on garbage; read the raw value ourselves
        raw = (raw_header(part, "content-type") or "text/plain").split(";", 1)[0].strip().lower()
        return raw if re.fullmatch(r"[a-z0-9.+\-]+/[a-z0-9.+\-]+", raw) else "text/plain"


def param(part: Message, name: str, header: str = "content-type") -> str | None:
    try:
        value = part.get_param(name, header=header)
    except Exception:  # same: fall back to a raw scan
        value = None
    if isinstance(value, str):
        return value
    raw = raw_header(part, header)
    if raw is None:
        return None
    match = re.compile(_PARAM.pattern.format(name=re.escape(name)), re.IGNORECASE).search(raw)
    return match.group(1).strip() if match else None


def iter_parts(msg: Message, max_parts: int) -> Iterator[Message]:
    """The first `max_parts` parts in document order, depth first, without recursion (any depth)."""
    stack = [msg]
    count = 0
    while stack and count < max_parts:
        part = stack.pop()
        count += 1
        yield part
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list):
            stack.extend(reversed([child for child in children if isinstance(child, Message)]))


def declared_charset(msg: Message, max_parts: int) -> str | None:
    """The first usable charset the message declares (text parts, then encoded words in its header).

    Short text in an unknown or missing charset is most likely in the one its sender used elsewhere.
    """
    for part in iter_parts(msg, max_parts):
        if content_type(part).startswith("text/"):
            label = param(part, "charset")
            if codec_for(label) is not None:
                return label
    for name in ("subject", "from", "to", "cc"):
        for value in raw_headers(msg, name):
            for label in encoded_word_charsets(value):
                if codec_for(label) is not None:
                    return label
    return None


def disposition(part: Message) -> str | None:
    raw = raw_header(part, "content-disposition")
    if raw is None:
        return None
    word = raw.split(";", 1)[0].strip().lower()
    return word if word in ("inline", "attachment") else ("attachment" if word else None)


def payload_bytes(part: Message, defects: list[str], blobs: Blobs | None = None) -> bytes:
    """Decoded content of a leaf part (base64/QP/uuencode); raw bytes when decoding fails."""
    if blobs is not None:
        # the body as parsed: `get_payload()` would decode 8-bit bytes with the charset and "replace"
        raw = vars(part).get("_payload", None)
        encoded = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
        if blobs.holds_token(encoded):
            cte = (raw_header(part, "content-transfer-encoding") or "").strip().lower()
            if cte == "base64":
                return blobs.decode_base64(encoded)
            restored = blobs.restore(encoded)
            return quopri.decodestring(restored) if cte == "quoted-printable" else restored
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:  # odd transfer encodings; keep the undecoded bytes
        defects.append(f"content could not be decoded: {type(exc).__name__}")
        raw = part.get_payload()
        return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    if isinstance(data, bytes):
        return data
    return b""


class Walker:
    """Walks one message; create one per conversion."""

    def __init__(self, budget: Budget, blobs: Blobs | None = None) -> None:
        self.budget = budget
        self.blobs = blobs
        self.body = Body()

    def walk(self, msg: Message) -> Body:
        self.body.hint = declared_charset(msg, self.budget.limits.max_parts)
        self._part(msg, depth=0, parent="")
        return self.body

    def _part(self, part: Message, depth: int, parent: str) -> None:
        self.budget.count_part()
        ctype = content_type(part)
        for defect in getattr(part, "defects", [])[:5]:
            self.body.defects.append(f"mime: {type(defect).__name__}")
        if ctype in ("message/rfc822", "message/global"):
            self._message(part, depth, parent)
            return
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            self._delivery_status(part)
            return
        if part.is_multipart():
            self._multipart(part, ctype, depth)
            return
        if ctype.startswith("multipart/"):
            self._boundary_mismatch(part, ctype, depth)
            return
        data = payload_bytes(part, self.body.defects, self.blobs)
        if ctype == "text/rfc822-headers":
            text = decode_bytes(data, param(part, "charset"), self.body.defects, "returned headers")
            self.body.report.original_headers.append(text)
            self._attach(part, ctype, data, "returned-headers.txt")
            return
        name = declared_filename(part, self.body.defects, self.body.charset)
        disp = disposition(part)
        if ctype in _BODY_TYPES and disp != "attachment" and name is None:
            self._text(part, ctype, data)
            return
        self._attach(part, ctype, data, name, parent=parent)

    def _multipart(self, part: Message, ctype: str, depth: int) -> None:
        if ctype == "multipart/report" and depth <= 1:
            self.body.report.report_type = (param(part, "report-type") or "").lower() or None
        children = part.get_payload()
        if not isinstance(children, list):
            self.body.defects.append(f"{ctype} without readable parts")
            return
        if depth >= self.budget.limits.max_depth:
            self._flatten(children, ctype)
            return
        for child in children:
            if isinstance(child, Message):
                self._part(child, depth + 1, ctype)

    def _flatten(self, children: list[Message | str], ctype: str) -> None:
        """Below the depth limit: every part that is not a container, in order, without recursion."""
        limit = self.budget.limits.max_depth
        self.body.defects.append(f"MIME nesting deeper than {limit} levels; the parts below were flattened")
        stack = [(child, ctype) for child in reversed(children) if isinstance(child, Message)]
        while stack:
            child, parent = stack.pop()
            child_type = content_type(child)
            inner = child.get_payload() if child_type.startswith("multipart/") else None
            if isinstance(inner, list):
                self.budget.count_part()
                stack.extend((c, child_type) for c in reversed(inner) if isinstance(c, Message))
                continue
            self._part(child, limit + 1, parent)

    def _boundary_mismatch(self, part: Message, ctype: str, depth: int) -> None:
        """A multipart whose declared boundary never occurs: reparse with the one the body uses.

        Not below the depth limit: each reparse would open one more level of recursion."""
        data = payload_bytes(part, self.body.defects, self.blobs)
        match = _BOUNDARY_LINE.search(data) if depth <= self.budget.limits.max_depth else None
        if match is None:
            why = "without any boundary" if depth <= self.budget.limits.max_depth else "below the depth limit"
            self.body.defects.append(f"{ctype} {why}; read as text")
            self._text(part, "text/plain", data)
            return
        boundary = match.group(1).decode("ascii", "replace")
        self.body.defects.append(f"{ctype} boundary mismatch; recovered with the boundary the body uses")
        header = f'Content-Type: {ctype}; boundary="{boundary}"\r\n\r\n'.encode()
        rebuilt = BytesParser(policy=PARSE_POLICY).parsebytes(header + data)
        if rebuilt.is_multipart():
            self._multipart(rebuilt, ctype, depth)
        else:
            self._text(part, "text/plain", data)

    def _text(self, part: Message, ctype: str, data: bytes) -> None:
        declared = param(part, "charset")
        if declared and self.body.charset is None:
            self.body.charset = declared
        if ctype == "text/html":
            html = decode_bytes(
                data, declared or _meta_charset(data), self.body.defects, "html", self.body.hint
            )
            self.body.htmls.append(html)
            return
        text = decode_bytes(data, declared, self.body.defects, "text", self.body.hint)
        if param(part, "format") == "flowed":
            text = _unflow(text, (param(part, "delsp") or "").lower() == "yes")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text, found = extract_uuencoded(text, len(self.body.attachments) + 1, self.body.defects)
        for attachment in found:
            self._add(attachment)
        self.body.texts.append(text)

    def _message(self, part: Message, depth: int, parent: str) -> None:
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None
        cte = (raw_header(part, "content-transfer-encoding") or "").strip().lower()
        if message is None or cte in ("base64", "quoted-printable"):
            data = payload_bytes(part, self.body.defects, self.blobs) if message is None else b""
            if message is not None:
                data = self._restore(_serialize(message))
                if cte == "base64":
                    import base64
                    import binascii

                    try:
                        data = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", data) + b"==")
                    except (binascii.Error, ValueError):
                        self.body.defects.append("attached message: broken base64")
            message = BytesParser(policy=PARSE_POLICY).parsebytes(data)
        else:
            data = self._restore(_serialize(message))
        subject = decode_header_value(
            raw_header(message, "subject"), self.body.defects, "attached subject", self.body.hint
        )
        if parent == "multipart/report":
            self.body.report.original_headers.append(_header_text(message))
        index = len(self.body.attachments) + 1
        name = declared_filename(part, self.body.defects)
        filename = safe_filename(name, "message/rfc822", index) if name else eml_filename(subject, index)
        if not filename.lower().endswith(".eml"):
            filename += ".eml"
        self._add(
            make_attachment(
                filename, "message/rfc822", data, _content_id(part), disposition(part) == "inline"
            )
        )

    def _restore(self, data: bytes) -> bytes:
        return self.blobs.restore(data, b"\r\n") if self.blobs is not None else data

    def _delivery_status(self, part: Message) -> None:
        self.body.report.has_delivery_status = True
        blocks = part.get_payload()
        fields: list[dict[str, str]] = []
        messages = [b for b in blocks if isinstance(b, Message)] if isinstance(blocks, list) else []
        if messages and isinstance(blocks, list) and len(messages) == len(blocks):
            fields = [{k.lower(): str(v) for k, v in block.raw_items()} for block in messages]
            text = "\n\n".join("\n".join(f"{k}: {v}" for k, v in block.raw_items()) for block in messages)
        else:
            text = decode_bytes(
                payload_bytes(part, self.body.defects, self.blobs), "utf-8", self.body.defects, "dsn"
            )
            fields = _parse_blocks(text)
        self.body.report.recipients.extend(f for f in fields if "final-recipient" in f or "action" in f)
        data = text.encode("utf-8", "surrogateescape")
        self._attach(part, "message/delivery-status", data, "delivery-status.txt")

    def _attach(self, part: Message, ctype: str, data: bytes, name: str | None, parent: str = "") -> None:
        index = len(self.body.attachments) + 1
        if is_tnef(ctype, name) and len(data) > self.budget.limits.max_tnef_bytes:
            self.body.defects.append("winmail.dat too large to unpack; kept as is")
        elif is_tnef(ctype, name):
            found, text, html = unpack_tnef(data, index, self.body.defects)
            if found or text or html:
                for attachment in found:
                    self._add(attachment)
                if text and not self.body.texts:
                    self.body.texts.append(text)
                if html and not self.body.htmls:
                    self.body.htmls.append(html)
                return
        cid = _content_id(part)
        disp = disposition(part)
        inline = disp == "inline" or (disp is None and cid is not None and parent == "multipart/related")
        cte = (raw_header(part, "content-transfer-encoding") or "").strip().lower()
        if ctype == "text/plain" and cte in _UUENCODE:  # a uuencoded file is not text
            ctype = "application/octet-stream"
        self._add(make_attachment(safe_filename(name, ctype, index), ctype, data, cid, inline))

    def _add(self, attachment: Attachment) -> None:
        if len(self.body.attachments) >= self.budget.limits.max_attachments:
            self.body.dropped_attachments += 1
            return
        self.body.attachments.append(attachment)


def _content_id(part: Message) -> str | None:
    raw = raw_header(part, "content-id")
    if not raw:
        return None
    value = re.sub(r"\s+", "", raw).strip("<>")
    return value or None


def _meta_charset(data: bytes) -> str | None:
    match = re.search(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_\-:.]+)", data[:4096], re.IGNORECASE)
    return match.group(1).decode("ascii") if match else None


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: soft line breaks (trailing space) are joined."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    buffer = ""
    for line in lines:
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if line.endswith(" ") and line != "-- ":
            buffer += line[:-1] if delsp else line
            continue
        out.append(buffer + line)
        buffer = ""
    if buffer:
        out.append(buffer)
    return "\n".join(out)


def _serialize(message: Message) -> bytes:
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=_EML_POLICY).flatten(message)  # type: ignore[arg-type]
    except Exception:  # generator bugs on odd headers; a lossy copy beats losing the message
        pass
    else:
        return buffer.getvalue()
    try:
        return message.as_bytes(policy=policy.compat32)
    except Exception:  # the bytes generator refuses decoded non-ASCII text (e.g. in a preamble)
        return message.as_string(policy=policy.compat32).encode("utf-8", "surrogateescape")


def _header_text(message: Message) -> str:
    return "\n".join(f"{k}: {v}" for k, v in message.raw_items())


def _parse_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        for line in chunk.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() and " " not in name.strip():
                fields.setdefault(name.strip().lower(), value.strip())
        if fields:
            blocks.append(fields)
    return blocks
