"""Voice calls as ticket events: every state change of a call lands on its ticket's timeline.

A call always belongs to a ticket: started from a chat it joins that conversation's
ticket, a fresh call opens a voice ticket. Customer-facing events (queued, answered,
held, transferred, ended…) are public; offers, declines, ring-outs and supervision are
internal. The media itself lives in channels/voice; this module only records.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import (
    ActorType,
    Agent,
    Attachment,
    Call,
    CallDirection,
    CallState,
    Channel,
    Contact,
    EventKind,
    IdentityKind,
    Inbox,
    Ticket,
)
from app.models.base import utcnow
from app.models.call import LIVE_CALL_STATES
from app.services.actors import Actor
from app.services.contacts import IdentityIn, do_resolve_contact, find_by_identity
from app.services.errors import Conflict, Forbidden, NotFound
from app.services.routing import LOCK_CONTACT, OPEN_CHAT_STATUSES, xact_lock
from app.services.tickets import do_create_ticket, do_update_ticket
from app.services.timeline import do_append_event
from app.services.visitors import visitor_topic

RECORDINGS_DIR = "recordings"

# The sentence shown for each public call event (the widget shows `body`).
BODIES = {
    "queued": "Call started, waiting for an agent",
    "answered": "Call answered by {agent}",
    "held": "Call on hold",
    "resumed": "Call resumed",
    "transferred": "Call transferred",
    "requeued": "Call back in the queue",
    "ended": "Call ended",
    "abandoned": "Call ended before it was answered",
    "callback_requested": "Callback requested",
    "outbound": "Calling the customer",
    "outbound_failed": "Outbound call not connected ({outcome})",
}


def seconds_between(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 2)


def call_public(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "ticket_id": call.ticket_id,
        "state": call.state.value,
        "direction": call.direction.value,
        "agent_id": call.agent_id,
        "team_id": call.team_id,
        "contact_id": call.contact_id,
        "owner_node": call.owner_node,
        "queued_at": call.queued_at.isoformat(),
        "answered_at": call.answered_at.isoformat() if call.answered_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "wait_seconds": call.wait_seconds,
        "duration_seconds": call.duration_seconds,
        "hangup_by": call.hangup_by,
        "end_reason": call.end_reason,
        "recording_attachment_id": call.recording_attachment_id,
    }


async def record(
    uow: UnitOfWork,
    call: Call,
    state: str,
    *,
    actor: Actor | None = None,
    internal: bool = False,
    kind: EventKind = EventKind.call,
    **extra: Any,
) -> None:
    """Append one call event to the call's ticket timeline."""
    ticket = await uow.session.get(Ticket, call.ticket_id)
    assert ticket is not None
    payload: dict[str, Any] = {"call": call.id, "state": state, "direction": call.direction.value}
    payload.update({k: v for k, v in extra.items() if v is not None})
    body = BODIES.get(state, "").format(**{k: v for k, v in extra.items() if v is not None})
    await do_append_event(
        uow,
        ticket,
        kind=kind,
        actor=actor or Actor.system(call.workspace_id, "Voice"),
        body=body,
        payload=payload,
        internal=internal,
    )


async def get_call(session: AsyncSession, workspace_id: int, call_id: int) -> Call:
    call = await session.get(Call, call_id)
    if call is None or call.workspace_id != workspace_id:
        raise NotFound("call not found")
    return call


async def live_call_of_contact(
    session: AsyncSession, workspace_id: int, contact_id: int
) -> Call | None:
    stmt = select(Call).where(
        Call.workspace_id == workspace_id,
        Call.contact_id == contact_id,
        col(Call.state).in_(LIVE_CALL_STATES),
    )
    return (await session.exec(stmt)).first()


async def agent_name(session: AsyncSession, agent_id: int | None) -> str:
    if agent_id is None:
        return ""
    agent = await session.get(Agent, agent_id)
    return agent.name if agent is not None else ""


async def visitor_contact(
    session: AsyncSession, workspace_id: int, visitor_id: str, external_id: str | None
) -> Contact | None:
    if external_id is not None:
        return await find_by_identity(session, workspace_id, IdentityKind.external, external_id)
    return await find_by_identity(session, workspace_id, IdentityKind.visitor, visitor_id)


