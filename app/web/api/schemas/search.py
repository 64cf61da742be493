"""Search results."""

from __future__ import annotations

from pydantic import BaseModel

from app.web.api.schemas.contacts import ContactOut
from app.web.api.schemas.tickets import TicketOut


class SearchResults(BaseModel):
    tickets: list[TicketOut]
    contacts: list[ContactOut]
