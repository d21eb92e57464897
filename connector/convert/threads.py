"""Threading facts: message ids, the References chain, a thread key and the normalized subject.

Agents lose context when replies start new conversations (peers.md §2 class 12), so ids are
extracted tolerantly (folded, commented, duplicated, surrounded by junk) and the subject is
normalized across the reply/forward prefixes of many languages and the [tags] gateways add.
"""

from __future__ import annotations

import re

from connector.convert.headers import unfold

SYNTHETIC_DOMAIN = "iwd-email-connector.invalid"
_MAX_REFERENCES = 100

_BRACKETED = re.compile(r"<\s*([^<>\s\"]{1,500}?)\s*>")
_BARE = re.compile(r"^[^<>\s\"@]+@[^<>\s\"@]+$")

_PREFIX = re.compile(
    r"""^\s*(?:
        (?:re|fwd|fw|aw|wg|sv|vs|antw|antwort|tr|rif|r|ref|res|enc|odp|pd|vl|vb|ynt|ilt|atb|rv|doorst|
           答复|回复|回覆|转发|轉寄|返信|転送|ответ|пересл|fwd?)
        \s*(?:\[\d+\]|\^\d+|\(\d+\))?\s*[:：]
      | \[[^\[\]]{1,80}\]
      | \((?:external|extern|ext)\)
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_WRAPPED_FORWARD = re.compile(r"^\[\s*((?:fwd?|fw)\s*:.*)\]$", re.IGNORECASE)
_TRAILING_TAG = re.compile(r"\s*\[[^\[\]]{1,80}\]\s*$")


def parse_message_id(value: str | None) -> str | None:
    """`<id@host>` from a Message-ID-like header, or None when there is no usable id."""
    if not value:
        return None
    text = unfold(value)
    for match in _BRACKETED.finditer(text):
        if "@" in match.group(1):
            return f"<{match.group(1)}>"
    bare = text.strip()
    if _BARE.match(bare):
        return f"<{bare}>"
    return None


def parse_id_list(values: list[str]) -> tuple[str, ...]:
    """Ids in order of appearance, de-duplicated; tokens without `id@host` shape are dropped."""
    seen: set[str] = set()
    ids: list[str] = []
    for value in values:
        for match in _BRACKETED.finditer(unfold(value)):
            token = match.group(1)
            if "@" not in token or token.startswith("@") or token.endswith("@"):
                continue
            msgid = f"<{token}>"
            if msgid not in seen:
                seen.add(msgid)
                ids.append(msgid)
    if len(ids) > _MAX_REFERENCES:
        ids = ids[:1] + ids[-(_MAX_REFERENCES - 1) :]  # keep the thread root and the recent chain
    return tuple(ids)


def synthetic_message_id(raw_sha256: str) -> str:
    """Stable id for a message that has none, so redelivery of the same bytes gets the same id."""
    return f"<{raw_sha256[:32]}@{SYNTHETIC_DOMAIN}>"


def thread_key(
    thread_hint: str | None, references: tuple[str, ...], in_reply_to: str | None, message_id: str
) -> str:
    """Provider thread id, else the thread root from References, else the parent, else ourselves."""
    if thread_hint:
        return thread_hint
    if references:
        return references[0]
    if in_reply_to:
        return in_reply_to
    return message_id


def normalize_subject(subject: str) -> str:
    """Subject without reply/forward prefixes and gateway [tags], for matching a thread by subject."""
    text = subject.strip()
    wrapped = _WRAPPED_FORWARD.match(text)
    if wrapped:  # old Mozilla style "[Fwd: subject]"
        text = wrapped.group(1)
    for _ in range(50):
        stripped = _PREFIX.sub("", text, count=1)
        stripped = _TRAILING_TAG.sub("", stripped)
        if stripped == text:
            break
        text = stripped
    return re.sub(r"\s+", " ", text).strip()
