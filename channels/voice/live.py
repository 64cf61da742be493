"""The in-memory side of a call on the node that owns its media."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from channels.voice.media import CallMedia
from channels.voice.protocol import Endpoint

CUSTOMER = "customer"


@dataclass
class Consult:
    """A warm transfer in progress: the target agent rung, then talking to the agent."""

    agent_id: int
    endpoint: Endpoint | None = None
    leg: str | None = None


@dataclass
class LiveCall:
    id: int
    workspace_id: int
    ticket_id: int
    contact_id: int | None
    team_id: int | None
    direction: str
    media: CallMedia
    state: str = "queued"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    customer: Endpoint | None = None
    agent: Endpoint | None = None
    agent_id: int | None = None
    agent_name: str = ""
    agent_leg: str | None = None
    agent_lost: bool = False
    # Whom the call rings now and why: inbound | transfer | consult | callback
    offered_to: int | None = None
    offer_kind: str | None = None
    consult: Consult | None = None
    supervisors: dict[str, tuple[Endpoint, str]] = field(default_factory=dict)
    timers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    started: float = 0.0
    callback_offered: bool = False
    callback_id: int | None = None
    ring_acked: bool = False
    outcome: str | None = None  # outbound: connected | declined | no_answer | offline
    recording: bool = False
    recording_path: Path | None = None
    recording_key: str | None = None
    position: int | None = None
    legs_seq: int = 0
    ended: bool = False

    def next_leg(self, prefix: str) -> str:
        self.legs_seq += 1
        return f"{prefix}-{self.legs_seq}"

    def cancel_timer(self, name: str) -> None:
        task = self.timers.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def endpoints(self) -> list[Endpoint]:
        out = [e for e in (self.customer, self.agent) if e is not None]
        if self.consult is not None and self.consult.endpoint is not None:
            out.append(self.consult.endpoint)
        out.extend(ep for ep, _ in self.supervisors.values())
        return out
