"""Address lists from raw header text: display names decoded, groups flattened, garbage skipped.

Parsing happens on the still-encoded text so that a comma inside an RFC 2047 display name
("Müller, Hans") cannot split one address into two; names are decoded afterwards. Outlook and
Exchange write display names that are themselves addresses without quotes
(`alice@example.com <bob@example.com>`), which `getaddresses` reads as two addresses, the name
first; such names are quoted first, so the address in angle brackets is the one a reply goes to.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from connector.convert.headers import decode_header_value, unfold
from connector.models import Address

# matches start only at token starts (lookbehind), so a long token without '@' is scanned once
_ADDR = re.compile(r"(?<![^\s<>\"(),;:\[\]])[^\s<>\"(),;:\[\]]+@[^\s<>\"(),;:\[\]]+")
_MAX_ADDRESSES = 1000
_ANGLE_ADDR = re.compile(r"<[^<>\s\"]*@[^<>\s\"]*>")
_PHRASE_END = ",;:>"


def parse_addresses(
    values: list[str], defects: list[str], where: str, fallback_charset: str | None = None
) -> tuple[Address, ...]:
    """Every address found in the raw values of one header field, in order, de-duplicated."""
    found: list[Address] = []
    seen: set[str] = set()
    for value in values:
        text = _quote_address_like_names(_eight_bit_to_text(unfold(value), defects, where, fallback_charset))
        try:
            pairs = getaddresses([text])
        except Exception:  # stdlib parser bugs on hostile input; fall back to a regex scan
            defects.append(f"{where}: address list could not be parsed")
            pairs = [("", m.group(0)) for m in _ADDR.finditer(text)]
        for name, addr in pairs:
            address = _clean(name, addr, defects, where, fallback_charset)
            if address is None or address.address.lower() in seen:
                continue
            seen.add(address.address.lower())
            found.append(address)
            if len(found) >= _MAX_ADDRESSES:
                defects.append(f"{where}: more than {_MAX_ADDRESSES} addresses, rest dropped")
                return tuple(found)
    return tuple(found)


def first_address(
    values: list[str], defects: list[str], where: str, fallback_charset: str | None = None
) -> Address | None:
    found = parse_addresses(values, defects, where, fallback_charset)
    return found[0] if found else None


def _quote_address_like_names(text: str) -> str:
    """`alice@example.com <bob@example.com>` -> `"alice@example.com" <bob@example.com>`.

    An unquoted '@' in a display name is invalid (RFC 5322 phrase), and every mailer that writes one
    means the angle-bracket address as the mailbox. Names with quotes or comments are left alone.
    """
    if "<" not in text or "@" not in text:
        return text
    out: list[str] = []
    pos = 0
    for match in _ANGLE_ADDR.finditer(text):
        start = max(text.rfind(ch, pos, match.start()) for ch in _PHRASE_END) + 1
        start = max(start, pos)
        name = text[start : match.start()].strip()
        out.append(text[pos:start])
        if "@" in name and not any(ch in name for ch in '"()\\'):
            out.append(f' "{name}" ')
        else:
            out.append(text[start : match.start()])
        out.append(match.group(0))
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _eight_bit_to_text(text: str, defects: list[str], where: str, fallback_charset: str | None) -> str:
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    # decode_header_value also collapses whitespace, which is harmless for address lists
    return decode_header_value(text, defects, where, fallback_charset).replace("=?", "=\u200b?")


def _clean(
    name: str, addr: str, defects: list[str], where: str, fallback_charset: str | None
) -> Address | None:
    addr = addr.strip().strip("<>").strip()
    if not addr or "@" not in addr or re.search(r"[\s<>\"]", addr):
        match = _ADDR.search(addr) or _ADDR.search(name)
        if match is None:
            if addr or name.strip():
                defects.append(f"{where}: dropped unusable address {(name + ' ' + addr).strip()[:80]!r}")
            return None
        before = addr[: match.start()] if match.string == addr else ""
        addr = match.group(0)
        name = name or before.strip(" <>\"'")
    addr = addr.strip(".")
    display = decode_header_value(name.replace("=\u200b?", "=?"), defects, where, fallback_charset)
    display = display.strip().strip("\"'").strip()
    if not display or display.lower() == addr.lower():
        return Address(address=addr)
    return Address(address=addr, name=display)
