"""Bytes to text: trust the declared charset only as far as the bytes agree with it.

Mail lies about charsets all the time (latin-1 labels on UTF-8, KOI8-R labels on cp1251, no label at
all). Mojibake in front of an agent is worse than a slower decode, so doubtful cases of some length go
through charset-normalizer. A detector reading a handful of bytes is guessing (`caf\xe9` came out as
Arabic presentation forms), so short text is read in the charset the message declares elsewhere, else
as Western (cp1252, latin-1). Everything ends in a lossless-as-possible decode, never an error.
"""

from __future__ import annotations

import codecs
import functools
import re

from charset_normalizer import from_bytes

# Labels mapped to the codec that decodes what senders really put behind them.
_ALIASES: dict[str, str] = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "windows-1252": "cp1252",
    "x-user-defined": "cp1252",
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cp936": "gb18030",
    "chinese": "gb18030",
    "csgb2312": "gb18030",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "euc-jp": "euc_jis_2004",
    "x-euc-jp": "euc_jis_2004",
    "iso-2022-jp": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "korean": "cp949",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-11": "cp874",
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "iso-8859-9": "cp1254",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "unknown-8bit": "",
    "x-unknown": "",
    "unknown": "",
    "default": "",
    "charset": "",
    "8bit": "",
}

# Decoders to try, in order, when the first choice fails strictly.
_FALLBACKS: dict[str, tuple[str, ...]] = {
    "iso2022_jp_ext": ("iso2022_jp_2004", "iso2022_jp_2", "iso2022_jp_3"),
    "cp932": ("shift_jis_2004",),
    "euc_jis_2004": ("cp932", "euc_jp"),
    "gb18030": (),
    "cp949": ("johab",),
}

_SINGLE_BYTE_WESTERN = frozenset({"cp1252", "latin_1"})
# Below this many bytes statistical detection is guesswork: a subject, a name, a one-line body.
SHORT_TEXT_BYTES = 64
_ESC_JIS = re.compile(rb"\x1b[\$\(][@BJDI]")