async def do_visitor_contact(
    uow: UnitOfWork,
    workspace_id: int,
    visitor_id: str,
    external_id: str | None,
    name: str = "",
) -> Contact:
    """The widget visitor's contact, created on a first call like on a first chat message.

    Other tabs of the visitor learn about a new contact the way chat tells them."""
    if external_id is not None:
        identity = IdentityIn(IdentityKind.external, external_id, verified=True)
    else:
        identity = IdentityIn(IdentityKind.visitor, visitor_id)
    contact, created = await do_resolve_contact(uow, workspace_id, identity, name=name)
    assert contact.id is not None
    if created:
        uow.publish_on_commit(
            visitor_topic(workspace_id, visitor_id),
            {"type": "visitor.contact", "contact": contact.id},
        )
    return contact


async def do_start_call(
    uow: UnitOfWork,
    *,
    inbox: Inbox,
    contact: Contact,
    owner_node: str,
    ticket_id: int | None = None,
    language: str | None = None,
) -> Call:
    """A customer presses Call: reuse the open conversation's ticket or open a voice one."""
    ws = inbox.workspace_id
    assert contact.id is not None and inbox.id is not None
    await xact_lock(uow.session, LOCK_CONTACT, contact.id)
    if await live_call_of_contact(uow.session, ws, contact.id) is not None:
        raise Conflict("this customer is already on a call")
    ticket: Ticket | None = None
    if ticket_id is not None:
        ticket = await uow.session.get(Ticket, ticket_id)
        if ticket is None or ticket.workspace_id != ws or ticket.contact_id != contact.id:
            raise NotFound("ticket not found")
    else:
        stmt = (
            select(Ticket)
            .where(
                Ticket.workspace_id == ws,
                Ticket.inbox_id == inbox.id,
                Ticket.contact_id == contact.id,
                col(Ticket.status).in_(OPEN_CHAT_STATUSES),
                col(Ticket.merged_into_id).is_(None),
            )
            .order_by(col(Ticket.id).desc())
            .limit(1)
        )
        ticket = (await uow.session.exec(stmt)).first()
    if ticket is None:
        ticket, _ = await do_create_ticket(
            uow,
            Actor.system(ws, "Voice"),
            subject=f"Call from {contact.name or 'a visitor'}",
            contact_id=contact.id,
            channel=Channel.voice,
            inbox_id=inbox.id,
            team_id=inbox.team_id,
        )
    assert ticket.id is not None
    call = Call(
        workspace_id=ws,
        ticket_id=ticket.id,
        inbox_id=inbox.id,
        team_id=ticket.team_id or inbox.team_id,
        contact_id=contact.id,
        owner_node=owner_node,
        language=(language or "")[:16] or None,
        skills=list((inbox.settings or {}).get("voice_skills") or [])[:20],
    )
    uow.session.add(call)
    await uow.session.flush()
    await record(
        uow, call, "queued", actor=Actor.contact(ws, contact.id, contact.name or "Visitor")
    )
    return call


async def do_start_outbound(
    uow: UnitOfWork, actor: Actor, ticket: Ticket, owner_node: str, callback_id: int | None = None
) -> Call:
    """An agent calls the ticket's contact in the widget (or dials a callback)."""
    if actor.agent_id is None:
        raise Forbidden("only agents place calls")
    if ticket.contact_id is None:
        raise Conflict("the ticket has no contact to call")
    await xact_lock(uow.session, LOCK_CONTACT, ticket.contact_id)
    if await live_call_of_contact(uow.session, ticket.workspace_id, ticket.contact_id):
        raise Conflict("this customer is already on a call")
    assert ticket.id is not None
    now = utcnow()
    call = Call(
        workspace_id=ticket.workspace_id,
        ticket_id=ticket.id,
        inbox_id=ticket.inbox_id,
        team_id=ticket.team_id,
        contact_id=ticket.contact_id,
        agent_id=actor.agent_id,
        direction=CallDirection.outbound,
        state=CallState.ringing,
        owner_node=owner_node,
        queued_at=now,
        offered_at=now,
        callback_id=callback_id,
    )
    uow.session.add(call)
    await uow.session.flush()
    await record(uow, call, "outbound", actor=actor, callback=callback_id)
    return call


async def do_offer(uow: UnitOfWork, call: Call, agent: Agent) -> None:
    call.state = CallState.offered
    call.agent_id = agent.id
    call.offered_at = utcnow()
    uow.session.add(call)
    await record(uow, call, "offered", internal=True, agent=agent.name, agent_id=agent.id)


