"""The `call.*` websocket frames: pure parsing and the endpoint descriptor (no I/O).

Frames are documented in docs/voice-protocol.md. Every frame carries a `type`; all but
`call.start` and `call.dial` name their call with `call` (an integer id). SDP is the
full description after ICE gathering (no trickle), at most 64 KiB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from app.models import Role

MAX_SDP_BYTES = 64 * 1024

WIDGET_FRAMES = frozenset(
    {
        "call.start",
        "call.offer",
        "call.accept",
        "call.decline",
        "call.hangup",
        "call.mute",
        "call.callback",
        "call.ringing",
    }
)
AGENT_FRAMES = frozenset(
    {
        "call.offer",
        "call.accept",
        "call.decline",
        "call.hangup",
        "call.hold",
        "call.mute",
        "call.transfer",
        "call.listen",
        "call.whisper",
        "call.barge",
        "call.dial",
    }
)
SUPERVISOR_FRAMES = frozenset({"call.listen", "call.whisper", "call.barge"})


class CallProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def call_id_of(frame: dict[str, Any]) -> int:
    value = frame.get("call")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CallProtocolError("bad_frame", "`call` must be a call id")
    return value


def opt_int(frame: dict[str, Any], key: str) -> int | None:
    value = frame.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CallProtocolError("bad_frame", f"`{key}` must be a positive integer")
    return value


def sdp_of(frame: dict[str, Any], required: bool = True) -> str | None:
    sdp = frame.get("sdp")
    if sdp is None and not required:
        return None
    if not isinstance(sdp, str) or not sdp.strip():
        raise CallProtocolError("bad_frame", "`sdp` must be the full offer SDP")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise CallProtocolError("too_large", f"`sdp` is larger than {MAX_SDP_BYTES} bytes")
    return sdp


def flag_of(frame: dict[str, Any], key: str, default: bool = True) -> bool:
    value = frame.get(key, default)
    if not isinstance(value, bool):
        raise CallProtocolError("bad_frame", f"`{key}` must be true or false")
    return value


def check_side(frame_type: str, side: str) -> None:
    allowed = WIDGET_FRAMES if side == "widget" else AGENT_FRAMES
    if frame_type not in allowed:
        raise CallProtocolError("bad_frame", f"unknown frame type {frame_type!r}")


@dataclass
class Endpoint:
    """A websocket connection on some node, serialisable so signaling can cross the bus."""

    conn: str
    node: str
    side: str  # widget | agent
    workspace_id: int
    name: str = ""
    # console
    agent_id: int | None = None
    actor_type: str | None = None
    actor_id: int | None = None
    role: str | None = None
    team_ids: list[int] = field(default_factory=list)
    # widget
    contact_id: int | None = None
    visitor_id: str | None = None
    external_id: str | None = None
    inbox_id: int | None = None
    ticket_id: int | None = None
    locale: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def is_supervisor(self) -> bool:
        return self.role is not None and Role(self.role).at_least(Role.supervisor)


def state_frame(call_id: int, state: str, **extra: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "call.state", "call": call_id, "state": state}
    frame.update({k: v for k, v in extra.items() if v is not None})
    return frame


def error_frame(code: str, message: str, call_id: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "call.error", "code": code, "message": message}
    if call_id is not None:
        frame["call"] = call_id
    return frame
