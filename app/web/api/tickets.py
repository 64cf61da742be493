"""/tickets: the ticket stream for integrations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from app.models import Channel, IdentityKind, Priority, TicketStatus
from app.models.ticket import EventKind
from app.services import idempotency, ticket_deletion, tickets
from app.services.actors import Actor
from app.services.contacts import IdentityIn, do_resolve_contact, get_contact
from app.services.errors import Invalid
from app.services.timeline import event_public, list_events
from app.web.api.deps import AdminActor, Ctx, CurrentActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS, error_responses
from app.web.api.responses import json_response
from app.web.api.schemas.common import (
    MAX_ID,
    EventOut,
    Page,
    PathId,
    QueryId,
    check_query_text,
)
from app.web.api.schemas.tickets import (
    MergeRequest,
    NoteCreate,
    ReplyCreate,
    TicketCreate,
    TicketOut,
    TicketUpdate,
)

router = APIRouter(prefix="/tickets", tags=["tickets"], responses=COMMON_ERRORS)

MAX_PAGE = 200


@router.get("", response_model=Page[TicketOut], summary="List tickets")
async def list_tickets(
    actor: CurrentActor,
    session: Session,
    status: Annotated[list[TicketStatus] | None, Query()] = None,
    assignee_id: QueryId = None,
    unassigned: bool = False,
    team_id: QueryId = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    contact_id: QueryId = None,
    channel: Channel | None = None,
    priority: Priority | None = None,
    updated_since: datetime | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Full-text search")] = None,
    sort: Annotated[str, Query(description="One of " + ", ".join(tickets.SORTS))] = "-updated_at",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JSONResponse:
    filters = tickets.TicketFilter(
        status=status or [],
        assignee_id=assignee_id,
        unassigned=unassigned,
        team_id=team_id,
        tag=tag,
        contact_id=contact_id,
        channel=channel,
        priority=priority,
        updated_since=updated_since,
        q=check_query_text(q),
    )
    rows, next_cursor = await tickets.list_tickets(
        session, actor, filters, sort=sort, limit=limit, cursor=cursor
    )
    # Hot paths answer with json_response: the dicts already have the models' shapes.
    items = [tickets.ticket_public(t) for t in rows]
    return json_response({"items": items, "next_cursor": next_cursor})


async def _contact_for(uow: Uow, actor: Actor, ref: Any) -> tuple[int | None, Actor | None]:
    if ref is None:
        return None, None
    if ref.id is not None:
        contact = await get_contact(uow.session, actor.workspace_id, ref.id)
    elif ref.email is not None:
        contact, _ = await do_resolve_contact(
            uow, actor.workspace_id, IdentityIn(IdentityKind.email, str(ref.email)), name=ref.name
        )
    elif ref.external_id is not None:
        contact, _ = await do_resolve_contact(
            uow,
            actor.workspace_id,
            IdentityIn(IdentityKind.external, ref.external_id),
            name=ref.name,
        )
    else:
        raise Invalid("contact needs an id, an email or an external_id")
    assert contact.id is not None
    return contact.id, Actor.contact(
        actor.workspace_id, contact.id, contact.name or contact.email or ""
    )


@router.post(
    "",
    status_code=201,
    response_model=TicketOut,
    summary="Create a ticket",
    responses=error_responses(409),
)
async def create_ticket(
    body: TicketCreate,
    actor: CurrentActor,
    uow: Uow,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=255, description="Retries with the same key return the first result."),
    ] = None,
) -> Any:
    payload = body.model_dump(mode="json")
    if idempotency_key is not None:
        record = await idempotency.lookup(uow.session, actor.workspace_id, idempotency_key, payload)
        if record is not None:
            return JSONResponse(record.response, status_code=record.status_code)
    contact_id, contact_actor = await _contact_for(uow, actor, body.contact)
    ticket, _ = await tickets.do_create_ticket(
        uow,
        actor,
        subject=body.subject,
        contact_id=contact_id,
        channel=Channel.api,
        inbox_id=body.inbox_id,
        priority=body.priority,
        tags=body.tags,
        team_id=body.team_id,
        assignee_id=body.assignee_id,
        custom_fields=body.custom_fields,
        message=body.message,
        message_kind=EventKind.message,
        message_actor=contact_actor or actor,
    )
    public = tickets.ticket_public(ticket)
    if idempotency_key is not None:
        idempotency.remember(uow, actor.workspace_id, idempotency_key, payload, 201, public)
    await uow.commit()
    return json_response(public, status_code=201)


@router.get("/{ticket_id}", response_model=TicketOut, summary="Get a ticket")
async def get_ticket(ticket_id: PathId, actor: CurrentActor, session: Session) -> JSONResponse:
    return json_response(tickets.ticket_public(await tickets.get_ticket(session, actor, ticket_id)))


@router.patch(
    "/{ticket_id}",
    response_model=TicketOut,
    summary="Change a ticket",
    responses=error_responses(409),
)
async def update_ticket(
    ticket_id: PathId, body: TicketUpdate, actor: CurrentActor, uow: Uow
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    for key in ("subject", "status", "priority", "tags", "custom_fields"):
        if key in changes and changes[key] is None:
            raise Invalid(f"{key} cannot be null")
    ticket = await tickets.do_update_ticket(uow, actor, ticket_id, changes)
    await uow.commit()
    return tickets.ticket_public(ticket)


@router.delete(
    "/{ticket_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a ticket (admin)",
    description="Erases the ticket for good: its timeline, attachments, call recordings, "
    "calls, callbacks and stored emails; files go from storage unless another ticket "
    "shares them. 409 while a call on the ticket is in progress. Tickets merged into it "
    "become plain tickets again; files that copies on a merge target still show move to "
    "that target. Emits the `ticket.deleted` webhook and writes the audit log.",
    responses=error_responses(409),
)
async def delete_ticket(ticket_id: PathId, actor: AdminActor, uow: Uow, ctx: Ctx) -> Response:
    await ticket_deletion.do_delete_ticket(uow, actor, ctx.settings.data_dir, ticket_id)
    await uow.commit()
    return Response(status_code=204)


@router.post(
    "/{ticket_id}/merge",
    response_model=TicketOut,
    summary="Merge another ticket into this one",
    responses=error_responses(409),
)
async def merge_ticket(
    ticket_id: PathId, body: MergeRequest, actor: CurrentActor, uow: Uow
) -> dict[str, Any]:
    target = await tickets.do_merge_tickets(uow, actor, ticket_id, body.source_ticket_id)
    await uow.commit()
    return tickets.ticket_public(target)


@router.get("/{ticket_id}/events", response_model=Page[EventOut], summary="Read the timeline")
async def timeline(
    ticket_id: PathId,
    actor: CurrentActor,
    session: Session,
    after_seq: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    await tickets.get_ticket(session, actor, ticket_id)
    events = await list_events(session, ticket_id, after_seq=after_seq, limit=limit + 1)
    more = len(events) > limit
    events = events[:limit]
    next_cursor = str(events[-1].seq) if more and events else None
    return json_response({"items": [event_public(e) for e in events], "next_cursor": next_cursor})


@router.post(
    "/{ticket_id}/replies",
    status_code=201,
    response_model=EventOut,
    summary="Reply to the customer",
    description="Stored on the timeline at once; the ticket's channel delivers it.",
)
async def reply(
    ticket_id: PathId, body: ReplyCreate, actor: CurrentActor, uow: Uow
) -> JSONResponse:
    payload = {"attachments": body.attachment_ids} if body.attachment_ids else None
    if body.attachment_ids:
        from app.services.attachments import check_attachments

        await check_attachments(uow.session, actor, ticket_id, body.attachment_ids)
    event, created = await tickets.do_reply(
        uow, actor, ticket_id, body=body.body, client_id=body.client_id, payload=payload
    )
    await uow.commit()
    # A repeated client_id answers 200 with the event stored the first time.
    return json_response(event_public(event), status_code=201 if created else 200)


@router.post("/{ticket_id}/notes", status_code=201, response_model=EventOut, summary="Add a note")
async def note(ticket_id: PathId, body: NoteCreate, actor: CurrentActor, uow: Uow) -> JSONResponse:
    event, created = await tickets.do_note(
        uow, actor, ticket_id, body=body.body, client_id=body.client_id
    )
    await uow.commit()
    return json_response(event_public(event), status_code=201 if created else 200)
