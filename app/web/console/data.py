"""JSON endpoints the console's JavaScript needs beyond the REST API.

They exist where the console needs a shape the integration API does not offer
(enriched inbox rows, the supervisor snapshot, merge by ticket number, uploads
from a form); everything else the browser does through /api/v1 with its cookie.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, JSONResponse, Response

from app.models import Channel, Priority, Role, TicketStatus
from app.services import canned, console_views, tickets
from app.services.attachments import (
    INLINE_TYPES,
    attachment_public,
    do_store_attachment,
    get_attachment,
    storage_path,
)
from app.services.errors import Invalid, NotFound
from app.web.console.base import Visit, console_route, ice_for_agent, json_body

MAX_UPLOADS = 10


def _enum_or_none(kind: type[Any], raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise Invalid(f"unknown value {raw!r}") from None


@console_route("/console/api/inbox")
async def inbox_data(visit: Visit) -> Response:
    params = visit.request.query_params
    statuses = [s for s in params.getlist("status") if s]
    if statuses == ["any"]:
        status_list: list[TicketStatus] = []
    elif statuses:
        status_list = [_enum_or_none(TicketStatus, s) for s in statuses]
    else:
        status_list = list(console_views.ACTIVE)
    since = params.get("updated_since")
    try:
        updated_since = datetime.fromisoformat(since) if since else None
        team_id = int(params["team_id"]) if params.get("team_id") else None
        limit = int(params.get("limit", "100"))
        ids = [int(i) for i in params.get("ids", "").split(",") if i] if "ids" in params else None
    except ValueError:
        raise Invalid("a number or date parameter is not valid") from None
    query = console_views.InboxQuery(
        view=params.get("view", "all"),
        status=status_list,
        channel=_enum_or_none(Channel, params.get("channel")),
        priority=_enum_or_none(Priority, params.get("priority")),
        tag=params.get("tag") or None,
        team_id=team_id,
        q=params.get("q") or None,
        sort=params.get("sort", "updated"),
        updated_since=updated_since,
        ticket_ids=ids,
        limit=limit,
    )
    rows = await console_views.inbox_rows(visit.uow.session, visit.actor, query)
    return JSONResponse({"items": rows})


@console_route("/console/api/ice")
async def ice_servers(visit: Visit) -> Response:
    # TURN credentials expire; a console open for longer asks again before a call.
    return JSONResponse(
        {"ice_servers": ice_for_agent(visit)}, headers={"Cache-Control": "no-store"}
    )


@console_route("/console/api/canned")
async def canned_list(visit: Visit) -> Response:
    q = visit.request.query_params.get("q")
    if q is not None and len(q) > 64:
        raise Invalid("search text is longer than 64 characters")
    rows = await canned.list_canned(visit.uow.session, visit.actor.workspace_id, q=q, limit=50)
    return JSONResponse({"items": [canned.canned_public(c) for c in rows]})


@console_route("/console/api/tickets/{ticket_id:int}/merge", methods=("POST",))
async def merge(visit: Visit) -> Response:
    ticket_id = int(visit.request.path_params["ticket_id"])
    body = await json_body(visit.request)
    number = body.get("source_number")
    if not isinstance(number, int) or number <= 0:
        raise Invalid("source_number must be a ticket number")
    source = await tickets.get_ticket_by_number(visit.uow.session, visit.actor.workspace_id, number)
    if source is None or not tickets.can_see(visit.actor, source) or source.id is None:
        raise NotFound("ticket not found")
    target = await tickets.do_merge_tickets(visit.uow, visit.actor, ticket_id, source.id)
    await visit.uow.commit()
    return JSONResponse(tickets.ticket_public(target))


@console_route("/console/api/supervisor", role=Role.supervisor)
async def supervisor_data(visit: Visit) -> Response:
    session, ws = visit.uow.session, visit.actor.workspace_id
    ttl = visit.settings.chat_presence_ttl_seconds
    states = await console_views.presence_by_agent(session, ws, ttl)
    snapshot = await console_views.supervisor_snapshot(session, visit.actor, states)
    return JSONResponse(snapshot)


@console_route("/console/api/mails/{mail_id:int}")
async def mail_data(visit: Visit) -> Response:
    mail_id = int(visit.request.path_params["mail_id"])
    data = await console_views.mail_view(visit.uow.session, visit.actor, mail_id)
    return JSONResponse(data, headers={"Cache-Control": "private, max-age=300"})


@console_route("/console/api/contacts/{contact_id:int}")
async def contact_data(visit: Visit) -> Response:
    contact_id = int(visit.request.path_params["contact_id"])
    exclude = visit.request.query_params.get("exclude")
    data = await console_views.contact_context(
        visit.uow.session, visit.actor, contact_id, int(exclude) if exclude else None
    )
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@console_route("/console/api/tickets/{ticket_id:int}/attachments", methods=("POST",))
async def upload(visit: Visit) -> Response:
    ticket_id = int(visit.request.path_params["ticket_id"])
    await tickets.get_ticket(visit.uow.session, visit.actor, ticket_id)
    limit = visit.settings.max_upload_bytes
    form = await visit.request.form(max_files=MAX_UPLOADS, max_fields=MAX_UPLOADS + 5)
    stored = []
    for value in form.getlist("file"):
        if not isinstance(value, UploadFile):
            continue
        content = await value.read(limit + 1)
        attachment = await do_store_attachment(
            visit.uow,
            visit.actor,
            visit.settings.data_dir,
            ticket_id=ticket_id,
            filename=value.filename or "attachment",
            content_type=value.content_type or "application/octet-stream",
            content=content,
            max_bytes=limit,
        )
        stored.append(attachment_public(attachment))
    if not stored:
        raise Invalid("send at least one file in the `file` field")
    await visit.uow.commit()
    return JSONResponse({"items": stored}, status_code=201)


@console_route("/console/attachments/{attachment_id:int}")
async def download(visit: Visit) -> Response:
    attachment_id = int(visit.request.path_params["attachment_id"])
    attachment = await get_attachment(visit.uow.session, visit.actor, attachment_id)
    path = storage_path(visit.settings.data_dir, attachment.storage_key)
    if not path.exists():
        raise NotFound("attachment file is missing")
    inline = attachment.content_type in INLINE_TYPES and visit.request.query_params.get("dl") != "1"
    return FileResponse(
        path,
        media_type=attachment.content_type,
        filename=attachment.filename,
        content_disposition_type="inline" if inline else "attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            # Even a rendered file can never script the console's origin.
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )


routes = [
    inbox_data,
    ice_servers,
    canned_list,
    merge,
    supervisor_data,
    mail_data,
    contact_data,
    upload,
    download,
]
