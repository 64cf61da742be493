"""Reply tokens, subject tags and the pure thread decision."""

from __future__ import annotations

from pathlib import Path

from channels.email.parse import parse_email
from channels.email.thread_keys import (
    ThreadedBy,
    ThreadLookups,
    choose_thread,
    make_token,
    plus_address,
    reply_subject,
    split_plus,
    subject_tag,
    tag_subject,
    token_key,
    token_ticket_id,
    verify_token,
)

FIXTURES = Path(__file__).parent / "fixtures"
KEY = token_key(b"fixture-secret")


def test_token_roundtrip_and_forgery() -> None:
    token = make_token(KEY, 7)
    assert verify_token(KEY, token) == 7
    assert verify_token(KEY, token.upper()) == 7  # some MTAs fold case
    other = token_key(b"another-secret")
    assert verify_token(other, token) is None
    # Same signature, another ticket: rejected (the HMAC covers the id).
    assert verify_token(KEY, token.replace("t7-", "t8-")) is None
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert verify_token(KEY, tampered) is None
    for junk in ("", "t7", "t7-", "x7-aaaaaaaaaaaaaaaa", "t-aaaaaaaaaaaaaaaa", "t7-AAAA"):
        assert verify_token(KEY, junk) is None


def test_plus_addresses() -> None:
    token = make_token(KEY, 42)
    address = plus_address("support@demo.localhost", token)
    assert address == f"support+{token}@demo.localhost"
    assert split_plus(address) == ("support@demo.localhost", token)
    assert split_plus("Support@Demo.Localhost") == ("support@demo.localhost", None)
    assert token_ticket_id(KEY, ["other@x.com", address]) == 42
    assert token_ticket_id(KEY, ["support+t42-aaaaaaaaaaaaaaaa@demo.localhost"]) is None


def test_fixture_token_names_ticket_7() -> None:
    mail = parse_email((FIXTURES / "plus_token_reply.eml").read_bytes())
    assert token_ticket_id(KEY, [a.email for a in mail.to]) == 7


def test_subject_tags() -> None:
    assert subject_tag("Re: Router does not start [#12]") == 12
    assert subject_tag("no tag [#] here #12") is None
    assert tag_subject("Router [#3] broken", 12) == "Router broken [#12]"
    assert reply_subject("Router broken", 12) == "Re: Router broken [#12]"
    assert reply_subject("AW: Rechnung [#13]", 13) == "AW: Rechnung [#13]"


def test_decision_order() -> None:
    everything = ThreadLookups(
        token_ticket_id=1,
        reference_ticket_ids=[2, 3],
        subject_ticket_id=4,
        subject_ticket_addresses=frozenset({"anna@example.com"}),
    )
    assert choose_thread("anna@example.com", everything).by is ThreadedBy.token
    no_token = ThreadLookups(
        reference_ticket_ids=[2, 3],
        subject_ticket_id=4,
        subject_ticket_addresses=frozenset({"anna@example.com"}),
    )
    assert choose_thread("anna@example.com", no_token).ticket_id == 2
    subject_only = ThreadLookups(
        subject_ticket_id=4, subject_ticket_addresses=frozenset({"anna@example.com"})
    )
    choice = choose_thread("Anna@Example.com", subject_only)
    assert (choice.ticket_id, choice.by) == (4, ThreadedBy.subject)
    # A guessed tag from a stranger does not get into someone else's ticket.
    stranger = choose_thread("mallory@example.net", subject_only)
    assert (stranger.ticket_id, stranger.by) == (None, ThreadedBy.new)
    assert choose_thread(None, ThreadLookups()).by is ThreadedBy.new
