"""parse_email over fixture files we wrote, one per case the email issue names."""

from __future__ import annotations

import base64
import dataclasses
import random
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import channels.email.parse as parse
from channels.email.htmltext import cid_references, html_to_text, resolve_cid_urls
from channels.email.parse import ParsedEmail, parse_email

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> ParsedEmail:
    return parse_email((FIXTURES / name).read_bytes())


def test_plain_new_message_headers_and_body() -> None:
    mail = load("plain_new.eml")
    assert mail.message_id == "new-1@mail.example.com"
    assert mail.subject == "Router does not start"
    assert mail.sender is not None
    assert (mail.sender.name, mail.sender.email) == ("Anna Kunde", "anna@example.com")
    assert [a.normalized for a in mail.to] == ["support@demo.localhost"]
    assert [(a.name, a.email) for a in mail.cc] == [
        ("Bob Boss", "bob@example.com"),
        ("", "carol@example.org"),
    ]
    assert mail.date is not None and mail.date.utcoffset() is not None
    assert mail.date.isoformat() == "2026-01-05T09:30:00+01:00"
    assert "LED blinks red" in mail.text
    assert mail.html is None
    assert mail.attachments == []
    assert not mail.auto.automated
    assert mail.bounce is None
    assert mail.errors == []
    assert mail.raw == (FIXTURES / "plain_new.eml").read_bytes()


def test_hostile_html_is_sanitized_and_cid_kept() -> None:
    mail = load("html_hostile.eml")
    assert mail.subject == "Bild anbei \u2714"
    html = mail.html
    assert html is not None
    lowered = html.lower()
    for forbidden in ("<script", "onload", "onclick", "javascript:", "<style", "<iframe", "<form"):
        assert forbidden not in lowered, forbidden
    assert "tracker.example" not in html  # no remote image, no remote CSS
    assert "https://example.net/docs" in html  # ordinary links survive
    assert 'rel="noopener noreferrer nofollow"' in html
    assert cid_references(html) == ["shot1@example.net"]
    resolved = resolve_cid_urls(html, {"shot1@example.net": "/api/v1/attachments/5?x=1&y=2"})
    assert 'src="/api/v1/attachments/5?x=1&amp;y=2"' in resolved
    assert "cid:" not in resolve_cid_urls(html, {})
    # No plain part: the timeline text comes from the HTML, scripts and styles dropped.
    assert "Hello team, see the screenshot:" in mail.text
    assert "alert" not in mail.text and "background" not in mail.text
    assert "> earlier text" in mail.text
    [image] = mail.attachments
    assert (image.filename, image.content_type, image.content_id) == (
        "shot.png",
        "image/png",
        "shot1@example.net",
    )
    assert image.inline and image.data.startswith(b"\x89PNG")


def test_attachments_rfc2231_rfc2047_and_path_names() -> None:
    mail = load("attachments_nonascii.eml")
    assert mail.sender is not None and mail.sender.name == "J\u00fcrgen M\u00fcller"
    assert mail.subject == "Rechnung \u00c4nderung"
    assert mail.text == "Guten Tag, anbei die Rechnung f\u00fcr M\u00e4rz."
    assert mail.html is not None and "M\u00e4rz" in mail.html
    names = [a.filename for a in mail.attachments]
    assert names == ["Rechnung M\u00e4rz \u20ac.pdf", "Notiz \u00fcber.txt", "passwd"]
    pdf = mail.attachments[0]
    assert pdf.content_type == "application/pdf" and pdf.data.startswith(b"%PDF-1.4")
    assert pdf.size == len(pdf.data) and not pdf.inline
    assert mail.attachments[1].data == "\u00fcber\n".encode()


def test_bogus_charset_falls_back_without_losing_text() -> None:
    mail = load("bogus_charset.eml")
    # Invalid UTF-8 and an unknown charset: decoded as Windows-1252, NUL removed.
    assert mail.text.startswith("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e")
    assert "\x00" not in mail.text
    assert mail.text.encode("utf-8")  # storable


