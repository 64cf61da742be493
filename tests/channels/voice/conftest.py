"""Fixtures for the call tests: the running app with fast voice timers, a widget inbox,
console cookies, and helpers that place a call with aiortc peers over the real websockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from call_clients import ORIGIN, Console, Widget, session_cookie
from voice_peers import TonePeer, peak_hz

from app.context import AppContext
from app.models import Agent, Inbox, Workspace
from app.services.agent_auth import password_fingerprint
from app.settings import Settings
from channels.voice.hold import HOLD_NOTES_HZ
from tests.conftest import LiveServer, SeededWorkspace, make_widget_inbox

CUSTOMER_HZ = 300.0
AGENT_HZ = 1000.0
AGENT2_HZ = 1400.0
SUPERVISOR_HZ = 1800.0


def is_hold(pcm: np.ndarray[Any, Any]) -> bool:
    return min(abs(peak_hz(pcm) - f) for f in HOLD_NOTES_HZ) < 10


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "chat_route_interval_seconds": 0.05,
        "chat_heartbeat_seconds": 0.5,
        "voice_acd_interval_seconds": 0.1,
        "voice_ring_timeout_seconds": 3.0,
        "voice_rejoin_grace_seconds": 3.0,
        "smtp_enabled": False,
    }


@pytest.fixture
async def inbox(ctx: AppContext, workspace: SeededWorkspace) -> Inbox:
    return await make_widget_inbox(
        ctx, workspace.id, workspace.team_ids["Support"], [ORIGIN], name="Website"
    )


@dataclass
class Phone:
    """One party of a call: its websocket client and its aiortc peer."""

    ws: Widget | Console
    peer: TonePeer | None = None


class CallKit:
    """Opens widgets and consoles against the live server and cleans them up."""

    def __init__(
        self,
        live: LiveServer,
        settings: Settings,
        ctx: AppContext,
        workspace: SeededWorkspace,
        inbox: Inbox,
    ) -> None:
        self.live, self.settings, self.ctx = live, settings, ctx
        self.workspace, self.inbox = workspace, inbox
        self.clients: list[Widget | Console] = []
        self.peers: list[TonePeer] = []

    async def enable_recording(self) -> None:
        """Turn on the workspace's call recording (the widget then shows the notice)."""
        async with self.ctx.uow() as uow:
            ws = await uow.session.get(Workspace, self.workspace.id)
            assert ws is not None
            ws.settings = {**ws.settings, "recording": True}
            uow.session.add(ws)
            await uow.commit()

    async def cookie(self, role: str) -> str:
        agent_id = self.workspace.agent_ids[role]
        async with self.ctx.sessions() as session:
            agent = await session.get(Agent, agent_id)
            assert agent is not None
            return session_cookie(
                self.settings, agent_id, agent.workspace_id, password_fingerprint(agent)
            )

    async def widget(self, token: str | None = None) -> Widget:
        assert self.inbox.public_key
        w = await Widget.open(self.live.ws_url, self.inbox.public_key, token)
        self.clients.append(w)
        return w

    async def console(self, role: str, presence: str = "available") -> Console:
        c = await Console.open(self.live.ws_url, await self.cookie(role), presence)
        self.clients.append(c)
        return c

    def peer(self, freq: float) -> TonePeer:
        p = TonePeer(freq)
        self.peers.append(p)
        return p

    async def start_call(self, widget: Widget, **extra: Any) -> tuple[int, TonePeer]:
        """The customer presses Call: returns (call id, connected customer peer)."""
        peer = self.peer(CUSTOMER_HZ)
        mark = widget.mark()
        await widget.send({"type": "call.start", "sdp": await peer.offer(), **extra})
        answer = await widget.wait("call.answer", after=mark)
        await peer.accept(answer["sdp"])
        await peer.wait_connected()
        return int(answer["call"]), peer

    async def accept(self, console: Console, call: int, freq: float = AGENT_HZ) -> TonePeer:
        """The console answers a ringing call with its own leg."""
        await console.state("offered", call)
        peer = self.peer(freq)
        mark = console.mark()
        await console.send({"type": "call.accept", "call": call, "sdp": await peer.offer()})
        answer = await console.wait("call.answer", lambda f: f["call"] == call, after=mark)
        await peer.accept(answer["sdp"])
        await peer.wait_connected()
        return peer

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()
        for client in self.clients:
            await client.close()


@pytest.fixture
async def kit(
    live_server: LiveServer,
    settings: Settings,
    ctx: AppContext,
    workspace: SeededWorkspace,
    inbox: Inbox,
) -> AsyncIterator[CallKit]:
    k = CallKit(live_server, settings, ctx, workspace, inbox)
    yield k
    await k.close()


Waiter = Callable[[], Awaitable[None]]
