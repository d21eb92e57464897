"""Attachment file names: recovered from every encoding mailers use, then made safe to store.

A name may come from RFC 2231 parameters, RFC 2047 words inside quotes (Outlook, Gmail), raw 8-bit
bytes, or not at all; whatever arrives, the result has no path parts, no `..`, no control characters,
and an extension that matches the content type when the sender gave none.
"""

from __future__ import annotations

import re
import unicodedata
from email.message import Message

from connector.convert.headers import decode_header_value, raw_header

_EXTENSIONS: dict[str, str] = {
    "text/plain": ".txt", "text/html": ".html", "text/csv": ".csv", "text/calendar": ".ics",
    "text/xml": ".xml", "text/rtf": ".rtf", "text/vcard": ".vcf", "text/x-vcard": ".vcf",
    "text/rfc822-headers": ".txt", "message/rfc822": ".eml", "message/delivery-status": ".txt",
    "application/pdf": ".pdf", "application/zip": ".zip", "application/json": ".json",
    "application/xml": ".xml", "application/rtf": ".rtf", "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls", "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.oasis.opendocument.text": ".odt", "application/ms-tnef": ".dat",
    "application/vnd.ms-tnef": ".dat", "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s", "application/pgp-signature": ".asc",
    "application/gzip": ".gz", "application/x-7z-compressed": ".7z", "application/x-rar-compressed": ".rar",
    "image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/pjpeg": ".jpg",
    "image/gif": ".gif", "image/bmp": ".bmp", "image/tiff": ".tif", "image/webp": ".webp",
    "image/svg+xml": ".svg", "image/heic": ".heic", "audio/mpeg": ".mp3", "audio/wav": ".wav",
    "audio/x-wav": ".wav", "video/mp4": ".mp4", "video/quicktime": ".mov",
}  # fmt: skip
_TYPES_BY_EXTENSION: dict[str, str] = {ext: ctype for ctype, ext in reversed(list(_EXTENSIONS.items()))}
_TYPES_BY_EXTENSION.update(
    {".jpeg": "image/jpeg", ".htm": "text/html", ".tiff": "image/tiff", ".txt": "text/plain"}
)
_RAW_PARAM = re.compile(
    r"""(?:^|;)\s*{name}\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))""", re.IGNORECASE | re.DOTALL
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f<>:\"|?*\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)
_MAX_NAME_CHARS = 180


def extension_for(content_type: str) -> str:
    return _EXTENSIONS.get(content_type.lower(), ".bin")


def content_type_for(filename: str, default: str = "application/octet-stream") -> str:
    """Content type from a file name's extension (used for files without their own header)."""
    dot = filename.rfind(".")
    if dot < 0:
        return default
    return _TYPES_BY_EXTENSION.get(filename[dot:].lower(), default)


def declared_filename(part: Message, defects: list[str], fallback_charset: str | None = None) -> str | None:
    """The name the sender gave (Content-Disposition filename, else Content-Type name), decoded."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        stdlib: str | None
        try:
            value = part.get_param(param, header=header)
            stdlib = value if isinstance(value, str) else None
            if isinstance(value, tuple):  # RFC 2231 triple that the policy left undecoded
                from email.utils import collapse_rfc2231_value

                stdlib = collapse_rfc2231_value(value)
        except Exception:  # stdlib parameter parsing raises on some garbage; use the raw scan
            stdlib = None
        raw = _raw_param(part, header, param, defects, fallback_charset)
        chosen = _better(stdlib, raw, defects)
        if chosen:
            return chosen
    return None


def _raw_param(
    part: Message, header: str, param: str, defects: list[str], fallback_charset: str | None
) -> str | None:
    value = raw_header(part, header)
    if value is None:
        return None
    match = re.compile(_RAW_PARAM.pattern.format(name=re.escape(param)), _RAW_PARAM.flags).search(value)
    if match is None:
        return None
    text = match.group(1) if match.group(1) is not None else match.group(2)
    text = text.replace('\\"', '"')
    return decode_header_value(text, defects, "attachment name", fallback_charset) or None


def _better(stdlib: str | None, raw: str | None, defects: list[str]) -> str | None:
    if stdlib is not None:
        stdlib = decode_header_value(stdlib, [], "attachment name")  # leftover encoded words
    if not stdlib:
        return raw
    if raw and any(sep in raw and sep not in stdlib for sep in "/\\"):
        return raw  # a Windows path whose backslashes the quoted-string rules ate
    if raw and ("\ufffd" in stdlib or (len(raw) > len(stdlib) and raw.startswith(stdlib))):
        return raw
    return stdlib


def safe_filename(name: str | None, content_type: str, index: int) -> str:
    """A file name safe on any file system and in a URL, with a fallback built from the type."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE.sub("", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    if _RESERVED.match(text):
        text = "_" + text
    if not text or text.startswith("."):
        text = f"attachment-{index}" + (text if text.startswith(".") else extension_for(content_type))
    if len(text) > _MAX_NAME_CHARS:
        dot = text.rfind(".")
        ext = text[dot:] if dot > 0 and len(text) - dot <= 10 else ""
        text = text[: _MAX_NAME_CHARS - len(ext)].rstrip(" .") + ext
    return text


def eml_filename(subject: str, index: int) -> str:
    """`<subject>.eml` for an attached message, `forwarded-message-<n>.eml` when it has none."""
    base = safe_filename(re.sub(r"[/\\]", "-", subject), "message/rfc822", index)[:100].rstrip(" .")
    if not subject.strip() or base.startswith("attachment-"):
        return f"forwarded-message-{index}.eml"
    return base + ".eml"
