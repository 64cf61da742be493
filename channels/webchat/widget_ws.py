"""`/widget/ws`: the visitor's websocket (protocol in docs/widget-protocol.md)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket

from app.bus.base import Message
from app.events import UnitOfWork, contact_topic, workspace_topic
from app.group_commit import Together
from app.models import Inbox, Ticket
from app.services import chat, visitors
from app.services.chat import ChatVisitor, MessageResult, VisitorMessage
from app.services.chat_batch import do_visitor_messages
from app.services.origins import origin_allowed
from app.services.visitors import IdentityError
from channels.base import ClientSession, frame_handler, open_session
from channels.webchat.connection import Connection
from channels.webchat.cursors import Cursors
from channels.webchat.hub import WebchatHub
from channels.webchat.protocol import (
    CLOSE_POLICY,
    Hello,
    ProtocolError,
    ack,
    error_frame,
    identity_of,
    parse_hello,
    parse_read,
    parse_typing,
    parse_visitor_message,
    widget_event,
)

log = logging.getLogger(__name__)

OPEN_STATES = {"new", "open", "pending"}


class _StoreMessage(Together[MessageResult]):
    """A widget message for the hub's group commit; the messages of one batch are
    stored together (app.services.chat_batch)."""

    def __init__(self, message: VisitorMessage, presence_ttl: float) -> None:
        self.message = message
        self.presence_ttl = presence_ttl

    @classmethod
    async def write_many(cls, uow: UnitOfWork, works: list[Any]) -> list[Any]:
        messages = [work.message for work in works]
        return await do_visitor_messages(uow, messages, presence_ttl=works[0].presence_ttl)


def widget_endpoint(websocket: WebSocket) -> Coroutine[Any, Any, None]:
    # Returns the connection's coroutine rather than awaiting it: one frame less
    # held for the life of every connection.
    hub: WebchatHub = websocket.app.state.webchat
    return WidgetConnection(hub, websocket).run()


class WidgetConnection(Connection):
    customer_view = True
    queue_size = 256
    __slots__ = ("current", "ignored", "inbox", "last_state", "name", "token", "visitor")

    def __init__(self, hub: WebchatHub, websocket: WebSocket) -> None:
        super().__init__(hub, websocket)
        self.inbox: Inbox | None = None
        self.visitor: ChatVisitor | None = None
        self.token = ""
        self.current: int | None = None
        self.ignored: set[int] = set()
        self.last_state: tuple[Any, ...] | None = None
        self.name = "Visitor"

    async def run(self) -> None:
        inbox = await self.hub.inbox(self.ws.query_params.get("inbox"))
        if inbox is None or inbox.id is None:
            await self.refuse(CLOSE_POLICY, "unknown inbox")
            return
        if not origin_allowed(self.ws.headers.get("origin"), list(inbox.allowed_origins)):
            await self.refuse(CLOSE_POLICY, "origin not allowed")
            return
        self.inbox = inbox
        await self.serve()

    async def session(self) -> None:
        assert self.inbox is not None and self.inbox.id is not None
        try:
            hello = parse_hello(await self.receive_hello() or {})
        except ProtocolError:
            await self.close(CLOSE_POLICY, "hello expected")
            return
        await self.serve_frames(lambda: self._start(hello), self._on_frame)

    async def _start(self, hello: Hello) -> None:
        """Everything between the hello and the first frame: identity, welcome, replay."""
        assert self.inbox is not None and self.inbox.id is not None
        secret = self.ctx.settings.secret
        ws_id = self.inbox.workspace_id
        known = visitors.read_token(secret, hello.token, ws_id)
        if known is None:
            self.token, visitor_id = visitors.issue_token(secret, ws_id)
        else:
            self.token, visitor_id = hello.token or "", known.visitor_id
        self.visitor = ChatVisitor(
            workspace_id=ws_id, inbox_id=self.inbox.id, visitor_id=visitor_id
        )
        self.frame_session = ClientSession("widget", ws_id, self.send, visitor=self.visitor)
        self.frame_session.locale = hello.locale
        # Subscribe before reading anything: what is published from now on is buffered.
        self.sub = await self.ctx.bus.subscribe(
            [visitors.visitor_topic(ws_id, visitor_id)], maxsize=self.queue_size
        )
        problem: IdentityError | None = None
        if hello.identity is not None:
            try:
                await self._identify(
                    hello.identity.id,
                    hello.identity.expires,
                    hello.identity.hash,
                    hello.identity.name,
                    hello.identity.email,
                )
            except IdentityError as exc:
                problem = exc
        async with self.deliver_lock:
            await self._welcome(hello.after_seq, hello.ticket)
        if problem is not None:
            await self.send(error_frame(problem.code, problem.message))
        self.start_pump()
        await open_session(self.ctx, self.frame_session)

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self._handle(frame)
        except ProtocolError as exc:
            await self.send(exc.frame())

    # -- session -------------------------------------------------------------------

    async def _welcome(self, after_seq: int | None, ticket_hint: int | None) -> None:
        """Welcome, then the replay after the cursor (caller holds deliver_lock)."""
        assert self.visitor is not None and self.inbox is not None and self.sub is not None
        visitor, inbox = self.visitor, self.inbox
        async with self.hub.session() as session:
            contact = await chat.visitor_contact(session, visitor)
        if contact is not None and contact.id is not None:
            visitor.contact_id = contact.id
            self.name = contact.name or "Visitor"
            await self.sub.add_topics([contact_topic(visitor.workspace_id, contact.id)])
        async with self.hub.session() as session:
            ticket = await chat.open_chat_ticket(
                session, visitor.workspace_id, inbox.id or 0, visitor.contact_id
            )
            name = await chat.agent_name(
                session, visitor.workspace_id, ticket.assignee_id if ticket else None
            )
        available = await self.hub.team_available(visitor.workspace_id, inbox.team_id)
        state, agent = self._state_of(ticket, name)
        self.last_state = (ticket.id if ticket else None, state, name)
        await self.send(
            {
                "type": "welcome",
                "token": self.token,
                "contact": chat.contact_summary(contact, visitor.verified),
                "ticket": ticket.id if ticket else None,
                "last_seq": ticket.last_seq if ticket else 0,
                "state": state,
                "agent": agent,
                "agents_available": available,
                "inbox": {
                    "name": inbox.name,
                    "greeting": inbox.greeting,
                    "theme": inbox.theme,
                    "prechat_form": inbox.prechat_form,
                },
            }
        )
        if ticket is None or ticket.id is None:
            return
        after = after_seq or 0
        if (ticket_hint is not None and ticket_hint != ticket.id) or after > ticket.last_seq:
            after = 0  # the cursor belongs to another conversation
        self.current = ticket.id
        self.cursors.start(ticket.id, after)
        await self.catch_up(ticket.id)

    @staticmethod
    def _state_of(
        ticket: Ticket | None, agent_name: str
    ) -> tuple[str | None, dict[str, str] | None]:
        if ticket is None:
            return None, None
        if ticket.status.value not in OPEN_STATES:
            return ticket.status.value, None
        if ticket.assignee_id is not None:
            return "assigned", {"name": agent_name}
        return "waiting", None

    async def _refresh_state(self, ticket_id: int) -> None:
        assert self.visitor is not None
        async with self.hub.session() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                return
            name = await chat.agent_name(session, self.visitor.workspace_id, ticket.assignee_id)
        state, agent = self._state_of(ticket, name)
        key = (ticket_id, state, name)
        if key != self.last_state:
            self.last_state = key
            await self.send({"type": "state", "ticket": ticket_id, "state": state, "agent": agent})

    async def _follow(self, ticket_id: int) -> bool:
        """Whether a ticket seen on the contact topic is a conversation of this widget."""
        assert self.visitor is not None
        if ticket_id in self.cursors:
            return True
        if ticket_id in self.ignored:
            return False
        async with self.hub.session() as session:
            ticket = await session.get(Ticket, ticket_id)
        ok = (
            ticket is not None
            and ticket.inbox_id == self.visitor.inbox_id
            and ticket.contact_id is not None
            and ticket.contact_id == self.visitor.contact_id
        )
        if not ok:
            # Also a ticket that is gone: ids are never given out again (app.models.base).
            self.ignored.add(ticket_id)
            return False
        self.cursors.start(ticket_id, 0)
        self.current = ticket_id
        return True

    async def _adopt_contact(self, contact_id: int) -> None:
        """The visitor's contact now exists (first message, here or in another tab)."""
        assert self.visitor is not None and self.sub is not None and self.inbox is not None
        if self.visitor.contact_id == contact_id and (
            contact_topic(self.visitor.workspace_id, contact_id) in self.sub.topics
        ):
            return
        self.visitor.contact_id = contact_id
        await self.sub.add_topics([contact_topic(self.visitor.workspace_id, contact_id)])
        # Events published before that subscription are read from the database.
        async with self.hub.session() as session:
            ticket = await chat.open_chat_ticket(
                session, self.visitor.workspace_id, self.inbox.id or 0, contact_id
            )
        if ticket is not None and ticket.id is not None and await self._follow(ticket.id):
            await self.catch_up(ticket.id)
            await self._refresh_state(ticket.id)

    # -- bus -> visitor ---------------------------------------------------------------

    async def on_bus(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "ticket.event":
            ticket = int(message["ticket"])
            if not await self._follow(ticket):
                return
            before = self.cursors.get(ticket) or 0
            await self.on_ticket_event(message)
            if message.get("kind") in ("assignment", "status") or before == 0:
                await self._refresh_state(ticket)
        elif kind == "visitor.contact":
            await self._adopt_contact(int(message["contact"]))
        elif kind == "ticket.deleted":
            await self._forget_ticket(int((message.get("ticket") or {}).get("id") or 0))
        elif kind in ("typing", "read") and int(message.get("ticket") or 0) in self.cursors:
            if kind == "typing":
                author = message.get("author") or {}
                await self.send(
                    {
                        "type": "typing",
                        "ticket": message["ticket"],
                        "author": {"type": "agent", "name": author.get("name", "")},
                        "typing": bool(message.get("typing")),
                    }
                )
            else:
                await self.send(
                    {
                        "type": "read",
                        "ticket": message["ticket"],
                        "seq": message.get("seq"),
                        "by": "agent",
                    }
                )

    async def _forget_ticket(self, ticket_id: int) -> None:
        """An admin deleted a conversation of this widget: it leaves the screen too."""
        if ticket_id not in self.cursors:
            return
        self.cursors.forget(ticket_id)
        self.ignored.add(ticket_id)
        if self.current == ticket_id:
            self.current = None
            self.last_state = None
        await self.send({"type": "state", "ticket": ticket_id, "state": "deleted", "agent": None})

    async def emit(self, event: dict[str, Any], team: int | None) -> None:
        await self.send(widget_event(event))

    # -- visitor -> server -------------------------------------------------------------

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            await self._message(frame)
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "typing":
            await self._signal({"type": "typing", "typing": parse_typing(frame)})
        elif kind == "read":
            await self._signal({"type": "read", "seq": parse_read(frame), "by": "contact"})
        elif kind == "identify":
            ident = identity_of(frame)
            after = frame.get("after_seq")
            try:
                await self._identify(ident.id, ident.expires, ident.hash, ident.name, ident.email)
            except IdentityError as exc:
                await self.send(error_frame(exc.code, exc.message))
                return
            async with self.deliver_lock:
                self.cursors = Cursors()
                self.ignored.clear()
                await self._welcome(after if isinstance(after, int) else None, None)
        elif (handler := frame_handler(self.ctx, kind)) is not None and self.frame_session:
            self.frame_session.name, self.frame_session.ticket_id = self.name, self.current
            await handler.on_frame(self.frame_session, frame)
        else:
            raise ProtocolError("bad_frame", f"unknown frame type {kind!r}")

    async def _signal(self, signal: dict[str, Any]) -> None:
        """Typing and read marks: live only, to the agents of the current ticket."""
        assert self.visitor is not None
        if self.current is None:
            return
        signal.update(
            ticket=self.current,
            author={"type": "contact", "id": self.visitor.contact_id, "name": self.name},
            team=self.inbox.team_id if self.inbox else None,
        )
        await self.ctx.bus.publish(workspace_topic(self.visitor.workspace_id), signal)

    async def _identify(
        self, external_id: object, expires: object, given: object, name: str, email: str | None
    ) -> None:
        assert self.visitor is not None and self.inbox is not None and self.sub is not None
        verified = visitors.verify_identity(self.inbox.identity_secret, external_id, expires, given)
        old = self.visitor.contact_id
        async with self.hub.uow() as uow:
            contact = await chat.do_identify(uow, self.visitor, verified, name=name, email=email)
            await uow.commit()
        if old is not None and old != contact.id:
            await self.sub.remove_topics([contact_topic(self.visitor.workspace_id, old)])

    async def _message(self, frame: dict[str, Any]) -> None:
        assert self.visitor is not None and self.inbox is not None
        msg = parse_visitor_message(frame, self.limits)
        key = ("v", self.visitor.workspace_id, self.visitor.external_id or self.visitor.visitor_id)
        wait = self.hub.visitor_buckets.take(key)
        if wait > 0:
            await self.send(
                error_frame(
                    "rate_limited",
                    "too many messages; resend this one later",
                    msg.client_id,
                    retry_after=round(wait, 2),
                )
            )
            return
        store = _StoreMessage(
            VisitorMessage(
                self.visitor,
                self.inbox,
                msg.client_id,
                msg.body,
                msg.attachments,
                name=msg.name,
                email=msg.email,
            ),
            self.hub.ttl,
        )
        write = self.hub.writes.run(store, size=len(msg.body))
        result = await self.stored(write, msg.client_id, "a widget message")
        if result is None:
            return
        ticket_id = result.ticket_id
        await self.send(ack(msg.client_id, ticket_id, result.seq))
        if result.ticket_created:
            self.hub.kick()
        async with self.deliver_lock:
            await self._adopt_contact(result.contact_id)
            # A new conversation: its first events were published before we followed it.
            if ticket_id not in self.cursors and await self._follow(ticket_id):
                await self.catch_up(ticket_id)
                await self._refresh_state(ticket_id)
