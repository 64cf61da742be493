"""Outbound mail as built for the relay, read back through our own parser."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

from channels.email.parse import parse_email
from channels.email.quoting import split_reply
from channels.email.render import (
    OutboundAttachment,
    ReplyContext,
    make_message_id,
    render_auto_ack,
    render_reply,
)
from channels.email.thread_keys import make_token, plus_address, token_key, token_ticket_id

KEY = token_key(b"fixture-secret")


def context(**overrides: object) -> ReplyContext:
    values: dict[str, object] = {
        "inbox_address": "support@demo.localhost",
        "inbox_name": "Demo Support",
        "sender_name": "J\u00fcrgen Agent",
        "to": ["Anna Kunde <anna@example.com>"],
        "cc": ["bob@example.com"],
        "ticket_number": 12,
        "subject": "Router does not start",
        "message_id": "out-2@demo.localhost",
        "reply_to": plus_address("support@demo.localhost", make_token(KEY, 7)),
        "in_reply_to": "reply-1@mail.example.com",
        "references": ["new-1@mail.example.com", "out-1@demo.localhost"],
        "date": datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return ReplyContext(**values)  # type: ignore[arg-type]


def test_reply_headers_thread_and_tag() -> None:
    msg = render_reply(context(), "Glad it works!\n\nCheers <3")
    raw = msg.as_bytes()
    parsed = parse_email(raw)
    assert parsed.message_id == "out-2@demo.localhost"
    assert parsed.in_reply_to == ["reply-1@mail.example.com"]
    assert parsed.references == [
        "new-1@mail.example.com",
        "out-1@demo.localhost",
        "reply-1@mail.example.com",
    ]
    assert parsed.subject == "Re: Router does not start [#12]"
    assert parsed.sender is not None
    assert (parsed.sender.name, parsed.sender.email) == (
        "J\u00fcrgen Agent",
        "support@demo.localhost",
    )
    assert [a.email for a in parsed.cc] == ["bob@example.com"]
    assert token_ticket_id(KEY, [a.email for a in parsed.reply_to]) == 7
    assert parsed.text.startswith("Glad it works!\n\nCheers <3")
    assert "Ticket #12" in parsed.text
    assert parsed.html is not None and "Cheers &lt;3" in parsed.html
    assert not parsed.auto.automated
    structure = BytesParser(policy=policy.default).parsebytes(raw)
    assert structure.get_content_type() == "multipart/alternative"
    assert b"\r\n" in raw  # SMTP line endings


def test_first_message_and_attachments_and_locale() -> None:
    ctx = context(
        in_reply_to=None,
        references=[],
        locale="de-DE",
        attachments=[OutboundAttachment("Pr\u00fcfbericht.pdf", "application/pdf", b"%PDF-1.4")],
    )
    msg = render_reply(ctx, "Hallo Anna", first_message=True)
    parsed = parse_email(msg.as_bytes())
    assert parsed.subject == "Router does not start [#12]"
    assert parsed.in_reply_to == [] and parsed.references == []
    assert "antworten Sie einfach" in parsed.text
    [att] = parsed.attachments
    assert (att.filename, att.data) == ("Pr\u00fcfbericht.pdf", b"%PDF-1.4")


def test_customer_reply_built_from_our_mail_splits_cleanly() -> None:
    ours = parse_email(render_reply(context(), "Please restart it.").as_bytes())
    quoted = "\n".join("> " + line for line in ours.text.splitlines())
    answer = f"It works now.\n\nOn Mon, Jan 5, 2026, Support wrote:\n{quoted}\n"
    assert split_reply(answer).new_text == "It works now."


def test_auto_ack_is_marked_automatic() -> None:
    msg = render_auto_ack(context(locale="de"), customer_name="Anna")
    parsed = parse_email(msg.as_bytes())
    assert parsed.auto.reasons[0] == "auto-submitted:auto-replied"
    assert parsed.subject == "Eingegangen: Router does not start [#12]"
    assert "#12" in parsed.text and "Hallo Anna" in parsed.text
    english = parse_email(render_auto_ack(context(locale="fr")).as_bytes())
    assert english.subject.startswith("Received: ")


def test_message_ids_are_unique() -> None:
    ids = {make_message_id("demo.localhost") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.endswith("@demo.localhost") for i in ids)
