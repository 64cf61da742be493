"""/search: one query over tickets (full text) and contacts (name, email)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.services import contacts, tickets
from app.web.api.deps import CurrentActor, Session
from app.web.api.errors import COMMON_ERRORS
from app.web.api.schemas.common import check_query_text
from app.web.api.schemas.search import SearchResults

router = APIRouter(tags=["search"], responses=COMMON_ERRORS)


@router.get(
    "/search",
    response_model=SearchResults,
    summary="Search tickets and contacts",
    description="Tickets match on subject and timeline text (only tickets you may see); "
    "contacts on name and email. Use the list endpoints with `q` to page further. "
    "A query matching more than 5 000 subjects or messages ranks the newest 5 000 of each.",
)
async def search(
    actor: CurrentActor,
    session: Session,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=50, description="Per kind of result.")] = 20,
) -> dict[str, Any]:
    q = check_query_text(q) or ""
    if not q.strip():
        return {"tickets": [], "contacts": []}
    found, _ = await tickets.list_tickets(
        session, actor, tickets.TicketFilter(q=q), sort="-updated_at", limit=limit
    )
    people = await contacts.list_contacts(session, actor.workspace_id, q=q.strip(), limit=limit)
    return {
        "tickets": [tickets.ticket_public(t) for t in found],
        "contacts": await contacts.contacts_public(session, people),
    }