def test_broken_structures_still_yield_text() -> None:
    no_boundary = load("broken_mime.eml")
    assert "Please help anyway." in no_boundary.text
    assert any("without parts" in e for e in no_boundary.errors)
    unterminated = load("missing_final_boundary.eml")
    assert unterminated.message_id == "broken-2@example.com"
    assert unterminated.html is not None and "html survives" in unterminated.html
    assert any("defects" in e for e in unterminated.errors)


def test_missing_headers() -> None:
    mail = load("missing_headers.eml")
    assert mail.message_id is None and mail.sender is None and mail.subject == ""
    assert mail.date is None
    assert "Only a body" in mail.text
    # Without a Message-ID the content hash still dedupes resends of the same bytes.
    assert mail.dedupe_id == load("missing_headers.eml").dedupe_id
    assert mail.dedupe_id.endswith("@helpdesk.invalid")


def test_header_oddities() -> None:
    mail = load("encoded_8bit_headers.eml")
    assert "caf\u00e9" in mail.subject and "TEST" in mail.subject
    assert mail.sender is not None and mail.sender.email == "jose@example.es"
    assert mail.sender.name == "Jos\u00e9"  # an encoded word glued to plain text
    raw8 = load("raw_8bit_headers_crlf.eml")
    assert raw8.subject.startswith("Gr\u00fc\u00dfe aus K")  # raw UTF-8 bytes in a header
    raw8.subject.encode("utf-8")
    assert raw8.sender is not None and raw8.sender.name == "M\u00fcller"
    assert raw8.text == "Raw 8-bit header bytes, CRLF line endings."


def test_reply_threading_headers() -> None:
    mail = load("reply_quoted.eml")
    assert mail.in_reply_to == ["out-1@demo.localhost"]
    assert mail.references == ["new-1@mail.example.com", "out-1@demo.localhost"]
    assert mail.thread_ids == ["out-1@demo.localhost", "new-1@mail.example.com"]


def test_auto_reply_detection() -> None:
    assert load("auto_replied.eml").auto.reasons[0] == "auto-submitted:auto-replied"
    assert "x-autoreply" in load("x_autoreply.eml").auto.reasons
    listed = load("list_bulk.eml").auto.reasons
    assert "precedence:bulk" in listed and "list" in listed
    null = load("null_sender.eml").auto.reasons
    assert "null-sender" in null and "mailer-daemon" in null
    assert not load("auto_submitted_no.eml").auto.automated
    assert not load("plain_new.eml").auto.automated
    # The SMTP envelope's empty MAIL FROM counts as a null sender too.
    envelope = parse_email((FIXTURES / "plain_new.eml").read_bytes(), envelope_sender="")
    assert envelope.auto.reasons == ("null-sender",)


def test_dsn_bounce_refers_to_original_message() -> None:
    mail = load("bounce_dsn.eml")
    assert mail.auto.automated
    bounce = mail.bounce
    assert bounce is not None and bounce.is_failure
    assert bounce.original_message_id == "out-1@demo.localhost"
    assert (bounce.action, bounce.status) == ("failed", "5.1.1")
    assert bounce.recipients == ("nobody@example.com",)
    assert "User unknown" in bounce.diagnostic
    headers_only = load("bounce_headers_only.eml").bounce
    assert headers_only is not None
    assert headers_only.original_message_id == "out-99@demo.localhost"
    assert headers_only.status == "5.2.1" and headers_only.recipients == ("gone@example.org",)


def test_read_receipt_is_automatic_but_no_bounce() -> None:
    mail = load("read_receipt.eml")
    assert mail.auto.automated and mail.bounce is None


def test_calendar_invite_kept_as_attachment() -> None:
    mail = load("calendar_invite.eml")
    assert mail.text == "You are invited to the onboarding call."
    [invite] = mail.attachments
    assert invite.kind == "calendar" and invite.content_type == "text/calendar"
    assert invite.filename.endswith(".ics")
    assert b"BEGIN:VEVENT" in invite.data


