"""Raw RFC 5322 bytes -> `ParsedEmail`. Pure: no I/O, never raises.

Mail from the wild has unknown charsets, broken multiparts, 8-bit headers and
missing headers. Every step here degrades instead of failing: a part that cannot
be decoded is noted in `errors` and skipped, and a message that cannot be
parsed at all still yields a `ParsedEmail` carrying its raw bytes, so the
caller can store it and nothing accepted is ever lost.
"""

from __future__ import annotations

import binascii
import hashlib
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from channels.email.decoding import clean_text, decode_bytes, decode_header_value, one_line
from channels.email.htmltext import html_to_text, normalize_cid, sanitize_html
from channels.email.loops import AutoInfo, Bounce, detect_auto, detect_bounce

MAX_PARTS = 1000
MAX_DEPTH = 25
MAX_ATTACHMENTS = 200
MAX_REFERENCES = 50
MAX_ADDRESSES = 100
MAX_ID_CHARS = 255
MAX_SUBJECT_CHARS = 500
MAX_FILENAME_CHARS = 200
MAX_HEADER_DECODE = 16_384

_SIGNATURE_TYPES = {
    "application/pgp-signature",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
}


class _RawHeaderPolicy(policy.Compat32):
    """compat32 parsing, but header values come back as the raw `str`.

    policy.default builds a header object for every header it is asked for, which
    cost more than the whole rest of a parse; here headers stay strings and are
    decoded only where needed. Plain compat32 would turn a raw 8-bit value into a
    `Header` whose `str()` replaces those bytes with U+FFFD; returned raw (with
    surrogate escapes) they reach `clean_text`, which decodes them properly."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_LENIENT = _RawHeaderPolicy()


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    @property
    def normalized(self) -> str:
        """Matching key: addresses compare case-insensitively in practice."""
        return self.email.strip().lower()

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False
    kind: str = "file"  # file | calendar | message (a forwarded message/rfc822)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class ParsedEmail:
    raw: bytes
    message_id: str | None = None
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    subject: str = ""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str | None = None  # sanitized; `cid:` srcs left for resolve_cid_urls
    attachments: list[ParsedAttachment] = field(default_factory=list)
    auto: AutoInfo = field(default_factory=AutoInfo)
    bounce: Bounce | None = None
    signed: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def dedupe_id(self) -> str:
        """Message-ID, or a content hash for mail that has none (resends still dedupe)."""
        if self.message_id:
            return self.message_id
        return f"sha256-{hashlib.sha256(self.raw).hexdigest()[:40]}@helpdesk.invalid"

    @property
    def reply_address(self) -> Address | None:
        return self.reply_to[0] if self.reply_to else self.sender

    @property
    def thread_ids(self) -> list[str]:
        """Referenced Message-IDs, most specific first (In-Reply-To, then newest References)."""
        ordered = [*self.in_reply_to, *reversed(self.references)]
        return list(dict.fromkeys(ordered))


_MSGID = re.compile(r"<([^<>\s]{1,500})>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _unfold(value: str) -> str:
    return _FOLD.sub("", value)


def _msg_ids(value: str, limit: int) -> list[str]:
    ids = [m.group(1) for m in _MSGID.finditer(value)]
    if not ids and value.strip() and " " not in value.strip():
        ids = [value.strip()]  # some generators omit the angle brackets
    return [i[:MAX_ID_CHARS] for i in ids][-limit:]


class _Headers:
    """First raw value of each header, decoded leniently on demand."""

    def __init__(self, msg: Message) -> None:
        self.raw: dict[str, str] = {}
        for name, value in msg.raw_items():
            self.raw.setdefault(name.lower(), clean_text(str(value)))

    def text(self, name: str) -> str:
        # A 200 KB folded subject is not worth decoding in full; the model keeps 500 chars.
        return decode_header_value(self.raw.get(name.lower(), "")[:MAX_HEADER_DECODE])


def _addresses(headers: _Headers, name: str) -> list[Address]:
    """Addresses of one header, display names RFC 2047-decoded.

    Parsed from the raw value (compat32): policy.default's header objects cost more
    than the whole rest of the parse for a typical mail. On the shared corpus the
    addresses are the same, except that an encoded word glued to plain text in a
    display name (`Jos=?ISO-8859-1?Q?=E9?=`) is now decoded too."""
    raw = headers.raw.get(name.lower())
    if not raw:
        return []
    result: list[Address] = []
    for display, email in getaddresses([_unfold(raw)]):
        if "@" in email and email != "<>":
            name_text = decode_header_value(display) if "=?" in display else clean_text(display)
            result.append(Address(name_text, clean_text(email)))
    return [
        Address(one_line(a.name, 200), one_line(a.email, 254))
        for a in result[:MAX_ADDRESSES]
        if "@" in a.email
    ]


def _date(headers: _Headers) -> datetime | None:
    raw = headers.raw.get("date", "")
    if not raw:
        return None
    try:
        value = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _filename(part: Message, index: int, ctype: str) -> str:
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:
        name = ""
    name = str(name) if not isinstance(name, tuple) else str(name[2])
    name = decode_header_value(name) if "=?" in name else clean_text(name)
    # Never trust a path from the sender; keep only a printable base name.
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = name.strip().strip(".") or ""
    if not name:
        ext = ".eml" if ctype == "message/rfc822" else (mimetypes.guess_extension(ctype) or ".bin")
        name = f"attachment-{index}{ext}"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_FILENAME_CHARS - len(ext) - 1] + dot + ext) if dot else name[:200]
    return name


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        return ""


def _content_id(part: Message) -> str | None:
    raw = part.get("Content-ID")
    if raw is None:
        return None
    value = normalize_cid(clean_text(str(raw)))
    return value[:MAX_ID_CHARS] or None


def _base64_payload(part: Message) -> bytes | None:
    """A valid base64 body decoded in one call, or None (then the stdlib decodes it).

    The stdlib checks the whole body with a regex, splits it into lines and joins them
    first: for a 100 KiB attachment that cost three times the decoding. Strict
    decoding accepts only what the stdlib decodes without complaint, to the same bytes.
    """
    payload = part.get_payload()
    if not isinstance(payload, str) or len(payload) < 4096:
        return None
    if str(part.get("content-transfer-encoding", "")).lower() != "base64":
        return None
    try:
        return binascii.a2b_base64(
            payload.encode("ascii").translate(None, b"\r\n"), strict_mode=True
        )
    except (UnicodeEncodeError, binascii.Error):
        return None


def _payload_bytes(part: Message) -> bytes:
    fast = _base64_payload(part)
    if fast is not None:
        return fast
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", errors="surrogateescape")
    if isinstance(payload, list):  # message/delivery-status & co: blocks of header fields
        return "\n".join(clean_text(str(p)) for p in payload).encode("utf-8")
    return b""


def _message_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        try:
            return inner.as_bytes(policy=policy.compat32)
        except Exception:
            return str(inner).encode("utf-8", errors="replace")
    return _payload_bytes(part)


@dataclass
class _Collected:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)


class _Walker:
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.parts_seen = 0
        self.signed = False

    def walk(
        self, part: Message, depth: int, out: _Collected, *, in_alternative: bool = False
    ) -> None:
        self.parts_seen += 1
        if self.parts_seen > MAX_PARTS or depth > MAX_DEPTH:
            if self.parts_seen == MAX_PARTS + 1 or depth == MAX_DEPTH + 1:
                self.errors.append("too many or too deeply nested MIME parts; rest skipped")
            return
        try:
            self._walk(part, depth, out, in_alternative)
        except Exception as exc:  # one broken part must not cost the rest of the message
            self.errors.append(f"part {part.get_content_type()}: {type(exc).__name__}: {exc}"[:300])

    def _walk(self, part: Message, depth: int, out: _Collected, in_alternative: bool) -> None:
        ctype = part.get_content_type()
        maintype = ctype.partition("/")[0]
        disposition = _disposition(part)
        if ctype in {"message/rfc822", "message/global"}:
            self._attach(part, out, kind="message", data=_message_bytes(part))
            return
        payload = part.get_payload()
        if maintype == "multipart" and isinstance(payload, list):
            children = [p for p in payload if isinstance(p, Message)]
            if ctype == "multipart/alternative":
                self._alternative(children, depth, out)
                return
            if ctype == "multipart/signed":
                self.signed = True
            for child in children:
                if child.get_content_type() in _SIGNATURE_TYPES and ctype == "multipart/signed":
                    continue  # the detached signature is in the raw source; it is not content
                self.walk(child, depth + 1, out)
            return
        if maintype == "multipart":
            # Declared multipart but no boundary found: the body is whatever text is there.
            self.errors.append(f"{ctype} without parts; read as text")
            out.plain.append(decode_bytes(_payload_bytes(part), part.get_content_charset()))
            return
        if maintype == "message":
            self._attach(part, out, kind="file", data=_payload_bytes(part))
            return
        has_name = bool(
            part.get_param("name") or part.get_param("filename", header="content-disposition")
        )
        if ctype in {"text/plain", "text/html"} and disposition != "attachment" and not has_name:
            text = decode_bytes(_payload_bytes(part), part.get_content_charset())
            (out.plain if ctype == "text/plain" else out.html).append(text)
            return
        if in_alternative and maintype == "text" and not has_name and ctype != "text/calendar":
            return  # text/watch-html, text/enriched...: another rendering of the same body
        if ctype == "text/calendar":
            self._attach(part, out, kind="calendar", data=_payload_bytes(part))
            return
        self._attach(part, out, kind="file", data=_payload_bytes(part))

    def _alternative(self, children: list[Message], depth: int, out: _Collected) -> None:
        plain: list[str] | None = None
        html: list[str] | None = None
        for child in children:
            sub = _Collected()
            self.walk(child, depth + 1, sub, in_alternative=True)
            # Prefer the first plain and the last (richest) HTML alternative.
            if sub.plain and plain is None:
                plain = sub.plain
            if sub.html:
                html = sub.html
            out.attachments.extend(sub.attachments)
        out.plain.extend(plain or [])
        out.html.extend(html or [])

    def _attach(self, part: Message, out: _Collected, *, kind: str, data: bytes) -> None:
        if len(out.attachments) >= MAX_ATTACHMENTS:
            if len(out.attachments) == MAX_ATTACHMENTS:
                self.errors.append(f"more than {MAX_ATTACHMENTS} attachments; rest skipped")
            return
        ctype = part.get_content_type()
        cid = _content_id(part)
        out.attachments.append(
            ParsedAttachment(
                filename=_filename(part, len(out.attachments) + 1, ctype),
                content_type=ctype,
                data=data,
                content_id=cid,
                inline=_disposition(part) == "inline"
                or (cid is not None and ctype.startswith("image/")),
                kind=kind,
            )
        )


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_email(raw: bytes, *, envelope_sender: str | None = None) -> ParsedEmail:
    """Parse raw message bytes. Never raises; problems are listed in `errors`."""
    result = ParsedEmail(raw=raw)
    try:
        _parse_into(result, raw, envelope_sender)
    except Exception as exc:  # last line of defence: keep the raw source and say why
        result.errors.append(f"unparseable: {type(exc).__name__}: {exc}"[:300])
        if not result.text:
            result.text = decode_bytes(raw[:200_000], None)
    return result


# The stdlib feed parser handles every line in Python; a 100 KiB attachment is ~1,800
# base64 lines and cost ~90% of its message's parse. A run of such lines cannot move the
# parser from one state to another: no ':' (not a header), no leading "--" (not a
# boundary), no leading blank (not a continuation), never empty (not the header/body
# separator). So the run is parsed as one stand-in line of the same kind, and put back
# into the string (payload, preamble or epilogue) that took the stand-in. If any stand-in
# does not come back exactly once, the message is parsed again the plain way.
_FOLD_MIN_BYTES = 16 * 1024
_FOLD_MIN_LINES = 32
_BASE64_RUN = re.compile(rb"^(?:[A-Za-z0-9+/=]{40,998}\r?\n)+", re.MULTILINE)
_MARK = "HELPDESKRUN"
_STAND_IN = re.compile(_MARK + r"(\d{6})(\r\n|\n)?")


def _parse_message(raw: bytes) -> Message:
    if len(raw) >= _FOLD_MIN_BYTES and _MARK.encode() not in raw:
        folded = _parse_folded(raw)
        if folded is not None:
            return folded
    return BytesParser(policy=_LENIENT).parsebytes(raw)


def _parse_folded(raw: bytes) -> Message | None:
    runs: list[str] = []
    pieces: list[bytes] = []
    start = 0
    for match in _BASE64_RUN.finditer(raw):
        run_start, run_end = match.span()
        run = match.group()
        if run.count(b"\n") < _FOLD_MIN_LINES:
            continue
        eol = b"\r\n" if run.endswith(b"\r\n") else b"\n"
        pieces += [raw[start:run_start], b"%s%06d" % (_MARK.encode(), len(runs)), eol]
        runs.append(run.decode("ascii"))
        start = run_end
    if not runs:
        return None
    pieces.append(raw[start:])
    msg = BytesParser(policy=_LENIENT).parsebytes(b"".join(pieces))
    used = [0] * len(runs)

    def put_back(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(runs):
            used.append(0)  # not one of ours: parse the plain way
            return match.group()
        used[index] += 1
        run, eol = runs[index], match.group(2)
        if eol is None:  # the line ending before a boundary belongs to the boundary
            return run[:-2] if run.endswith("\r\n") else run[:-1]
        if eol != ("\r\n" if run.endswith("\r\n") else "\n"):
            used[index] += 1  # not the line ending the stand-in was given
        return run

    for part in msg.walk():
        # The attributes themselves: `set_payload` would also touch the charset headers.
        for name in ("_payload", "preamble", "epilogue"):
            value = getattr(part, name, None)
            if isinstance(value, str) and _MARK in value:
                setattr(part, name, _STAND_IN.sub(put_back, value))
        if any(_MARK in str(value) for _, value in part.raw_items()):
            return None
    if any(count != 1 for count in used):
        return None
    return msg


def _parse_into(result: ParsedEmail, raw: bytes, envelope_sender: str | None) -> None:
    errors = result.errors
    msg = _parse_message(raw)
    headers = _Headers(msg)
    ids = _msg_ids(headers.raw.get("message-id", ""), 1)
    result.message_id = ids[0] if ids else None
    result.in_reply_to = _msg_ids(headers.raw.get("in-reply-to", ""), 5)
    result.references = _msg_ids(headers.raw.get("references", ""), MAX_REFERENCES)
    result.subject = one_line(headers.text("subject"), MAX_SUBJECT_CHARS)
    senders = _addresses(headers, "From")
    result.sender = senders[0] if senders else None
    result.to = _addresses(headers, "To")
    result.cc = _addresses(headers, "Cc")
    result.reply_to = _addresses(headers, "Reply-To")
    result.date = _date(headers)

    collected = _Collected()
    walker = _Walker(errors)
    walker.walk(msg, 0, collected)
    result.signed = walker.signed
    result.attachments = collected.attachments
    plain = "\n\n".join(_lines(t).strip("\n") for t in collected.plain if t.strip())
    html = "\n".join(collected.html)
    if html.strip():
        try:
            result.html = sanitize_html(html)
        except Exception as exc:
            errors.append(f"html sanitizer: {type(exc).__name__}")
    result.text = plain if plain else (html_to_text(html) if html.strip() else "")

    result.auto = detect_auto(
        headers.raw,
        subject=result.subject,
        sender=result.sender.email if result.sender else "",
        content_type=msg.get_content_type(),
        envelope_sender=envelope_sender,
    )
    result.bounce = detect_bounce(msg, result.in_reply_to)
    if msg.defects:
        names = sorted({type(d).__name__ for d in msg.defects})
        errors.append("defects: " + ", ".join(names[:10]))
