"""Calls owned by this node: legs, queue offers, timers, and their records in the database.

Every change follows one order: check the request against the in-memory call, change the
media (source switches, never a renegotiation), write the call row and its timeline
event in one transaction, then tell the clients with `call.state` frames. Operations on
one call are serialised by its lock; the ACD pass runs in the background and after every
change that may free an agent or queue a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.context import AppContext
from app.events import UnitOfWork
from app.models import ActorType, Agent, Call, CallState, Contact, Inbox, Role, Workspace
from app.services import acd, calls
from app.services.actors import Actor
from app.services.errors import Conflict, Forbidden
from app.tasks import cancel_and_wait, run_when_kicked
from channels.voice import continuity
from channels.voice.hold import HoldAudio
from channels.voice.leg import MediaError
from channels.voice.live import CUSTOMER, LiveCall
from channels.voice.media import MediaEngine
from channels.voice.protocol import (
    CallProtocolError,
    Endpoint,
    call_id_of,
    flag_of,
    opt_int,
    sdp_of,
    state_frame,
)

if TYPE_CHECKING:
    from channels.voice.signaling import VoiceChannel

log = logging.getLogger(__name__)

RING_ACK_SECONDS = 3.0  # a widget that does not acknowledge a ring by then is offline


def agent_actor(ep: Endpoint) -> Actor:
    return Actor(
        workspace_id=ep.workspace_id,
        type=ActorType.agent,
        id=ep.agent_id,
        name=ep.name,
        role=Role(ep.role or "agent"),
        team_ids=frozenset(ep.team_ids),
        team_scoped=True,
    )


class CallController:
    def __init__(self, ctx: AppContext, channel: VoiceChannel) -> None:
        self.ctx = ctx
        self.channel = channel
        settings = ctx.settings
        self.settings = settings
        hold = HoldAudio.from_file(settings.voice_hold_audio) if settings.voice_hold_audio else None
        from aiortc import RTCIceServer

        # STUN only: the server's own candidates must be reachable anyway, and a TURN
        # allocation per leg would delay every answer (no trickle ICE) for nothing.
        # The browsers get the TURN servers, which is where NATs are.
        servers = [RTCIceServer(urls=url) for url in settings.ice.stun_urls]
        self.engine = MediaEngine(ice_servers=servers, hold=hold)
        self.live: dict[int, LiveCall] = {}
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def node(self) -> str:
        return self.channel.node

    async def start(self) -> None:
        self._task = self.ctx.spawn(self._loop(), "voice-acd")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for live in list(self.live.values()):
            with contextlib.suppress(Exception):
                await self.end_call(live, hangup_by="system", reason="shutdown")
        await self.engine.close()

    def kick(self) -> None:
        self._kick.set()

    # -- helpers ------------------------------------------------------------------------

    async def _write(self, live: LiveCall, fn: Callable[[UnitOfWork, Call], Awaitable[Any]]) -> Any:
        async with self.ctx.uow() as uow:
            call = await uow.session.get(Call, live.id)
            assert call is not None
            result = await fn(uow, call)
            await uow.commit()
        return result

    async def send(self, ep: Endpoint | None, frame: dict[str, Any]) -> None:
        if ep is not None:
            await self.channel.send_to(ep, frame)

    def customer_state(self, live: LiveCall, state: str, **extra: Any) -> dict[str, Any]:
        return state_frame(
            live.id,
            state,
            ticket=live.ticket_id,
            direction=live.direction,
            role="customer",
            recording=live.recording,
            agent={"name": live.agent_name} if live.agent_name and state == "active" else None,
            **extra,
        )

    def agent_state(self, live: LiveCall, state: str, **extra: Any) -> dict[str, Any]:
        return state_frame(
            live.id,
            state,
            ticket=live.ticket_id,
            direction=live.direction,
            role="agent",
            recording=live.recording,
            contact=live.contact_id,
            **extra,
        )

    async def notify(self, live: LiveCall, state: str, **extra: Any) -> None:
        """The current state to the customer and the agents/supervisors with legs."""
        await self.send(live.customer, self.customer_state(live, state, **extra))
        agents = [live.agent] + [ep for ep, _ in live.supervisors.values()]
        if live.consult is not None:
            agents.append(live.consult.endpoint)
        for ep in agents:
            await self.send(ep, self.agent_state(live, state, **extra))

    def timer(
        self, live: LiveCall, name: str, delay: float, fn: Callable[[], Awaitable[None]]
    ) -> None:
        live.cancel_timer(name)

        async def run() -> None:
            await asyncio.sleep(delay)
            live.timers.pop(name, None)
            if live.ended:
                return
            async with live.lock:
                if not live.ended:
                    await fn()

        live.timers[name] = self.ctx.spawn(run(), f"voice-{name}-{live.id}")

    def _get(self, call_id: int) -> LiveCall:
        live = self.live.get(call_id)
        if live is None:
            raise CallProtocolError("not_found", "call not found")
        return live

    async def add_leg(self, live: LiveCall, name: str, sdp: str, role: str, ep: Endpoint) -> None:
        try:
            answer = await live.media.add_leg(name, sdp, role=role)
        except MediaError as exc:
            raise CallProtocolError("bad_sdp", str(exc)) from None
        await self.send(ep, {"type": "call.answer", "call": live.id, "sdp": answer, "leg": name})

    async def drop_leg(self, live: LiveCall, name: str | None) -> None:
        if name is not None and name in live.media.legs:
            await live.media.remove_leg(name)

    # -- entry point --------------------------------------------------------------------

    async def handle(self, ep: Endpoint, frame: dict[str, Any]) -> None:
        kind = str(frame.get("type"))
        if kind == "call.start":
            await self.start_call(ep, frame)
            return
        if kind == "call.dial":
            from channels.voice.outbound import dial

            await dial(self, ep, frame)
            return
        live = self._get(call_id_of(frame))
        if live.workspace_id != ep.workspace_id:
            raise CallProtocolError("not_found", "call not found")
        async with live.lock:
            if live.ended:
                raise CallProtocolError("ended", "the call has ended")
            if ep.side == "widget":
                if ep.contact_id is None or ep.contact_id != live.contact_id:
                    raise CallProtocolError("not_found", "call not found")
                await self._widget_frame(live, ep, kind, frame)
            else:
                await self._agent_frame(live, ep, kind, frame)

    async def _widget_frame(
        self, live: LiveCall, ep: Endpoint, kind: str, frame: dict[str, Any]
    ) -> None:
        from channels.voice import outbound

        if kind == "call.offer":
            if CUSTOMER in live.media.legs:
                raise CallProtocolError("conflict", "the customer leg is already connected")
            live.customer = ep
            await self.add_leg(live, CUSTOMER, str(sdp_of(frame)), "customer", ep)
            self._route_customer(live)
        elif kind == "call.hangup":
            await self.end_call(live, hangup_by="customer", reason="hangup")
        elif kind == "call.mute":
            if CUSTOMER in live.media.legs:
                live.media.mute(CUSTOMER, flag_of(frame, "muted"))
            await self.send(
                ep, self.customer_state(live, live.state, muted=flag_of(frame, "muted"))
            )
        elif kind == "call.callback":
            from channels.voice.callbacks import request_callback

            await request_callback(self, live)
        elif kind in ("call.accept", "call.decline", "call.ringing"):
            await outbound.widget_answer(self, live, ep, kind, frame)
        else:
            raise CallProtocolError("bad_frame", f"{kind} is not available to the customer")

    async def _agent_frame(
        self, live: LiveCall, ep: Endpoint, kind: str, frame: dict[str, Any]
    ) -> None:
        from channels.voice import supervision, transfer

        if ep.agent_id is None:
            raise Forbidden("calls are for agents signed in to the console")
        if kind in ("call.listen", "call.whisper", "call.barge"):
            await supervision.supervise(self, live, ep, kind.split(".")[1], frame)
            return
        if kind == "call.accept":
            await self.accept(live, ep, frame)
            return
        if kind == "call.decline":
            await self.decline(live, ep)
            return
        consultant = live.consult is not None and live.consult.agent_id == ep.agent_id
        if kind == "call.hangup" and consultant:
            await transfer.cancel(self, live)
            return
        supervisor_leg = f"sup-{ep.agent_id}"
        if kind == "call.hangup" and supervisor_leg in live.supervisors:
            await supervision.leave(self, live, supervisor_leg)
            return
        if ep.agent_id != live.agent_id:
            raise Forbidden("this is not your call")
        if kind == "call.offer":
            await continuity.rejoin(self, live, ep, str(sdp_of(frame)))
        elif kind == "call.hangup":
            await self.end_call(live, hangup_by="agent", reason="hangup", actor=agent_actor(ep))
        elif kind == "call.hold":
            await self.hold(live, ep, flag_of(frame, "held"))
        elif kind == "call.mute":
            muted = flag_of(frame, "muted")
            if live.agent_leg in live.media.legs:
                live.media.mute(live.agent_leg or "", muted)
            await self.send(ep, self.agent_state(live, live.state, muted=muted))
        elif kind == "call.transfer":
            await transfer.transfer(self, live, ep, frame)
        else:
            raise CallProtocolError("bad_frame", f"unknown frame type {kind!r}")

    # -- inbound call lifecycle -----------------------------------------------------------

    async def start_call(self, ep: Endpoint, frame: dict[str, Any]) -> None:
        if ep.inbox_id is None or ep.visitor_id is None:
            raise CallProtocolError("bad_frame", "calls start from the widget")
        sdp = sdp_of(frame, required=False)
        ticket_hint = opt_int(frame, "ticket")
        language = frame.get("language") if isinstance(frame.get("language"), str) else ep.locale
        for attempt in range(2):
            try:
                call, contact, workspace = await self._open_call(ep, ticket_hint, language)
                break
            except Conflict:
                # A live call of this customer whose owning process died is stale: end it.
                if attempt or not await self.end_stale_call_of(ep):
                    raise
        assert call.id is not None and contact.id is not None
        ep.contact_id = contact.id
        live = self.new_live(
            call, recording=calls.recording_enabled(workspace.settings if workspace else None)
        )
        live.customer = ep
        async with live.lock:
            live.position = await self.position(live)
            await self.send(ep, self.customer_state(live, "queued", position=live.position))
            if sdp is not None:
                await self.add_leg(live, CUSTOMER, sdp, "customer", ep)
                self._route_customer(live)
        self.kick()

    async def _open_call(
        self, ep: Endpoint, ticket_hint: int | None, language: str | None
    ) -> tuple[Call, Contact, Workspace | None]:
        assert ep.inbox_id is not None and ep.visitor_id is not None
        async with self.ctx.uow() as uow:
            inbox = await uow.session.get(Inbox, ep.inbox_id)
            if inbox is None or inbox.workspace_id != ep.workspace_id:
                raise CallProtocolError("not_found", "inbox not found")
            name = ep.name if ep.name != "Visitor" else ""
            contact = await calls.do_visitor_contact(
                uow, ep.workspace_id, ep.visitor_id, ep.external_id, name
            )
            call = await calls.do_start_call(
                uow,
                inbox=inbox,
                contact=contact,
                owner_node=self.node,
                ticket_id=ticket_hint,
                language=language,
            )
            workspace = await uow.session.get(Workspace, ep.workspace_id)
            await uow.commit()
        return call, contact, workspace

    async def end_stale_call_of(self, ep: Endpoint) -> bool:
        """End the customer's live call if the process owning its media is gone."""
        async with self.ctx.read_sessions() as session:
            contact = await calls.visitor_contact(
                session, ep.workspace_id, ep.visitor_id or "", ep.external_id
            )
            existing = (
                await calls.live_call_of_contact(session, ep.workspace_id, contact.id or 0)
                if contact is not None
                else None
            )
        if existing is None or existing.id is None:
            return True  # ended meanwhile
        if existing.owner_node == self.node:
            if existing.id in self.live:
                return False
        elif await self.channel.owner_alive(existing.owner_node):
            return False
        await self.end_orphan(existing.id)
        return True

    def new_live(self, call: Call, *, recording: bool) -> LiveCall:
        assert call.id is not None
        media = self.engine.call(f"call-{call.id}")
        live = LiveCall(
            id=call.id,
            workspace_id=call.workspace_id,
            ticket_id=call.ticket_id,
            contact_id=call.contact_id,
            team_id=call.team_id,
            direction=call.direction.value,
            media=media,
            state=call.state.value,
            started=time.monotonic(),
            recording=recording,
            callback_id=call.callback_id,
        )
        media.on_state = functools.partial(continuity.leg_state, self)
        self.live[call.id] = live
        return live

    def _route_customer(self, live: LiveCall) -> None:
        """The customer leg hears the agent when bridged, hold audio otherwise."""
        if CUSTOMER not in live.media.legs:
            return
        if live.state == "active" and live.agent_leg in live.media.legs:
            live.media.bridge(CUSTOMER, live.agent_leg or "")
        elif live.direction == "outbound" and live.state in ("offered", "ringing"):
            return  # an outbound callee hears nothing until someone is there
        else:
            live.media.hold(CUSTOMER)

    async def position(self, live: LiveCall) -> int:
        async with self.ctx.read_sessions() as session:
            call = await session.get(Call, live.id)
            return await acd.queue_position(session, call) if call is not None else 1

    async def ring_agent(self, live: LiveCall, agent_id: int, kind: str, **extra: Any) -> None:
        live.offered_to = agent_id
        live.offer_kind = kind
        frame = self.agent_state(
            live, "offered", offer=kind, timeout=self.settings.voice_ring_timeout_seconds, **extra
        )
        await self.channel.deliver({"agent": agent_id}, frame)
        self.timer(
            live, "ring", self.settings.voice_ring_timeout_seconds, lambda: self.ring_out(live)
        )

    async def ring_out(self, live: LiveCall) -> None:
        """The offered agent let it ring: record it and offer the call to the next one."""
        agent_id, kind = live.offered_to, live.offer_kind
        if agent_id is None:
            return
        await self.withdraw(live, agent_id, "no_answer")
        if kind == "consult":
            from channels.voice import transfer

            await transfer.cancel(self, live)
            return
        if kind == "callback":
            from channels.voice.callbacks import agent_missed

            await agent_missed(self, live, "no_answer")
            return
        await self._write(
            live, lambda uow, call: calls.do_skip_agent(uow, call, agent_id, "no_answer")
        )
        await self.requeued(live)

    async def withdraw(self, live: LiveCall, agent_id: int, reason: str) -> None:
        live.cancel_timer("ring")
        live.offered_to = None
        await self.channel.deliver(
            {"agent": agent_id}, self.agent_state(live, "withdrawn", reason=reason)
        )

    async def requeued(self, live: LiveCall) -> None:
        live.state = "queued"
        live.agent_id, live.agent, live.agent_name, live.agent_leg = None, None, "", None
        live.offer_kind = None
        self._route_customer(live)
        live.position = await self.position(live)
        await self.send(live.customer, self.customer_state(live, "queued", position=live.position))
        self.kick()

    async def accept(self, live: LiveCall, ep: Endpoint, frame: dict[str, Any]) -> None:
        if live.offered_to != ep.agent_id:
            raise CallProtocolError("conflict", "this call is not ringing for you")
        sdp = str(sdp_of(frame))
        kind = live.offer_kind
        live.cancel_timer("ring")
        live.offered_to = None
        if kind == "consult":
            from channels.voice import transfer

            await transfer.consult_answered(self, live, ep, sdp)
            return
        if kind == "callback":
            from channels.voice.outbound import agent_ready

            await agent_ready(self, live, ep, sdp)
            return
        leg = live.next_leg(f"agent-{ep.agent_id}")
        try:
            await self.add_leg(live, leg, sdp, "agent", ep)
        except CallProtocolError:
            await self._write(
                live, lambda uow, call: calls.do_skip_agent(uow, call, ep.agent_id or 0, "failed")
            )
            await self.requeued(live)
            raise
        await self.connect_agent(live, ep, leg)

    async def connect_agent(self, live: LiveCall, ep: Endpoint, leg: str) -> None:
        """Bridge a newly answered agent leg to the customer and record the answer."""
        live.agent, live.agent_id, live.agent_leg, live.agent_name = ep, ep.agent_id, leg, ep.name
        live.agent_lost = False
        live.state = "active"
        async with self.ctx.read_sessions() as session:
            agent = await session.get(Agent, ep.agent_id)
        assert agent is not None
        await self._write(live, lambda uow, call: calls.do_answer(uow, call, agent))
        self._route_customer(live)
        await self.start_recording(live)
        await self.notify(live, "active")

    async def decline(self, live: LiveCall, ep: Endpoint) -> None:
        if live.offered_to != ep.agent_id or ep.agent_id is None:
            raise CallProtocolError("conflict", "this call is not ringing for you")
        agent_id, kind = ep.agent_id, live.offer_kind
        await self.withdraw(live, agent_id, "declined")
        if kind == "consult":
            from channels.voice import transfer

            await transfer.cancel(self, live)
        elif kind == "callback":
            from channels.voice.callbacks import agent_missed

            await agent_missed(self, live, "declined")
        else:
            await self._write(
                live, lambda uow, call: calls.do_skip_agent(uow, call, agent_id, "declined")
            )
            await self.requeued(live)

    async def hold(self, live: LiveCall, ep: Endpoint, held: bool) -> None:
        if live.state not in ("active", "held") or CUSTOMER not in live.media.legs:
            raise CallProtocolError("conflict", "only a connected call can be held")
        if held:
            live.media.hold(CUSTOMER)
        else:
            live.media.unhold(CUSTOMER)
            if live.agent_leg in live.media.legs:
                live.media.bridge(CUSTOMER, live.agent_leg or "")
        live.state = "held" if held else "active"
        state = CallState.held if held else CallState.active
        await self._write(
            live,
            lambda uow, call: calls.do_set_state(
                uow, call, state, "held" if held else "resumed", actor=agent_actor(ep)
            ),
        )
        await self.notify(live, live.state)

    # -- recording and the end -------------------------------------------------------------

    async def start_recording(self, live: LiveCall) -> None:
        if not live.recording or live.media.recorder is not None or live.recording_key:
            return
        key = calls.recording_key(live.workspace_id, live.id)
        path = self.settings.data_dir / "attachments" / key
        try:
            await live.media.start_recording(path)
        except Exception:
            log.exception("recording call %s failed to start", live.id)
            return
        live.recording_key, live.recording_path = key, path

    async def end_call(
        self, live: LiveCall, *, hangup_by: str, reason: str, actor: Actor | None = None
    ) -> None:
        """Hang up every leg, record the end (and the recording), tell everyone."""
        if live.ended:
            return
        live.ended = True
        for name in list(live.timers):
            live.cancel_timer(name)
        self.live.pop(live.id, None)
        ringing = live.offered_to
        info = None
        try:
            info = await live.media.close()
        except Exception:
            log.exception("closing call %s media failed", live.id)

        async def finish(uow: UnitOfWork, call: Call) -> Call:
            await calls.do_end(uow, call, hangup_by=hangup_by, reason=reason, actor=actor)
            if live.callback_id is not None:
                from channels.voice.callbacks import record_outcome

                await record_outcome(uow, live, call)
            if info is not None and info.error is None and info.bytes > 0 and live.recording_key:
                await calls.do_attach_recording(
                    uow, call, info.path, live.recording_key, info.seconds
                )
            return call

        call: Call = await self._write(live, finish)
        extra = {"reason": reason, "hangup_by": hangup_by, "duration": call.duration_seconds}
        await self.notify(live, call.state.value, **extra)
        if ringing is not None:
            await self.channel.deliver(
                {"agent": ringing}, self.agent_state(live, "withdrawn", reason=reason)
            )
        self.kick()

    async def end_orphan(self, call_id: int) -> None:
        """A call this node owned before a restart: its media is gone."""
        async with self.ctx.uow() as uow:
            call = await uow.session.get(Call, call_id)
            if call is not None:
                await calls.do_end(uow, call, hangup_by="system", reason="media_lost")
            await uow.commit()

    # -- the ACD loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        await run_when_kicked(
            self._kick, self.settings.voice_acd_interval_seconds, self.tick, "voice ACD pass"
        )

    async def tick(self) -> None:
        from channels.voice.callbacks import dial_callbacks

        for live in sorted(self.live.values(), key=lambda c: c.started):
            if live.state != "queued" or live.ended:
                continue
            async with live.lock:
                if live.state == "queued" and not live.ended:
                    await self._offer(live)
        await dial_callbacks(self)

    async def _offer(self, live: LiveCall) -> None:
        ttl = self.ctx.settings.chat_presence_ttl_seconds
        waited = time.monotonic() - live.started
        if not live.callback_offered and waited >= self.settings.voice_max_wait_seconds:
            live.callback_offered = True
            await self.send(
                live.customer,
                self.customer_state(live, "queued", position=live.position, callback_offered=True),
            )

        async def pick(uow: UnitOfWork, call: Call) -> Agent | None:
            return await acd.do_pick_agent(uow, call, ttl)

        agent = await self._write(live, pick)
        if agent is None or agent.id is None:
            position = await self.position(live)
            if position != live.position:
                live.position = position
                await self.send(
                    live.customer,
                    self.customer_state(
                        live,
                        "queued",
                        position=position,
                        callback_offered=live.callback_offered or None,
                    ),
                )
            return
        live.state = "offered"
        await self.ring_agent(live, agent.id, "inbound")