def codec_for(label: str | None) -> str | None:
    """Python codec name for a MIME charset label; None when unknown or missing."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    if key in _ALIASES:
        return _ALIASES[key] or None
    try:
        name = codecs.lookup(key).name
    except (LookupError, ValueError):
        # 'windows-1251;' or 'cp-1251' style typos: keep letters, digits, one hyphen
        cleaned = re.sub(r"[^a-z0-9_\-]", "", key)
        try:
            name = codecs.lookup(cleaned).name
        except (LookupError, ValueError):
            return None
    if name in ("ascii", "latin-1", "iso8859-1"):
        return "cp1252"
    return name if _decodes_text(name) else None


@functools.lru_cache(maxsize=64)
def _decodes_text(codec: str) -> bool:
    """Whether `codec` turns any bytes into text under "replace": rejects `undefined` (always raises
    UnicodeError), bytes-to-bytes codecs (`base64`, `zlib`, `rot13`) and `idna`/`punycode`."""
    try:
        bytes(range(256)).decode(codec, "replace")
    except Exception:  # any failure means it is no charset a mail body can be decoded with
        return False
    return True


def decode_bytes(
    data: bytes, label: str | None, defects: list[str], where: str = "text", hint: str | None = None
) -> str:
    """Decode `data` declared as `label`; records a defect whenever it had to guess.

    `hint` is a charset declared elsewhere in the same message: for short text it beats detection.
    """
    if not data:
        return ""
    codec = codec_for(label)
    has_high = not data.isascii()
    if not has_high and codec not in ("utf-7", "utf-16", "utf-32", "utf-16-le", "utf-16-be"):
        if codec is None and _ESC_JIS.search(data):
            return _first_strict(data, ("iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_2")) or data.decode(
                "iso2022_jp_ext", "replace"
            )
        if codec is not None and codec.startswith("iso2022"):
            return _strict_chain(data, codec) or data.decode(codec, "replace")
        return data.decode("ascii")
    short = len(data) < SHORT_TEXT_BYTES
    if label and codec is None:
        defects.append(f"{where}: unknown charset {label.strip()!r}, {'guessed' if short else 'detected'}")
    if codec in ("utf-8", "utf-8-sig"):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            defects.append(f"{where}: not valid {label}, {'guessed' if short else 'detected'}")
            if short:
                return _short_guess(data, hint, exclude=codec)
            return _detect(data, defects, where, exclude_utf8=True)
    if codec is None:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            if short:
                return _short_guess(data, hint, exclude="utf-8")
            return _detect(data, defects, where, exclude_utf8=True)
    if codec in _SINGLE_BYTE_WESTERN:
        try:
            text = data.decode("utf-8")
            defects.append(f"{where}: declared {label} but is UTF-8")
            return text
        except UnicodeDecodeError:
            pass
    strict = _strict_chain(data, codec)
    if strict is None:
        if short:
            defects.append(f"{where}: bytes do not match declared {label}, guessed")
            return _short_guess(data, hint, exclude=codec)
        defects.append(f"{where}: bytes do not match declared {label}, detected")
        return _detect(data, defects, where, exclude_utf8=False, fallback=codec)
    if not short and _is_single_byte(codec) and _doubtful(strict):
        better = _redetect_single_byte(data, codec)
        if better is not None:
            defects.append(f"{where}: declared {label} but reads as {better}")
            return data.decode(better, "replace")
    return strict


def _short_guess(data: bytes, hint: str | None, exclude: str | None) -> str:
    """Short text without a usable label: the message's own declared charset, else Western.

    Lenient decoders (utf-7, utf-16) accept nearly any bytes and so prove nothing; only the hint
    is tried strictly, and cp1252 (latin-1 for its five holes) always succeeds.
    """
    codec = codec_for(hint)
    if codec is not None and codec != exclude and not codec.startswith(("utf-7", "utf-16", "utf-32")):
        text = _strict_chain(data, codec)
        if text is not None:
            return text
    return _first_strict(data, ("cp1252",)) or data.decode("latin-1")


def _strict_chain(data: bytes, codec: str) -> str | None:
    return _first_strict(data, (codec, *_FALLBACKS.get(codec, ())))


def _first_strict(data: bytes, codecs_: tuple[str, ...]) -> str | None:
    for name in codecs_:
        try:
            return data.decode(name)
        except (UnicodeError, LookupError):
            continue
    if codecs_ and codecs_[0] == "cp1252":
        # cp1252 leaves five bytes undefined; latin-1 maps them to C1 controls instead of failing
        return data.decode("latin-1")
    return None


@functools.lru_cache(maxsize=64)
def _is_single_byte(codec: str) -> bool:
    try:
        return len(codecs.decode(bytes(range(256)), codec, "replace")) == 256
    except (LookupError, ValueError):
        return False


def _doubtful(text: str) -> bool:
    """Many non-ASCII letters in a single-byte decode: the label may be for another script."""
    sample = text[:20000]
    letters = sum(1 for ch in sample if ch.isalpha())
    high = sum(1 for ch in sample if ord(ch) > 127)
    if letters == 0:
        return False
    return high / letters > 0.15


def _redetect_single_byte(data: bytes, codec: str) -> str | None:
    """Another codec when charset-normalizer rejects the declared one outright, else None."""
    sample = data[:65536]
    try:
        if from_bytes(sample, cp_isolation=[codec]).best() is not None:
            return None
        best = from_bytes(sample).best()
    except Exception:  # charset-normalizer is best effort; a crash means "keep the label"
        return None
    if best is None or best.encoding == codec:
        return None
    try:
        data.decode(best.encoding)
    except (UnicodeError, LookupError):
        return None
    return str(best.encoding)


def _detect(
    data: bytes, defects: list[str], where: str, *, exclude_utf8: bool, fallback: str | None = None
) -> str:
    """Western text is by far the most common unlabelled case and detectors misread short samples
    of it, so a cp1252 reading that looks like ordinary text wins before detection is asked."""
    western = data.decode("cp1252", "replace")
    if "\ufffd" not in western and not _doubtful(western):
        return western
    sample = data[:65536]
    try:
        results = from_bytes(sample)
    except Exception:  # detection is best effort; fall through to the replacement decode
        results = None
    if results is not None:
        for match in results:
            enc = str(match.encoding)
            if exclude_utf8 and enc in ("utf_8", "utf-8"):
                continue
            try:
                return data.decode(enc)
            except (UnicodeError, LookupError):
                continue
    codec = fallback or "cp1252"
    defects.append(f"{where}: charset unknown, decoded with replacement")
    try:
        return data.decode(codec, "replace")
    except (UnicodeError, LookupError):
        return data.decode("cp1252", "replace")
