"""Quoted history and signatures separated from the new text (mail-parser-reply)."""

from __future__ import annotations

from pathlib import Path

from channels.email.parse import parse_email
from channels.email.quoting import MAX_SPLIT_CHARS, split_reply

FIXTURES = Path(__file__).parent / "fixtures"


def test_english_reply_with_signature_and_quote() -> None:
    text = parse_email((FIXTURES / "reply_quoted.eml").read_bytes()).text
    parts = split_reply(text)
    assert parts.new_text == "Thanks, the reset worked!"
    assert parts.signature.startswith("Best regards")
    assert parts.quoted.startswith("On Mon, Jan 5, 2026")
    assert "hold the reset button" in parts.quoted
    assert parts.full == text.strip() and parts.has_history


def test_german_reply_header() -> None:
    text = parse_email((FIXTURES / "reply_de.eml").read_bytes()).text
    parts = split_reply(text)
    assert parts.new_text == "Vielen Dank, das passt so."
    assert parts.quoted.startswith("Am 06.01.2026 um 09:00 schrieb")


def test_trailing_quote_block_without_header() -> None:
    parts = split_reply("Sure, done.\n\n> can you do it?\n> thanks")
    assert parts.new_text == "Sure, done."
    assert parts.quoted == "> can you do it?\n> thanks"


def test_plain_message_has_no_history() -> None:
    parts = split_reply("Just a question about my order 4711.")
    assert parts.new_text == "Just a question about my order 4711."
    assert not parts.has_history


def test_bare_forward_keeps_everything_visible() -> None:
    text = (
        "---------- Forwarded message ----------\nFrom: a@example.com\n"
        "Subject: hi\n\nthe real content"
    )
    parts = split_reply(text)
    assert parts.new_text == text


def test_huge_body_is_bounded_and_kept() -> None:
    text = "New text on top.\n\n" + "> old line\n" * (MAX_SPLIT_CHARS // 5)
    parts = split_reply(text)
    assert parts.new_text == "New text on top."
    assert parts.full == text.strip()
    assert len(parts.new_text) + len(parts.quoted) >= len(text.strip()) // 2


def test_empty() -> None:
    assert split_reply("  \n ").new_text == ""
