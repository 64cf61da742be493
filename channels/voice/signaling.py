"""Call signaling over the widget and console websockets, routed to the node owning the media.

`VoiceChannel` is both a lifespan service and the `call.` frame handler registered in
channels/base. A frame about a call is handled where the call's media lives: here when
this node owns it, otherwise it is forwarded over the bus to `voice.node.<owner>`.
Frames for clients go straight to a local connection, or over `voice.fanout` to the node
holding it; `voice.fanout` also carries rings (to an agent or a contact, wherever their
consoles and widgets are connected) and connection closes (a call may depend on a
connection of another node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from app.bus.base import Subscription
from app.context import AppContext
from app.models import Call
from app.models.call import LIVE_CALL_STATES
from app.services.errors import ServiceError
from app.tasks import cancel_and_wait
from channels.base import ClientSession, register_frame_handler
from channels.voice import continuity
from channels.voice.controller import CallController
from channels.voice.protocol import CallProtocolError, Endpoint, call_id_of, check_side, error_frame

log = logging.getLogger(__name__)

FANOUT_TOPIC = "voice.fanout"


def node_topic(node: str) -> str:
    return f"voice.node.{node}"


class VoiceChannel:
    name = "voice"
    prefix = "call."

    def __init__(self, ctx: AppContext, node: str | None = None) -> None:
        self.ctx = ctx
        self.node = node or f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.sessions: dict[str, tuple[ClientSession, Endpoint]] = {}
        # Connections that took part in signaling: only their closes matter to other nodes.
        self.involved: set[str] = set()
        self._pings: dict[str, asyncio.Future[None]] = {}
        self.controller = CallController(ctx, self)
        self._sub: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None

    # -- lifespan ---------------------------------------------------------------------

    async def start(self, ctx: AppContext) -> None:
        self._sub = await ctx.bus.subscribe([FANOUT_TOPIC, node_topic(self.node)], maxsize=10000)
        self._pump = ctx.spawn(self._run_pump(), "voice-signaling")
        await self.controller.start()
        register_frame_handler(ctx, self)

    async def stop(self) -> None:
        await self.controller.stop()
        await cancel_and_wait(self._pump)
        if self._sub is not None:
            await self._sub.close()

    # -- connections ------------------------------------------------------------------

    def endpoint_of(self, session: ClientSession) -> Endpoint:
        ep = Endpoint(
            conn=session.conn_id,
            node=self.node,
            side=session.side,
            workspace_id=session.workspace_id,
            name=session.name,
        )
        if session.visitor is not None:
            ep.contact_id = session.visitor.contact_id
            ep.visitor_id = session.visitor.visitor_id
            ep.external_id = session.visitor.external_id
            ep.inbox_id = session.visitor.inbox_id
            ep.ticket_id = session.ticket_id
            ep.locale = session.locale
        if session.actor is not None:
            actor = session.actor
            ep.name = actor.name
            ep.agent_id = actor.agent_id
            ep.actor_type = actor.type.value
            ep.actor_id = actor.id
            ep.role = actor.role.value
            ep.team_ids = sorted(actor.team_ids)
        return ep

    async def on_open(self, session: ClientSession) -> None:
        self.sessions[session.conn_id] = (session, self.endpoint_of(session))
        if session.side == "agent":
            # A console that (re)connects hears about calls it may pick up or rejoin.
            await continuity.announce_to(self.controller, self.endpoint_of(session))

    async def on_close(self, session: ClientSession) -> None:
        self.sessions.pop(session.conn_id, None)
        if session.conn_id not in self.involved:
            return
        self.involved.discard(session.conn_id)
        await continuity.connection_closed(self.controller, session.conn_id)
        await self.ctx.bus.publish(
            FANOUT_TOPIC, {"type": "call.closed", "origin": self.node, "conn": session.conn_id}
        )

    async def on_frame(self, session: ClientSession, frame: dict[str, Any]) -> None:
        kind = str(frame.get("type"))
        call_id = frame.get("call") if isinstance(frame.get("call"), int) else None
        try:
            check_side(kind, session.side)
            ep = self.endpoint_of(session)
            self.sessions[session.conn_id] = (session, ep)
            self.involved.add(session.conn_id)
            if kind in ("call.start", "call.dial"):
                await self.controller.handle(ep, frame)
                if session.visitor is not None and session.visitor.contact_id is None:
                    # A first call created the visitor's contact: later frames need it now,
                    # not once the chat connection has processed the bus notice.
                    session.visitor.contact_id = ep.contact_id
                return
            call_id = call_id_of(frame)
            await self.route(ep, call_id, frame)
        except (CallProtocolError, ServiceError) as exc:
            code = exc.code
            await session.send(error_frame(code, exc.message, call_id))
        except Exception:
            log.exception("call frame %s failed", kind)
            await session.send(error_frame("error", "the call could not be updated", call_id))

    async def route(self, ep: Endpoint, call_id: int, frame: dict[str, Any]) -> None:
        """Handle here if this node owns the call's media, else forward to its owner."""
        if call_id in self.controller.live:
            await self.controller.handle(ep, frame)
            return
        async with self.ctx.read_sessions() as session:
            call = await session.get(Call, call_id)
        if call is None or call.workspace_id != ep.workspace_id:
            raise CallProtocolError("not_found", "call not found")
        if call.state not in LIVE_CALL_STATES:
            raise CallProtocolError("ended", "the call has ended")
        if call.owner_node == self.node:
            # Ours in the database but not in memory: this process restarted mid-call.
            await self.controller.end_orphan(call_id)
            raise CallProtocolError("ended", "the call was lost")
        await self.ctx.bus.publish(
            node_topic(call.owner_node),
            {"type": "call.rpc", "origin": self.node, "from": ep.to_dict(), "frame": frame},
        )

    async def owner_alive(self, node: str, wait: float = 1.5) -> bool:
        """Whether another node's voice channel answers on the bus (it owns media)."""
        nonce = uuid.uuid4().hex
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[nonce] = future
        try:
            await self.ctx.bus.publish(
                node_topic(node), {"type": "call.ping", "origin": self.node, "nonce": nonce}
            )
            async with asyncio.timeout(wait):
                await future
            return True
        except TimeoutError:
            return False
        finally:
            self._pings.pop(nonce, None)

    # -- delivery ----------------------------------------------------------------------

    async def deliver(self, to: dict[str, Any], frame: dict[str, Any]) -> None:
        """Send to every connection matching `to` ({conn}, {agent}, {contact}), anywhere."""
        delivered = await self._deliver_local(to, frame)
        if to.get("conn") and delivered:
            return
        await self.ctx.bus.publish(
            FANOUT_TOPIC, {"type": "call.deliver", "origin": self.node, "to": to, "frame": frame}
        )

    async def send_to(self, ep: Endpoint, frame: dict[str, Any]) -> None:
        await self.deliver({"conn": ep.conn}, frame)

    async def _deliver_local(self, to: dict[str, Any], frame: dict[str, Any]) -> int:
        count = 0
        for session, ep in list(self.sessions.values()):
            if to.get("conn") is not None:
                hit = ep.conn == to["conn"]
            elif to.get("agent") is not None:
                hit = ep.agent_id == to["agent"] and ep.side == "agent"
            elif to.get("contact") is not None:
                contact = session.visitor.contact_id if session.visitor else None
                hit = (
                    ep.side == "widget"
                    and contact == to["contact"]
                    and ep.workspace_id == to.get("workspace")
                )
            else:
                hit = False
            if hit:
                count += 1
                self.involved.add(ep.conn)
                with contextlib.suppress(Exception):
                    await session.send(frame)
        return count

    async def _run_pump(self) -> None:
        assert self._sub is not None
        while True:
            message = await self._sub.get()
            try:
                await self._on_bus(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("voice bus message failed")

    async def _on_bus(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if message.get("origin") == self.node and kind != "call.rpc":
            return
        if kind == "call.deliver":
            await self._deliver_local(message.get("to") or {}, message.get("frame") or {})
        elif kind == "call.closed":
            await continuity.connection_closed(self.controller, str(message.get("conn")))
        elif kind == "call.ping":
            await self.ctx.bus.publish(
                node_topic(str(message.get("origin"))),
                {"type": "call.pong", "origin": self.node, "nonce": message.get("nonce")},
            )
        elif kind == "call.pong":
            future = self._pings.get(str(message.get("nonce")))
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "call.rpc":
            ep = Endpoint.from_dict(message.get("from") or {})
            frame = message.get("frame") or {}
            try:
                await self.controller.handle(ep, frame)
            except (CallProtocolError, ServiceError) as exc:
                await self.send_to(ep, error_frame(exc.code, exc.message, frame.get("call")))
