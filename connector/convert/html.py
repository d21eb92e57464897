"""HTML bodies: sanitized for display in the agent desktop, and rendered to text when no text part exists.

Sanitizing uses nh3 (ammonia) with an allow-list: no scripts, event handlers, `javascript:` URLs,
iframes, forms or style sheets; inline styles keep only presentational properties, so `url(...)`
tricks cannot exfiltrate. `cid:` sources survive so inline images keep working.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import nh3

_EXTRA_TAGS = {"font", "tfoot", "th", "caption", "section", "main", "address", "label", "big"}
_TAGS = (set(nh3.ALLOWED_TAGS) | _EXTRA_TAGS) - {"map", "area"}
_GENERIC_ATTRIBUTES = {"style", "dir", "lang", "title", "align", "valign", "width", "height", "bgcolor"}
_ATTRIBUTES: dict[str, set[str]] = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = _GENERIC_ATTRIBUTES
_ATTRIBUTES["font"] = {"color", "face", "size"}
_ATTRIBUTES["table"] = _ATTRIBUTES.get("table", set()) | {"border", "cellpadding", "cellspacing"}
_ATTRIBUTES["td"] = _ATTRIBUTES.get("td", set()) | {"nowrap"}
_ATTRIBUTES["img"] = {"src", "alt", "width", "height", "align", "border"}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "text-transform", "line-height", "letter-spacing",
    "white-space", "vertical-align", "direction", "margin", "margin-left", "margin-right", "margin-top",
    "margin-bottom", "padding", "padding-left", "padding-right", "padding-top", "padding-bottom",
    "border", "border-collapse", "border-color", "border-style", "border-width", "width", "height",
    "max-width", "min-width", "display", "list-style-type",
}  # fmt: skip


def sanitize_html(html: str) -> str:
    """Safe HTML for the agent desktop; never raises (falls back to an escaped <pre>)."""
    try:
        return nh3.clean(
            html,
            tags=_TAGS,
            clean_content_tags={
                "script",
                "style",
                "title",
                "head",
                "noscript",
                "iframe",
                "object",
                "template",
            },
            attributes=_ATTRIBUTES,
            url_schemes=_URL_SCHEMES,
            filter_style_properties=_STYLE_PROPERTIES,
            strip_comments=True,
        )
    except Exception:  # nh3 rejects some inputs (e.g. NUL); show the markup as text instead
        return "<pre>" + nh3.clean_text(html) + "</pre>"


_BLOCK = {
    "p", "div", "table", "tr", "ul", "ol", "dl", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "section", "article", "header", "footer", "address", "center", "form", "fieldset",
}  # fmt: skip
_SKIP = {"script", "style", "head", "title", "noscript", "template", "iframe", "object"}
# How much of a link's text is searched for its URL. Bounded so that deeply nested links (each
# </a> covering all text since its <a>) cost linear time, not quadratic.
_LABEL_SCAN_CHARS = 2000


class _TextRenderer(HTMLParser):
    """Collects readable text: block elements become line breaks, links keep their targets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._links: list[tuple[str, int]] = []  # (href, character offset where its text starts)
        self._text = io.StringIO()  # the same text as `parts`, for bounded reads of a link's label
        self._length = 0

    def _emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self._text.write(text)
            self._length += len(text)

    def _label_head(self, offset: int, limit: int) -> str:
        """At most `limit` characters of the text since `offset`, without joining all of it."""
        self._text.seek(offset)
        head = self._text.read(limit)
        self._text.seek(self._length)
        return head

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "br":
            self._emit("\n")
        elif tag == "li":
            self._emit("\n- ")
        elif tag in ("td", "th"):
            self._emit(" ")
        elif tag in _BLOCK:
            self._emit("\n\n" if tag == "p" else "\n")
            if tag == "pre":
                self._pre += 1
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self._links.append((href.strip(), self._length))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self._emit("\n\n" if tag == "p" else "\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            target = href[7:] if href.lower().startswith("mailto:") else href
            if not href.lower().startswith(("http:", "https:", "mailto:")) or not target:
                return
            label = self._label_head(start, _LABEL_SCAN_CHARS + len(target)).strip()
            if target not in label:
                self._emit(f" <{target}>")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"[ \t\r\n\f\u00a0]+", " ", data.replace("\u00a0", " "))
        self._emit(data)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body; never raises."""
    renderer = _TextRenderer()
    try:
        renderer.feed(html)
        renderer.close()
    except Exception:  # HTMLParser is lenient, but keep whatever was collected on a surprise
        pass
    text = "".join(renderer.parts)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
