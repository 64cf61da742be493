"""Which uploaded bytes may a browser render inline? Pure checks, no I/O.

A declared content type is only a claim: an "image/png" that is really HTML
would run script if served inline. Inline types are trusted only when the
file's first bytes agree; everything else is served as a download.
"""

from __future__ import annotations

MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
    "audio/ogg": (b"OggS",),
    "audio/webm": (b"\x1a\x45\xdf\xa3",),
}


def matches_magic(content_type: str, head: bytes) -> bool:
    if content_type == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    if content_type == "audio/wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if content_type == "text/plain":
        # Text that a browser might sniff as markup is not served inline.
        return b"<" not in head[:1024] and b"\x00" not in head[:1024]
    prefixes = MAGIC.get(content_type)
    return prefixes is not None and head.startswith(prefixes)


def serve_inline(content_type: str, inline_types: frozenset[str], head: bytes) -> bool:
    return content_type in inline_types and matches_magic(content_type, head)
