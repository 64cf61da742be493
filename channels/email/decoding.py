"""Lenient text decoding for mail: bogus charsets, raw 8-bit headers, surrogate escapes.

Everything returned here is a clean `str` that a database will accept (no lone
surrogates from `surrogateescape`, no NUL), whatever the bytes on the wire were.
"""

from __future__ import annotations

import codecs
import re
from email.header import decode_header

# Names seen in the wild that Python does not know, or where the declared charset is a
# subset of what senders actually use (browsers decode these the same way).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode20utf8": "utf-8",
    "utf8": "utf-8",
}

_NUL = re.compile("\x00")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def lookup_charset(name: str | None) -> str | None:
    """A codec name Python can use for `name`, or None when it is unknown or absent."""
    if not name:
        return None
    cleaned = name.strip().strip("\"'").lower()
    # Broken generators leak QP or parameter debris into the value ("utf-8=3D", "utf-8;").
    cleaned = re.split(r"[;=\s]", cleaned, maxsplit=1)[0]
    if not cleaned:
        return None
    cleaned = _CHARSET_ALIASES.get(cleaned, cleaned)
    try:
        return codecs.lookup(cleaned).name
    except LookupError:
        return None


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    # Mixed encodings inside one string are common (a UTF-8 subject with one Latin-1
    # byte): keep every valid UTF-8 sequence and read only the bad bytes as cp1252.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bytes(bad).decode("cp1252", errors="replace"), exc.end


codecs.register_error("helpdesk-cp1252", _cp1252_fallback)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset when it works, else UTF-8 with cp1252 for bad bytes."""
    codec = lookup_charset(charset)
    if codec is not None and codec != "utf-8":
        try:
            return clean_text(data.decode(codec))
        except (UnicodeDecodeError, LookupError):
            pass
    return clean_text(data.decode("utf-8", errors="helpdesk-cp1252"))


def clean_text(value: str) -> str:
    """Repair lone surrogates (raw 8-bit bytes smuggled through surrogateescape)."""
    if _SURROGATE.search(value) is not None:  # rare: skip two copies of every text
        if _ESCAPED_BYTE.search(value) is not None:
            raw = value.encode("utf-8", errors="surrogateescape")
            value = raw.decode("utf-8", errors="helpdesk-cp1252")
        # Any remaining surrogates (outside the escape range) cannot be stored as UTF-8.
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return _NUL.sub("", value) if "\x00" in value else value


def decode_header_value(raw: str) -> str:
    """RFC 2047 decoding that survives unknown charsets and broken encoded-words."""
    try:
        chunks = decode_header(raw)
    except Exception:  # decode_header raises HeaderParseError and friends on junk
        return clean_text(raw)
    # decode_header already keeps the whitespace that separates encoded from plain words.
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(clean_text(chunk))
    return "".join(out)


def one_line(value: str, limit: int) -> str:
    """Headers fold; the data model wants a single trimmed line of bounded length."""
    return re.sub(r"\s+", " ", value).strip()[:limit]
