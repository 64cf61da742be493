"""Which chat visitors are connected: feeds app/services/visitor_presence.py.

A lifespan service that hooks the widget websockets through the shared frame
handler registry (channels/base.py) instead of living inside the live chat
channel: it only needs each widget connection's open and close, plus the
visitor's contact, which the websocket code keeps current on the session. The
agent reply hook in app/services/email_outbox.py asks visitor_presence whether a
chat answer must also go out by email. Connection churn costs no database
write: this process's connections are known in memory at once, and one
heartbeat transaction per interval tells the other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from app.context import AppContext
from app.services import visitor_presence
from app.tasks import cancel_and_wait
from channels.base import ClientSession, register_frame_handler

log = logging.getLogger(__name__)


class WidgetPresence:
    """`Service` and `FrameHandler` (its prefix matches no frame anyone sends)."""

    name = "widget-presence"
    prefix = "\x00widget-presence"

    def __init__(self) -> None:
        self.node = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.sessions: dict[str, ClientSession] = {}
        self.unsaved: set[str] = set()  # opened since the last heartbeat
        self.closed: set[str] = set()  # closed since the last heartbeat, had a row
        # The contact each saved row carries: only rows whose visitor got a contact
        # since are updated, so an idle node's heartbeat is one UPDATE, not one per row.
        self.saved_contact: dict[str, int | None] = {}
        self.ctx: AppContext | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: AppContext) -> None:
        self.ctx = ctx
        visitor_presence.ttl_seconds = ctx.settings.chat_presence_ttl_seconds
        register_frame_handler(ctx, self)
        self._task = ctx.spawn(self._heartbeat(), "widget-presence")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for conn_id in self.sessions:
            visitor_presence.local.pop(conn_id, None)
        self.sessions.clear()
        if self.ctx is not None:
            with contextlib.suppress(Exception):
                async with self.ctx.uow() as uow:
                    await visitor_presence.do_drop_node(uow, self.node)
                    await uow.commit()

    # Connect and close only touch memory (this process answers exactly from it);
    # other processes learn of them with the next heartbeat.

    async def on_open(self, session: ClientSession) -> None:
        if session.side != "widget" or session.visitor is None:
            return
        self.sessions[session.conn_id] = session
        self.unsaved.add(session.conn_id)
        visitor_presence.local[session.conn_id] = session.visitor

    async def on_frame(self, session: ClientSession, frame: dict[str, Any]) -> None:
        return None

    async def on_close(self, session: ClientSession) -> None:
        if self.sessions.pop(session.conn_id, None) is None:
            return
        visitor_presence.local.pop(session.conn_id, None)
        self.saved_contact.pop(session.conn_id, None)
        if session.conn_id in self.unsaved:
            self.unsaved.discard(session.conn_id)
        else:
            self.closed.add(session.conn_id)

    async def flush(self) -> None:
        """Write this node's connections (one transaction however many came and went)."""
        assert self.ctx is not None
        opened = {c: s.visitor for c in self.unsaved if (s := self.sessions.get(c)) and s.visitor}
        closed = set(self.closed)
        written = {c: v.contact_id for c, v in opened.items()}  # before any await
        contacts = {
            c: s.visitor.contact_id
            for c, s in self.sessions.items()
            if s.visitor
            and c not in opened
            and s.visitor.contact_id is not None
            and self.saved_contact.get(c) != s.visitor.contact_id
        }
        async with self.ctx.uow() as uow:
            await visitor_presence.do_sync_node(
                uow, self.node, opened=opened, closed=closed, contacts=contacts
            )
            await visitor_presence.do_sweep_stale(uow, self.ctx.settings.chat_presence_ttl_seconds)
            await uow.commit()
        self.unsaved -= set(opened)
        self.closed -= closed
        written.update(contacts)
        for conn_id, contact_id in written.items():
            if conn_id in self.sessions:
                self.saved_contact[conn_id] = contact_id

    async def _heartbeat(self) -> None:
        assert self.ctx is not None
        while True:
            await asyncio.sleep(self.ctx.settings.chat_heartbeat_seconds)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("widget presence heartbeat failed")
