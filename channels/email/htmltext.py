"""HTML from mail: sanitize for display (nh3) and flatten to text when no plain part exists.

Mail HTML is hostile by default: scripts, event handlers, tracking pixels and
remote stylesheets. The sanitized form keeps structure and links but nothing
that runs or loads from the network; `cid:` images stay as `cid:` references so
the caller can point them at stored attachments with `resolve_cid_urls`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3

# Sanitizing and flattening are linear, but a 100 MB HTML part is still not something
# to hand to a browser; anything beyond this is cut (the raw message keeps it all).
MAX_HTML_CHARS = 2_000_000

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup",
    "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u",
    "ul",
}  # fmt: skip

_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"title", "lang", "dir", "align", "valign"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "width"},
    "th": {"colspan", "rowspan", "width"},
    "table": {"width", "border", "cellpadding", "cellspacing"},
    "font": {"color", "size"},
    "ol": {"start", "type"},
}

_LINK_SCHEMES = {"http", "https", "mailto", "cid"}


def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    # Images may only come from the message itself: a remote src is a tracking pixel
    # or a privacy leak the moment an agent opens the ticket.
    if element == "img" and attribute == "src":
        return value if value.strip().lower().startswith("cid:") else None
    return value


def sanitize_html(source: str) -> str:
    """Safe-to-display HTML: no scripts, handlers, styles, forms or remote loads."""
    if len(source) > MAX_HTML_CHARS:
        source = source[:MAX_HTML_CHARS]
    cleaned: str = nh3.clean(
        source,
        tags=_ALLOWED_TAGS,
        clean_content_tags={"script", "style", "title", "head", "noscript", "template"},
        attributes=_ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes=_LINK_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return cleaned


_CID_SRC = re.compile(r'src="cid:([^"]*)"', re.IGNORECASE)


def cid_references(sanitized: str) -> list[str]:
    """The Content-IDs the sanitized HTML refers to, in order, without duplicates."""
    seen: dict[str, None] = {}
    for match in _CID_SRC.finditer(sanitized):
        seen.setdefault(normalize_cid(html.unescape(match.group(1))), None)
    return list(seen)


def normalize_cid(value: str) -> str:
    """`<abc@x>` in a Content-ID header and `cid:abc%40x` in HTML name the same part."""
    return unquote(value).strip().strip("<>").strip()


def resolve_cid_urls(sanitized: str, urls: Mapping[str, str]) -> str:
    """Point `cid:` images at attachment URLs; unknown ids lose their src (never remote)."""

    def repl(match: re.Match[str]) -> str:
        url = urls.get(normalize_cid(html.unescape(match.group(1))))
        return f'src="{html.escape(url, quote=True)}"' if url else 'src=""'

    return _CID_SRC.sub(repl, sanitized)


_BLOCK_TAGS = {
    "p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "table", "ul", "ol", "hr", "dd", "dt", "section", "article", "header", "footer",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "head", "title", "noscript", "template"}


class _TextExtractor(HTMLParser):
    # html.parser is iterative, so deeply nested hostile markup cannot exhaust the stack.
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.quote_depth = 0
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
            return
        if tag == "blockquote":
            self.quote_depth += 1
        if tag in _BLOCK_TAGS:
            self._newline()
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
        if tag in _BLOCK_TAGS:
            self._newline()
        if tag == "a":
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        text = re.sub(r"\s+", " ", data)
        if not text.strip() and (not self.parts or self.parts[-1].endswith("\n")):
            return
        if self.quote_depth and (not self.parts or self.parts[-1].endswith("\n")):
            text = "> " * self.quote_depth + text.lstrip()
        self.parts.append(text)

    def _newline(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")


def html_to_text(source: str) -> str:
    """Readable plain text for HTML-only mail (blockquotes become `>` quotes)."""
    if len(source) > MAX_HTML_CHARS:
        source = source[:MAX_HTML_CHARS]
    extractor = _TextExtractor()
    try:
        extractor.feed(source)
        extractor.close()
    except (AssertionError, ValueError):  # html.parser's reaction to some broken markup
        pass
    lines = [line.rstrip() for line in "".join(extractor.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