def test_forwarded_message_rfc822() -> None:
    mail = load("forward_rfc822.eml")
    assert mail.text == "Please look at the forwarded complaint below."
    [fwd] = mail.attachments
    assert fwd.kind == "message" and fwd.content_type == "message/rfc822"
    inner = parse_email(fwd.data)
    assert inner.message_id == "orig-complaint@example.org"
    assert inner.text == "The product broke after one day."


def test_multipart_signed() -> None:
    mail = load("signed_pgp.eml")
    assert mail.signed
    assert mail.text == "Please reset my password."
    # The signature itself stays in the raw source, not in the attachment list.
    assert [a.filename for a in mail.attachments] == ["details.txt"]


def test_html_to_text_survives_deep_nesting() -> None:
    deep = "<div>" * 50_000 + "deep" + "</div>" * 50_000
    assert html_to_text(deep) == "deep"


def test_empty_and_garbage_input() -> None:
    empty = parse_email(b"")
    assert empty.raw == b"" and empty.text == ""
    garbage = parse_email(b"\x00\xff\xfe" * 1000)
    assert garbage.raw.startswith(b"\x00\xff")
    garbage.text.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_parse_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    mail = parse_email(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + data)
    assert mail.raw.endswith(data)
    mail.text.encode("utf-8")
    mail.subject.encode("utf-8")


def _with_long_base64(linesep: bytes, tail: bytes = b"") -> bytes:
    rng = random.Random(5)
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["Subject"] = "files"
    msg.set_content("see attached\n")
    msg.add_attachment(
        rng.randbytes(40_000), maintype="application", subtype="pdf", filename="a.pdf"
    )
    msg.add_attachment(rng.randbytes(9_001), maintype="image", subtype="png", filename="b.png")
    raw = msg.as_bytes().replace(b"\n", linesep) + tail
    return raw


def test_long_base64_runs_parse_as_the_plain_parser_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut for long base64 bodies (`parse._parse_folded`) changes nothing."""
    cases = [
        _with_long_base64(b"\r\n"),
        _with_long_base64(b"\n"),
        _with_long_base64(b"\r\n", tail=base64.encodebytes(bytes(6000))),  # epilogue
        # One part, base64 to the end of the input (no final line break).
        b"From: a@b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(bytes(range(256)) * 80).rstrip(b"\n"),
        # A base64 run where headers should be: it ends them, as any non-header line does.
        b"From: a@b\r\n" + base64.encodebytes(bytes(range(256)) * 80) + b"\r\nbody\r\n",
        # The stand-in's marker in the mail itself: parsed the plain way.
        _with_long_base64(b"\r\n", tail=b"HELPDESKRUN000000\r\n"),
    ]
    for raw in cases:
        folded = parse_email(raw)
        monkeypatch.setattr(parse, "_FOLD_MIN_BYTES", 1 << 40)
        plain = parse_email(raw)
        monkeypatch.undo()
        assert dataclasses.asdict(folded) == dataclasses.asdict(plain)
    assert parse._parse_folded(cases[0]) is not None  # the shortcut was taken
    assert [a.filename for a in parse_email(cases[0]).attachments] == ["a.pdf", "b.png"]


def test_base64_bodies_decode_as_the_stdlib_decodes() -> None:
    """`parse._base64_payload` takes only what the stdlib decodes cleanly, to the same bytes."""
    body = base64.encodebytes(random.Random(3).randbytes(9001))  # padded: 9001 % 3 != 0
    variants = {
        "lf": body,
        "crlf": body.replace(b"\n", b"\r\n"),
        "bad character": body[:500] + b"*" + body[501:],
        "no padding": body.rstrip(b"=\n") + b"\n",
        "data after padding": body + b"QUJD\n",
    }
    for name, data in variants.items():
        raw = (
            b"From: a@b\r\nContent-Type: application/pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + data
        )
        part = parse._parse_message(raw)
        fast = parse._base64_payload(part)
        expected = parse._parse_message(raw).get_payload(decode=True)
        if name in ("lf", "crlf"):
            assert fast == expected, name
        else:
            assert fast is None, name  # left to the stdlib, defects and all