async def do_skip_agent(uow: UnitOfWork, call: Call, agent_id: int, outcome: str) -> None:
    """The offered agent declined or let it ring out: back to the queue, skip them."""
    name = await agent_name(uow.session, agent_id)
    call.declined = [*call.declined, agent_id][-100:]
    call.state = CallState.queued
    call.agent_id = None
    uow.session.add(call)
    await record(uow, call, outcome, internal=True, agent=name, agent_id=agent_id)


async def do_answer(uow: UnitOfWork, call: Call, agent: Agent) -> None:
    now = utcnow()
    first = call.answered_at is None
    call.state = CallState.active
    call.agent_id = agent.id
    call.declined = []
    if first:
        call.answered_at = now
        call.wait_seconds = seconds_between(call.queued_at, now)
    uow.session.add(call)
    actor = Actor(
        workspace_id=call.workspace_id, type=ActorType.agent, id=agent.id, name=agent.name
    )
    await record(
        uow,
        call,
        "answered",
        actor=actor,
        agent=agent.name,
        agent_id=agent.id,
        wait=call.wait_seconds,
    )
    ticket = await uow.session.get(Ticket, call.ticket_id)
    if ticket is not None and ticket.assignee_id is None and agent.id is not None:
        await do_update_ticket(
            uow, Actor.system(call.workspace_id, "Voice"), call.ticket_id, {"assignee_id": agent.id}
        )


async def do_set_state(
    uow: UnitOfWork,
    call: Call,
    state: CallState,
    event: str,
    *,
    internal: bool = False,
    actor: Actor | None = None,
    **extra: Any,
) -> None:
    call.state = state
    if state is CallState.queued:
        call.agent_id = None
    uow.session.add(call)
    await record(uow, call, event, internal=internal, actor=actor, **extra)


async def do_end(
    uow: UnitOfWork, call: Call, *, hangup_by: str, reason: str, actor: Actor | None = None
) -> None:
    """End a live call: `abandoned` if nobody ever answered an inbound call."""
    if call.state not in LIVE_CALL_STATES:
        return
    now = utcnow()
    answered = call.answered_at is not None
    call.state = CallState.ended if answered else CallState.abandoned
    if call.direction is CallDirection.outbound and not answered:
        call.state = CallState.ended
    call.ended_at = now
    call.hangup_by = hangup_by
    call.end_reason = reason[:32]
    if answered:
        call.duration_seconds = seconds_between(call.answered_at, now)
    else:
        call.wait_seconds = seconds_between(call.queued_at, now)
    uow.session.add(call)
    event = "ended" if call.state is CallState.ended else "abandoned"
    agent = await agent_name(uow.session, call.agent_id) if answered else None
    await record(
        uow,
        call,
        event,
        actor=actor,
        hangup_by=hangup_by,
        reason=reason,
        duration=call.duration_seconds,
        wait=call.wait_seconds,
        agent=agent or None,
    )


def recording_key(workspace_id: int, call_id: int, suffix: str = ".ogg") -> str:
    """Storage key (under DATA_DIR/attachments) of a call's recording."""
    return f"{workspace_id}/{RECORDINGS_DIR}/call-{call_id}{suffix}"


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


async def do_attach_recording(
    uow: UnitOfWork, call: Call, path: Path, key: str, seconds: float
) -> Attachment:
    """The finished recording file becomes a ticket attachment and a `recording` event."""
    assert call.id is not None
    import asyncio

    sha, size = await asyncio.to_thread(_sha256, path)
    attachment = Attachment(
        workspace_id=call.workspace_id,
        ticket_id=call.ticket_id,
        filename=f"call-{call.id}.ogg",
        content_type="audio/ogg",
        size=size,
        sha256=sha,
        storage_key=key,
    )
    uow.session.add(attachment)
    await uow.session.flush()
    call.recording_attachment_id = attachment.id
    uow.session.add(call)
    await record(
        uow,
        call,
        "recorded",
        kind=EventKind.recording,
        internal=True,
        duration=round(seconds, 2),
        attachments=[attachment.id],
        attachment_id=attachment.id,
    )
    return attachment


def recording_enabled(settings: dict[str, Any] | None) -> bool:
    value = (settings or {}).get("recording")
    if isinstance(value, dict):
        return bool(value.get("enabled"))
    return bool(value)
