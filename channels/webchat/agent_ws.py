"""`/console/ws`: the agents' websocket — streams with cursors, replies, notes, presence."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket

from app.bus.base import Message
from app.events import UnitOfWork, contact_topic, workspace_topic
from app.models import ActorType, Ticket, TicketEvent
from app.services import presence, tokens
from app.services.actors import Actor
from app.services.attachments import check_attachments
from app.services.errors import ServiceError
from app.services.origins import normalize_origin
from app.services.routing import assigned_open_tickets
from app.services.tickets import can_see, do_note, do_reply, get_ticket
from app.web.origin import allowed_origins
from app.web.sessions import session_actor
from channels.base import ClientSession, frame_handler, open_session
from channels.webchat.connection import Closed, Connection
from channels.webchat.console_router import ConsoleRouter, TrackedSet
from channels.webchat.hub import WebchatHub
from channels.webchat.protocol import (
    CLOSE_POLICY,
    ProtocolError,
    Subscribe,
    ack,
    agent_event,
    error_frame,
    parse_agent_write,
    parse_read,
    parse_subscribe,
    parse_typing,
)

log = logging.getLogger(__name__)

# Replies and notes of one connection waiting for their commit; past that, reading waits.
WRITES_IN_FLIGHT = 64


def agent_endpoint(websocket: WebSocket) -> Coroutine[Any, Any, None]:
    # Returns the connection's coroutine rather than awaiting it: one frame less
    # held for the life of every connection.
    hub: WebchatHub = websocket.app.state.webchat
    return AgentConnection(hub, websocket).run()


async def authenticate(
    websocket: WebSocket, public_url: str, sessions: Any
) -> tuple[Actor | None, str]:
    """(actor, refusal reason). Bearer token for integrations, else the session cookie;
    a cookie rides along on cross-site requests, so then Origin must be ours."""
    header = websocket.headers.get("authorization", "")
    async with sessions() as session:
        if header.lower().startswith("bearer "):
            actor = await tokens.authenticate(session, header[7:].strip())
            return actor, "" if actor else "not signed in"
        origin = websocket.headers.get("origin")
        if origin is not None and normalize_origin(origin) not in allowed_origins(
            websocket, public_url
        ):
            return None, "origin not allowed"
        actor = await session_actor(websocket, session)
        return actor, "" if actor else "not signed in"


def _assignee_change(message: Message) -> dict[str, Any] | None:
    """`{"from": id, "to": id}` of an assignment event, if it changed the assignee."""
    changes = (message.get("event") or {}).get("payload", {}).get("changes", {})
    change = changes.get("assignee_id")
    return change if isinstance(change, dict) else None


class AgentConnection(Connection):
    customer_view = False
    queue_size = 5000

    def __init__(self, hub: WebchatHub, websocket: WebSocket) -> None:
        super().__init__(hub, websocket)
        self.actor: Actor | None = None
        self.conn_id = str(uuid.uuid4())
        self.present = False
        # What this console follows; the workspace's ConsoleRouter keeps an index of it.
        self.router: ConsoleRouter | None = None
        self._workspace = False
        self._assigned_stream = False
        self.teams: set[int] = TrackedSet(self._streams_changed)
        self.tickets: set[int] = TrackedSet(self._ticket_changed)
        self.assigned: set[int] = TrackedSet(self._ticket_changed)
        # Tickets whose assignment to this agent was published but maybe not yet
        # delivered: `_wanted` lets their events through meanwhile.
        self.claimed: set[int] = TrackedSet(self._ticket_changed)
        self.pending_cursors: dict[int, int] = {}
        self.ticket_info: dict[int, tuple[int | None, int | None]] = {}
        self.writes: set[asyncio.Task[None]] = set()  # queued replies and notes

    async def run(self) -> None:
        actor, reason = await authenticate(self.ws, self.ctx.settings.public_url, self.hub.session)
        if actor is None:
            await self.refuse(CLOSE_POLICY, reason)
            return
        self.actor = actor
        await self.serve()

    @property
    def workspace(self) -> bool:
        return self._workspace

    @workspace.setter
    def workspace(self, value: bool) -> None:
        self._workspace = value
        self._streams_changed(None)

    @property
    def assigned_stream(self) -> bool:
        return self._assigned_stream

    @assigned_stream.setter
    def assigned_stream(self, value: bool) -> None:
        self._assigned_stream = value
        self._streams_changed(None)

    def follows(self, ticket: int) -> bool:
        """Whether this console wants every message of `ticket` (the router's index)."""
        return ticket in self.tickets or ticket in self.assigned or ticket in self.claimed

    def _ticket_changed(self, ticket: int | None) -> None:
        if self.router is not None:
            self.router.ticket_changed(self, ticket)

    def _streams_changed(self, _team: int | None) -> None:
        if self.router is not None:
            self.router.streams_changed(self)

    async def after_close(self) -> None:
        if self.router is not None:
            router, self.router = self.router, None
            await self.hub.consoles.leave(self, router)
        for task in self.writes:
            task.cancel()  # and with it its write, unless a transaction has it already
        if self.present:
            try:
                conn_id, ttl = self.conn_id, self.hub.ttl
                await self.hub.writes.run(lambda uow: presence.do_disconnect(uow, conn_id, ttl))
            except Exception:
                log.exception("presence disconnect failed")
            self.hub.kick()

    @property
    def agent_id(self) -> int | None:
        return self.actor.agent_id if self.actor else None

    async def session(self) -> None:
        assert self.actor is not None
        data = await self.receive_hello()
        if not data or data.get("type") != "hello":
            await self.close(CLOSE_POLICY, "hello expected")
            return
        await self.serve_frames(lambda: self._start(data), self._on_frame)

    async def _start(self, data: dict[str, Any]) -> None:
        """Everything between the hello and the first frame: presence and welcome."""
        assert self.actor is not None
        status = data.get("presence", presence.AVAILABLE)
        try:
            status = presence.check_status(status)
        except ServiceError:
            status = presence.AVAILABLE
        # No topic of its own: the workspace's router offers it what it may want.
        self.sub = await self.ctx.bus.subscribe([], maxsize=self.queue_size)
        self.sub.accept = self._wanted
        self.router = await self.hub.consoles.join(self, self.actor.workspace_id)
        shown = presence.OFFLINE
        if self.agent_id is not None:
            connect = functools.partial(
                presence.do_connect,
                conn_id=self.conn_id,
                workspace_id=self.actor.workspace_id,
                agent_id=self.agent_id,
                node=self.hub.node,
                status=status,
                ttl=self.hub.ttl,
            )
            shown = await self.hub.writes.run(connect)
            self.present = True
            self.hub.kick()
        await self.send(
            {
                "type": "welcome",
                "agent": {
                    "id": self.actor.id,
                    "type": self.actor.type.value,
                    "name": self.actor.name,
                    "role": self.actor.role.value,
                    "team_ids": sorted(self.actor.team_ids),
                },
                "presence": shown,
            }
        )
        self.frame_session = ClientSession(
            "agent", self.actor.workspace_id, self.send, actor=self.actor
        )
        self.start_pump()
        await open_session(self.ctx, self.frame_session)

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self._handle(frame)
        except ProtocolError as exc:
            await self.send(exc.frame())
        except ServiceError as exc:
            await self.send(error_frame(exc.code, exc.message, frame.get("client_id")))

    # -- scope -----------------------------------------------------------------------

    def _team_visible(self, team: int | None) -> bool:
        assert self.actor is not None
        return self.actor.sees_all_tickets or team is None or team in self.actor.team_ids

    def _in_scope(self, ticket: int, team: int | None) -> bool:
        if ticket in self.tickets or ticket in self.assigned:
            return True
        # The stream test first: it is cheaper, and it rules out most of the
        # workspace's traffic for a console that follows only its own tickets.
        if not (self.workspace or (team is not None and team in self.teams)):
            return False
        return self._team_visible(team)

    # -- bus -> agent -----------------------------------------------------------------

    def _may_see(self, ticket: int, team: int | None) -> bool:
        return ticket in self.claimed or self._in_scope(ticket, team)

    def _wanted(self, message: Message) -> bool:
        """Whether `on_bus` could do anything with `message`; runs in the publisher's call.

        Every agent connection of a workspace hears all of its traffic: without this,
        each chat message would wake every console only for most to drop it. What is
        dropped here is committed already (publishing follows the commit), so a later
        subscription's replay from the database still finds it.
        """
        try:
            kind = message.get("type")
            if kind == "ticket.event":
                ticket = int(message["ticket"])
                if self.assigned_stream and message.get("kind") == "assignment":
                    change = _assignee_change(message)
                    if change and change.get("to") == self.agent_id:
                        self.claimed.add(ticket)
                    elif change:
                        self.claimed.discard(ticket)
                    return True
                return self._may_see(ticket, message.get("team"))
            if kind in ("ticket.created", "ticket.updated", "ticket.deleted"):
                # ticket.updated follows its assignment event in the same commit, before
                # the pump has taken the ticket into `assigned`: `claimed` lets it pass.
                ticket_row = message.get("ticket") or {}
                return self._may_see(int(ticket_row.get("id") or 0), ticket_row.get("team_id"))
            if kind in ("typing", "read"):
                return self._may_see(int(message.get("ticket") or 0), message.get("team"))
            return True
        except Exception:  # a malformed message is on_bus's business, never the publisher's
            return True

    async def on_bus(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "ticket.event":
            await self._ticket_event(message)
        elif kind in ("ticket.created", "ticket.updated", "ticket.deleted"):
            ticket = message.get("ticket") or {}
            if self._in_scope(int(ticket.get("id") or 0), ticket.get("team_id")):
                await self.send({"type": "ticket", "action": kind.split(".")[1], "ticket": ticket})
        elif kind in ("typing", "read"):
            author = message.get("author") or {}
            if author.get("type") == "agent" and author.get("id") == self.agent_id:
                return
            if self._in_scope(int(message.get("ticket") or 0), message.get("team")):
                frame = {k: v for k, v in message.items() if k != "team"}
                await self.send(frame)
        elif kind == "presence":
            await self.send(
                {"type": "presence", "agent": message.get("agent"), "status": message.get("status")}
            )

    async def _ticket_event(self, message: Message) -> None:
        ticket, seq, team = int(message["ticket"]), int(message["seq"]), message.get("team")
        released = False
        if self.assigned_stream and message.get("kind") == "assignment":
            change = _assignee_change(message)
            if change and change.get("to") == self.agent_id:
                self.assigned.add(ticket)
            elif change and ticket in self.assigned:
                released = True
        if not self._in_scope(ticket, team):
            return
        if ticket not in self.cursors:
            start = self.pending_cursors.pop(ticket, None)
            if start is None:
                # Tickets this agent must see whole start at 0; others from this event on.
                whole = ticket in self.assigned or ticket in self.tickets
                start = 0 if whole else seq - 1
            self.cursors.start(ticket, start)
        await self.on_ticket_event(message)
        if released:
            self.assigned.discard(ticket)

    async def emit(self, event: dict[str, Any], team: int | None) -> None:
        await self.send(agent_event(event, team))

    # -- agent -> server ---------------------------------------------------------------

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind in ("reply", "note"):
            await self._write(frame)
        elif kind == "subscribe":
            sub = parse_subscribe(frame)
            async with self.deliver_lock:
                await self._subscribe(sub)
        elif kind == "unsubscribe":
            sub = parse_subscribe(frame)
            self._unsubscribe(sub)
            await self.send({"type": "unsubscribed", "stream": sub.stream})
        elif kind == "typing":
            await self._signal(frame, {"type": "typing", "typing": parse_typing(frame)})
        elif kind == "read":
            await self._signal(frame, {"type": "read", "seq": parse_read(frame), "by": "agent"})
        elif kind == "presence":
            await self._presence(frame.get("status"))
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif (handler := frame_handler(self.ctx, kind)) is not None and self.frame_session:
            await handler.on_frame(self.frame_session, frame)
        else:
            raise ProtocolError("bad_frame", f"unknown frame type {kind!r}")

    async def _write(self, frame: dict[str, Any]) -> None:
        assert self.actor is not None
        write = parse_agent_write(frame, self.limits)
        wait = self.hub.agent_buckets.take(("a", self.actor.type.value, self.actor.id))
        if wait > 0:
            await self.send(
                error_frame(
                    "rate_limited", "slow down", write.client_id, retry_after=round(wait, 2)
                )
            )
            return
        actor = self.actor

        async def store(uow: UnitOfWork) -> TicketEvent:
            if write.kind == "reply":
                payload = {"attachments": write.attachments} if write.attachments else None
                if write.attachments:
                    await check_attachments(uow.session, actor, write.ticket, write.attachments)
                event, _ = await do_reply(
                    uow,
                    actor,
                    write.ticket,
                    body=write.body,
                    client_id=write.client_id,
                    payload=payload,
                )
            else:
                event, _ = await do_note(
                    uow, actor, write.ticket, body=write.body, client_id=write.client_id
                )
            return event

        # Queued now, answered when committed: the next frames are read meanwhile, so an
        # agent's burst of replies (say, the resends after a reconnect) shares one
        # transaction instead of waiting for one commit each. The queue keeps their
        # order. When the connection drops, what has not reached a transaction yet is
        # dropped too (the agent resends it): kept, a flaky network would fill the
        # queue with copies that all cost a lookup.
        committed = self.hub.writes.start(store, size=len(write.body))
        task = asyncio.create_task(self._answer(committed, write.kind, write.client_id))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)
        if len(self.writes) >= WRITES_IN_FLIGHT:
            await asyncio.wait(self.writes, return_when=asyncio.FIRST_COMPLETED)

    async def _answer(
        self, committed: asyncio.Future[TicketEvent], kind: str, client_id: str
    ) -> None:
        """The ack (or error) of a queued write, once its transaction ended."""
        try:
            event = await self.stored(committed, client_id, f"an agent's {kind}")
            if event is not None:
                await self.send(ack(client_id, event.ticket_id, event.seq))
        except Closed:
            pass  # the agent resends unacknowledged writes on its next connection

    async def _subscribe(self, sub: Subscribe) -> None:
        assert self.actor is not None
        replay: list[tuple[int, int]] = []
        async with self.hub.session() as session:
            if sub.stream == "ticket":
                assert sub.ticket is not None
                await get_ticket(session, self.actor, sub.ticket)
                self.tickets.add(sub.ticket)
                replay.append((sub.ticket, sub.after_seq))
            elif sub.stream == "assigned":
                if self.agent_id is None:
                    raise ProtocolError("forbidden", "only agents have assigned tickets")
                self.assigned_stream = True
                held = await assigned_open_tickets(session, self.actor.workspace_id, self.agent_id)
                for ticket_id in held:
                    self.assigned.add(ticket_id)
                    replay.append((ticket_id, sub.cursors.get(ticket_id, 0)))
            else:
                if sub.stream == "team":
                    assert sub.team is not None
                    if not self._team_visible(sub.team):
                        raise ProtocolError("forbidden", "not a team of yours")
                    self.teams.add(sub.team)
                else:
                    self.workspace = True
                for ticket_id, after in sub.cursors.items():
                    ticket = await session.get(Ticket, ticket_id)
                    if ticket is not None and can_see(self.actor, ticket):
                        replay.append((ticket_id, after))
            for ticket_id, after in sub.cursors.items():
                self.pending_cursors.setdefault(ticket_id, after)
        await self.send(
            {"type": "subscribed", "stream": sub.stream, "ticket": sub.ticket, "team": sub.team}
        )
        for ticket_id, after in replay:
            self.pending_cursors.pop(ticket_id, None)
            self.cursors.start(ticket_id, after)
            await self.catch_up(ticket_id)

    def _unsubscribe(self, sub: Subscribe) -> None:
        if sub.stream == "ticket" and sub.ticket is not None:
            self.tickets.discard(sub.ticket)
        elif sub.stream == "team" and sub.team is not None:
            self.teams.discard(sub.team)
        elif sub.stream == "workspace":
            self.workspace = False
        elif sub.stream == "assigned":
            self.assigned_stream = False
            self.assigned.clear()
            self.claimed.clear()

    async def _ticket_info(self, ticket_id: int) -> tuple[int | None, int | None]:
        """(contact, team) of a ticket the agent may see; cached per connection."""
        assert self.actor is not None
        if ticket_id not in self.ticket_info:
            async with self.hub.session() as session:
                ticket = await get_ticket(session, self.actor, ticket_id)
            if len(self.ticket_info) > 1000:
                self.ticket_info.clear()
            self.ticket_info[ticket_id] = (ticket.contact_id, ticket.team_id)
        return self.ticket_info[ticket_id]

    async def _signal(self, frame: dict[str, Any], signal: dict[str, Any]) -> None:
        assert self.actor is not None
        ticket = frame.get("ticket")
        if isinstance(ticket, bool) or not isinstance(ticket, int):
            raise ProtocolError("bad_frame", "`ticket` is required")
        contact, team = await self._ticket_info(ticket)
        author_type = "agent" if self.actor.type in (ActorType.agent, ActorType.api) else "system"
        signal.update(
            ticket=ticket,
            team=team,
            author={"type": author_type, "id": self.agent_id, "name": self.actor.name},
        )
        ws = self.actor.workspace_id
        if contact is not None:
            await self.ctx.bus.publish(contact_topic(ws, contact), signal)
        await self.ctx.bus.publish(workspace_topic(ws), signal)

    async def _presence(self, status: object) -> None:
        if not self.present or self.agent_id is None:
            raise ProtocolError("forbidden", "presence is for agents signed in to the console")
        try:
            checked = presence.check_status(status)
        except ServiceError as exc:
            raise ProtocolError("bad_frame", exc.message) from None
        conn_id, ttl = self.conn_id, self.hub.ttl
        shown = await self.hub.writes.run(
            lambda uow: presence.do_set_status(uow, conn_id, checked, ttl)
        )
        self.hub.kick()
        await self.send({"type": "presence", "agent": self.agent_id, "status": shown})
