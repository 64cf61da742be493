"""What the widget and agent websockets share: sending, the bus pump, replay and gap fill.

Order on (re)connect: subscribe to the bus first, then replay from the database
after the client's cursor, then let the pump flush what the bus buffered
meanwhile; `Cursors` drops what replay already sent and turns a jump in `seq`
into a database read, so every event reaches the client once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.bus.base import Message, Subscription, SubscriptionOverflow
from app.models import Ticket, TicketEvent
from app.services.chat import replay_events
from app.services.errors import ServiceError
from app.services.timeline import event_public
from app.tasks import cancel_and_wait
from channels.base import ClientSession, close_session
from channels.webchat.cursors import Cursors
from channels.webchat.protocol import (
    CLOSE_TRY_AGAIN,
    HELLO_TIMEOUT,
    Limits,
    ProtocolError,
    decode,
    error_frame,
)

if TYPE_CHECKING:
    from channels.webchat.hub import WebchatHub

log = logging.getLogger(__name__)

T = TypeVar("T")

# Frames read ahead of the one being handled; past that, reading waits (backpressure).
FRAME_BACKLOG = 16


class Closed(Exception):
    """The peer went away; unwind quietly."""


class _FrameWork:
    """Frames read ahead of the one being handled, and the task handling them (if any)."""

    __slots__ = ("failure", "handle", "pending", "reader", "reading", "room", "task")

    def __init__(
        self, reader: asyncio.Task[Any], handle: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        self.reader = reader
        self.handle = handle
        self.pending: list[dict[str, Any]] = []  # at most FRAME_BACKLOG; an empty deque is 700 B
        self.task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.room: asyncio.Future[None] | None = None
        self.reading = True

    def start(self, first: Callable[[], Awaitable[None]] | None = None) -> None:
        self.task = asyncio.create_task(self._work(first), name="webchat-work")
        self.task.add_done_callback(self._finished)

    async def put(self, frame: dict[str, Any]) -> None:
        self.pending.append(frame)
        if self.task is None:
            self.start()
        elif self.task.done():
            if not self.task.cancelled() and self.task.exception() is not None:
                return  # it failed: the session ends as soon as `_finished` runs
            self.start()
        while len(self.pending) >= FRAME_BACKLOG:  # backpressure: stop reading
            self.room = asyncio.get_running_loop().create_future()
            await self.room
            self.room = None

    async def stop(self) -> None:
        # A done callback may already be scheduled: it must not cancel what follows.
        self.reading = False
        if self.task is not None and not self.task.done():
            await cancel_and_wait(self.task)

    async def _work(self, first: Callable[[], Awaitable[None]] | None) -> None:
        if first is not None:
            await first()
        while self.pending:
            frame = self.pending.pop(0)
            if self.room is not None and not self.room.done():
                self.room.set_result(None)
            await self.handle(frame)

    def _finished(self, task: asyncio.Task[None]) -> None:
        # A handler that raised (the peer went away while we answered, or a bug) ends
        # the session: interrupt the read the connection's task is waiting in.
        error = None if task.cancelled() else task.exception()  # retrieved either way
        if error is not None and self.reading and self.failure is None:
            self.failure = error
            self.reader.cancel()


class Connection:
    customer_view = True
    queue_size = 256
    # Slots: one of these per open websocket, mostly idle widgets by the thousand.
    __slots__ = (
        "_pump",
        "_pump_stopped",
        "_send_lock",
        "ctx",
        "cursors",
        "deliver_lock",
        "frame_session",
        "hub",
        "limits",
        "sub",
        "ws",
    )

    def __init__(self, hub: WebchatHub, websocket: WebSocket) -> None:
        self.hub = hub
        self.ctx = hub.ctx
        self.ws = websocket
        self.limits: Limits = hub.limits
        self.sub: Subscription | None = None
        self.cursors = Cursors()
        self._send_lock = asyncio.Lock()
        # Replay and live delivery of one connection never interleave.
        self.deliver_lock = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None
        self._pump_stopped = False
        self.frame_session: ClientSession | None = None  # for call.* frames (channels/base)

    # -- lifetime -----------------------------------------------------------------

    async def serve(self) -> None:
        """Accept, run the session until the peer goes, then release what it held."""
        await self.ws.accept()
        try:
            await self.session()
        except Closed:
            pass
        finally:
            await self.stop_pump()
            await close_session(self.ctx, self.frame_session)
            await self.after_close()

    async def session(self) -> None:
        raise NotImplementedError

    async def after_close(self) -> None:
        """Subclass hook: cleanup beyond the pump and the frame handlers."""
        return None

    # -- output -------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
        async with self._send_lock:
            if self.ws.application_state is not WebSocketState.CONNECTED:
                raise Closed
            try:
                await self.ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise Closed from exc

    async def stored(self, write: Awaitable[T], client_id: str, what: str) -> T | None:
        """The result of a queued write once committed; None once the client was told
        (an error frame naming its client_id) why it was not stored. A database that
        fails is `unavailable`, not the end of the connection: the client resends."""
        try:
            return await write
        except ServiceError as exc:
            await self.send(error_frame(exc.code, exc.message, client_id))
        except Exception:
            log.exception("storing %s failed", what)
            await self.send(error_frame("unavailable", "not stored; resend later", client_id))
        return None

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self.ws.application_state is WebSocketState.CONNECTED:
                await self.ws.close(code=code, reason=reason)

    async def refuse(self, code: int, reason: str) -> None:
        """Refuse before any frame is read. The handshake completes only so the close
        code and reason reach page JavaScript (a refused handshake shows as 1006)."""
        await self.ws.accept()
        await self.ws.close(code=code, reason=reason)

    # -- input --------------------------------------------------------------------

    async def receive(self) -> dict[str, Any] | None:
        """The next frame as a dict; None after answering a bad frame with an error."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise Closed
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes")
        try:
            return decode(raw, self.limits)
        except ProtocolError as exc:
            await self.send(exc.frame())
            return None

    async def serve_frames(
        self,
        setup: Callable[[], Awaitable[None]],
        handle: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """Run `setup`, then `handle` every frame in order, in a task of their own,
        while this task keeps reading the socket; a peer that goes away cancels what
        was still queued or running for it.

        Otherwise a dropped connection's work waits in line for the database and is
        done for nobody (the client resends what was not acknowledged once it is
        back), and under heavy reconnect churn that line grows faster than it drains:
        every resend queues behind the dead ones, its connection drops before its turn,
        and nothing is ever acknowledged again.

        The worker task exists only while there is work: an idle connection is this
        one task waiting on the socket (thousands of idle widgets are the common case).
        """
        reader = asyncio.current_task()
        assert reader is not None
        frames = _FrameWork(reader, handle)
        frames.start(setup)
        del setup  # what it closes over (the hello) is not needed for the connection's life
        try:
            while True:
                frame = await self.receive()
                if frame is not None:
                    await frames.put(frame)
        except asyncio.CancelledError:
            # Re-raise a cancellation that came from outside (shutdown) as well.
            if frames.failure is None or reader.uncancel() > 0:
                raise
        finally:
            await frames.stop()
        if frames.failure is not None and not isinstance(frames.failure, Closed):
            raise frames.failure

    async def receive_hello(self) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                return await self.receive()
        except TimeoutError:
            return None

    # -- bus ----------------------------------------------------------------------

    def start_pump(self) -> None:
        """Deliver bus messages from now on (those buffered since subscribing first).

        No task waits on an idle subscription: one is started when a message arrives
        and ends when the buffer is empty.
        """
        assert self.sub is not None
        self.sub.on_ready = self._wake_pump
        self._wake_pump()

    def _wake_pump(self) -> None:
        if self._pump_stopped or (self._pump is not None and not self._pump.done()):
            return
        if self.sub is not None and self.sub.ready:
            self._pump = asyncio.create_task(self._run_pump(), name="webchat-pump")

    async def stop_pump(self) -> None:
        self._pump_stopped = True
        await cancel_and_wait(self._pump)
        if self.sub is not None:
            self.sub.on_ready = None
            await self.sub.close()

    async def _run_pump(self) -> None:
        assert self.sub is not None
        try:
            while (message := self.sub.get_nowait()) is not None:
                async with self.deliver_lock:
                    await self.on_bus(message)
        except SubscriptionOverflow:
            # Never wait on a slow client: it reconnects and resumes from its cursor.
            self._pump_stopped = True
            await self.close(CLOSE_TRY_AGAIN, "too slow; reconnect and resume")
        except Closed:
            self._pump_stopped = True
        except asyncio.CancelledError:
            raise
        except Exception:
            self._pump_stopped = True
            log.exception("webchat pump failed")
            await self.close(1011, "internal error")

    async def on_bus(self, message: Message) -> None:
        raise NotImplementedError

    # -- exactly-once delivery -------------------------------------------------------

    async def on_ticket_event(self, message: Message) -> None:
        """A live `ticket.event` for a ticket this connection follows (cursor set)."""
        ticket, seq = int(message["ticket"]), int(message["seq"])
        decision = self.cursors.decide(ticket, seq)
        if decision == "drop":
            return
        if decision == "next":
            self.cursors.advance(ticket, seq)
            if self.customer_view and message.get("internal"):
                return
            await self.emit(message["event"], message.get("team"))
            return
        await self.catch_up(ticket)

    async def catch_up(self, ticket_id: int) -> Ticket | None:
        """Send what the database has after this ticket's cursor; advance the cursor."""
        after = self.cursors.get(ticket_id) or 0
        async with self.hub.session() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                return None
            # last_seq first: every seq up to it is committed, so the read is complete.
            upto = ticket.last_seq
            events: list[TicketEvent] = await replay_events(
                session, ticket_id, after, upto, customer_view=self.customer_view
            )
        for event in events:
            await self.emit(event_public(event), ticket.team_id)
        self.cursors.advance(ticket_id, upto)
        return ticket

    async def emit(self, event: dict[str, Any], team: int | None) -> None:
        raise NotImplementedError
