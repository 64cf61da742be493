"""Separate what the customer just wrote from quoted history and signatures.

The splitting itself is mail-parser-reply's (maintained, multi-language header
patterns: "On ... wrote:", "Am ... schrieb", Outlook "From:/Sent:" blocks).
This module only bounds its input, adds the plain `>`-block case it leaves in
the first reply, and never lets a split produce an empty message: the full text
always travels along so the console can show it one click away.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailparser_reply import EmailReplyParser

# The library's patterns are regexes over the whole body; past this size only the head
# is split (the new text is at the top) and the remainder counts as quoted history.
MAX_SPLIT_CHARS = 64_000
DEFAULT_LANGUAGES = ("en", "de")


_BARE_SEPARATOR = re.compile(
    r"[-_=\s]*(forwarded message|original message|weitergeleitete nachricht|"
    r"urspr\u00fcngliche nachricht|begin forwarded message:?)[-_=\s]*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ReplyParts:
    new_text: str
    signature: str
    quoted: str
    full: str

    @property
    def has_history(self) -> bool:
        return bool(self.quoted or self.signature)


def _cut_trailing_quote(text: str) -> tuple[str, str]:
    """`new text` + a closing block of `>` lines without an attribution header."""
    lines = text.split("\n")
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].startswith(">")):
        end -= 1
    block = lines[end:]
    if end == 0 or not any(line.startswith(">") for line in block):
        return text, ""
    return "\n".join(lines[:end]).strip(), "\n".join(block).strip()


def split_reply(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES) -> ReplyParts:
    """Split a plain-text body. Never raises; on any doubt the whole text is new text."""
    full = text.replace("\r\n", "\n").strip()
    if not full:
        return ReplyParts("", "", "", "")
    head, tail = full[:MAX_SPLIT_CHARS], full[MAX_SPLIT_CHARS:]
    try:
        message = EmailReplyParser(languages=list(languages)).read(head)
    except Exception:  # a regex library bug must not cost the customer's message
        return ReplyParts(full, "", "", full)
    replies = message.replies
    if not replies:
        return ReplyParts(full, "", "", full)
    first = replies[0]
    new_text = (first.body or "").strip()
    signature = (first.signatures or "").strip()
    quoted_parts = [r.content for r in replies[1:] if r.content]
    new_text, trailing = _cut_trailing_quote(new_text)
    if trailing:
        quoted_parts.insert(0, trailing)
    if tail:
        quoted_parts.append(tail)
    if not new_text or _BARE_SEPARATOR.fullmatch(new_text):
        # A bare forward or an all-quoted message: showing nothing would hide the mail.
        return ReplyParts(full, "", "", full)
    return ReplyParts(new_text, signature, "\n\n".join(quoted_parts).strip(), full)
