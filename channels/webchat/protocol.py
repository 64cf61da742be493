"""The widget and agent websocket frames: pure parsing, validation and rendering.

No I/O here: every function takes text or dicts and returns dicts or raises
`ProtocolError`, so the contract in docs/widget-protocol.md is tested from
fixture strings without a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Close codes (documented in docs/widget-protocol.md).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011
CLOSE_TRY_AGAIN = 1013

MAX_FRAME_BYTES = 32 * 1024
MAX_CLIENT_ID = 64
HELLO_TIMEOUT = 10.0


class ProtocolError(Exception):
    """A bad frame: answered with an error frame, the connection stays open."""

    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id

    def frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.client_id)


def error_frame(
    code: str, message: str, client_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_id is not None:
        frame["client_id"] = client_id
    frame.update(extra)
    return frame


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_message_chars: int = 5000
    max_attachments: int = 10


# -- parsing ---------------------------------------------------------------------


def decode(raw: str | bytes | None, limits: Limits) -> dict[str, Any]:
    """JSON object from one text frame, or ProtocolError(bad_frame | too_large)."""
    if raw is None or isinstance(raw, bytes):
        raise ProtocolError("bad_frame", "send JSON text frames")
    if len(raw) > limits.max_frame_bytes or len(raw.encode()) > limits.max_frame_bytes:
        raise ProtocolError("too_large", f"frame is larger than {limits.max_frame_bytes} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProtocolError("bad_frame", "frame is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_frame", "frame must be a JSON object with a string `type`")
    return data


def _opt_int(data: dict[str, Any], key: str, *, minimum: int = 0) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProtocolError("bad_frame", f"`{key}` must be an integer >= {minimum} or null")
    return value


def _req_int(data: dict[str, Any], key: str, *, minimum: int = 0) -> int:
    value = _opt_int(data, key, minimum=minimum)
    if value is None:
        raise ProtocolError("bad_frame", f"`{key}` is required")
    return value


def _opt_str(data: dict[str, Any], key: str, max_len: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ProtocolError("bad_frame", f"`{key}` must be a string of at most {max_len} chars")
    return value


def client_id_of(data: dict[str, Any]) -> str:
    value = data.get("client_id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID:
        raise ProtocolError("bad_frame", f"`client_id` must be 1 to {MAX_CLIENT_ID} characters")
    return value


def body_of(data: dict[str, Any], limits: Limits, client_id: str | None) -> str:
    body = data.get("body", "")
    if not isinstance(body, str):
        raise ProtocolError("bad_frame", "`body` must be a string", client_id)
    if len(body) > limits.max_message_chars:
        raise ProtocolError(
            "too_long", f"message is longer than {limits.max_message_chars} characters", client_id
        )
    return body


def attachments_of(data: dict[str, Any], limits: Limits, client_id: str | None) -> list[int]:
    raw = data.get("attachments") or []
    if not isinstance(raw, list) or len(raw) > limits.max_attachments:
        raise ProtocolError(
            "bad_frame",
            f"`attachments` must be a list of at most {limits.max_attachments}",
            client_id,
        )
    ids: list[int] = []
    for item in raw:
        value = item.get("id") if isinstance(item, dict) else item
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ProtocolError("bad_frame", "attachments are upload ids", client_id)
        ids.append(value)
    return ids


@dataclass(frozen=True)
class Identity:
    id: object
    expires: object
    hash: object
    name: str = ""
    email: str | None = None


def identity_of(data: dict[str, Any]) -> Identity:
    name = _opt_str(data, "name", 200) or ""
    email = _opt_str(data, "email", 254)
    return Identity(
        id=data.get("id"),
        expires=data.get("expires"),
        hash=data.get("hash"),
        name=name,
        email=email,
    )


@dataclass(frozen=True)
class Hello:
    token: str | None
    after_seq: int | None
    ticket: int | None
    locale: str | None
    identity: Identity | None


def parse_hello(data: dict[str, Any]) -> Hello:
    if data.get("type") != "hello":
        raise ProtocolError("bad_frame", "the first frame must be hello")
    identity = data.get("identity")
    if identity is not None and not isinstance(identity, dict):
        raise ProtocolError("bad_frame", "`identity` must be an object")
    return Hello(
        token=_opt_str(data, "token", 512),
        after_seq=_opt_int(data, "after_seq"),
        ticket=_opt_int(data, "ticket", minimum=1),
        locale=_opt_str(data, "locale", 35),
        identity=identity_of(identity) if identity else None,
    )


@dataclass(frozen=True)
class VisitorMessage:
    client_id: str
    body: str
    attachments: list[int]
    name: str
    email: str | None


def parse_visitor_message(data: dict[str, Any], limits: Limits) -> VisitorMessage:
    client_id = client_id_of(data)
    return VisitorMessage(
        client_id=client_id,
        body=body_of(data, limits, client_id),
        attachments=attachments_of(data, limits, client_id),
        name=_opt_str(data, "name", 200) or "",
        email=_opt_str(data, "email", 254),
    )


def parse_read(data: dict[str, Any]) -> int:
    return _req_int(data, "seq")


def parse_typing(data: dict[str, Any]) -> bool:
    value = data.get("typing", True)
    if not isinstance(value, bool):
        raise ProtocolError("bad_frame", "`typing` must be true or false")
    return value


@dataclass(frozen=True)
class AgentWrite:
    kind: str  # reply | note
    client_id: str
    ticket: int
    body: str
    attachments: list[int]


def parse_agent_write(data: dict[str, Any], limits: Limits) -> AgentWrite:
    client_id = client_id_of(data)
    return AgentWrite(
        kind=str(data["type"]),
        client_id=client_id,
        ticket=_req_int(data, "ticket", minimum=1),
        body=body_of(data, limits, client_id),
        attachments=attachments_of(data, limits, client_id),
    )


STREAMS = ("ticket", "team", "workspace", "assigned")


@dataclass(frozen=True)
class Subscribe:
    stream: str
    ticket: int | None = None
    team: int | None = None
    after_seq: int = 0
    cursors: dict[int, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.stream, self.ticket if self.stream == "ticket" else self.team)


MAX_CURSORS = 1000


def parse_subscribe(data: dict[str, Any]) -> Subscribe:
    stream = data.get("stream")
    if stream not in STREAMS:
        raise ProtocolError("bad_frame", "`stream` must be one of " + ", ".join(STREAMS))
    raw = data.get("cursors") or {}
    if not isinstance(raw, dict) or len(raw) > MAX_CURSORS:
        raise ProtocolError("bad_frame", f"`cursors` maps at most {MAX_CURSORS} ticket ids to seqs")
    cursors: dict[int, int] = {}
    for key, value in raw.items():
        try:
            ticket = int(key)
        except (TypeError, ValueError):
            raise ProtocolError("bad_frame", "cursor keys are ticket ids") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or ticket < 1:
            raise ProtocolError("bad_frame", "cursor values are seqs >= 0")
        cursors[ticket] = value
    sub = Subscribe(
        stream=str(stream),
        ticket=_opt_int(data, "ticket", minimum=1),
        team=_opt_int(data, "team", minimum=1),
        after_seq=_opt_int(data, "after_seq") or 0,
        cursors=cursors,
    )
    if sub.stream == "ticket" and sub.ticket is None:
        raise ProtocolError("bad_frame", "a ticket stream needs `ticket`")
    if sub.stream == "team" and sub.team is None:
        raise ProtocolError("bad_frame", "a team stream needs `team`")
    return sub


# -- rendering ---------------------------------------------------------------------


def widget_author(author: dict[str, Any]) -> dict[str, Any]:
    kind = author.get("type")
    # Integrations (API tokens) answer as the company: the visitor sees an agent.
    shown = {"contact": "contact", "system": "system"}.get(str(kind), "agent")
    return {"type": shown, "name": author.get("name", "")}


def widget_event(event: dict[str, Any]) -> dict[str, Any]:
    """The visitor's view of one public timeline event (see `event_public`)."""
    author = event.get("author") or {}
    frame: dict[str, Any] = {
        "type": "event",
        "ticket": event["ticket_id"],
        "seq": event["seq"],
        "kind": event["kind"],
        "author": widget_author(author),
        "body": event.get("body", ""),
        "created_at": event.get("created_at"),
        "attachments": (event.get("payload") or {}).get("attachments", []),
    }
    if author.get("type") == "contact" and event.get("client_id"):
        frame["client_id"] = event["client_id"]
    return frame


def agent_event(event: dict[str, Any], team: int | None) -> dict[str, Any]:
    return {
        "type": "event",
        "ticket": event["ticket_id"],
        "seq": event["seq"],
        "kind": event["kind"],
        "internal": event.get("internal", False),
        "author": event.get("author") or {},
        "body": event.get("body", ""),
        "payload": event.get("payload") or {},
        "client_id": event.get("client_id"),
        "created_at": event.get("created_at"),
        "team": team,
    }


def ack(client_id: str, ticket: int, seq: int) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "ticket": ticket, "seq": seq}


# -- origins -----------------------------------------------------------------------
