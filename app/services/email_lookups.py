"""What a batch of inbound mails needs to know from the database, in at most three queries.

Storing a mail asks: is this Message-ID already stored in this inbox? Which tickets
own the Message-IDs it references? Which ticket does its token or subject tag name?
Who is the sender? Asked per mail that is five to eight statements; asked once for
every mail of a group-commit batch (`channels.email.ingest`) it is three at most, whatever
the batch size. The batch then keeps the answers current as it writes, so a mail
that refers to (or repeats) an earlier mail of the same batch sees it.

Everything is scoped to one workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Contact, ContactIdentity, IdentityKind, MailMessage, Ticket
from app.services.contacts import normalize_identity
from app.services.errors import Invalid
from app.services.row_insert import core_connection
from app.services.tickets import return_numbers, take_numbers

MAX_THREAD_IDS = 60

# Built once: building a statement costs more than running it on this path.
_MAILS = select(MailMessage.message_id, MailMessage.inbox_id, MailMessage.ticket_id).where(
    MailMessage.workspace_id == bindparam("workspace_id"),
    col(MailMessage.message_id).in_(bindparam("ids", expanding=True)),
)
_TICKETS = select(Ticket).where(
    Ticket.workspace_id == bindparam("workspace_id"),
    or_(
        col(Ticket.id).in_(bindparam("ids", expanding=True)),
        col(Ticket.number).in_(bindparam("numbers", expanding=True)),
    ),
)
_CONTACTS = (
    select(ContactIdentity.value, Contact)
    .join(Contact, col(Contact.id) == ContactIdentity.contact_id)
    .where(
        ContactIdentity.workspace_id == bindparam("workspace_id"),
        ContactIdentity.kind == IdentityKind.email,
        col(ContactIdentity.value).in_(bindparam("emails", expanding=True)),
    )
)


@dataclass(frozen=True)
class MailKeys:
    """The lookup keys of one mail for one inbox."""

    inbox_id: int
    message_id: str
    thread_ids: Sequence[str] = ()
    token_ticket_id: int | None = None
    subject_number: int | None = None
    sender_email: str | None = None


def _email_key(address: str) -> str | None:
    try:
        return normalize_identity(IdentityKind.email, address)
    except Invalid:
        return None


@dataclass
class TicketNumbers:
    """Numbers for the tickets a batch opens in one workspace: one counter UPDATE for
    all of them instead of one per ticket; the unused rest goes back before the commit."""

    workspace_id: int
    wanted: int = 1  # at most this many tickets still to open (the batch keeps it current)
    free: range = range(0)

    async def take(self, session: AsyncSession) -> int:
        if not self.free:
            self.free = await take_numbers(session, self.workspace_id, max(1, self.wanted))
        number, self.free = self.free[0], self.free[1:]
        return number

    async def give_back(self, session: AsyncSession) -> None:
        await return_numbers(session, self.workspace_id, self.free)
        self.free = range(0)


@dataclass
class MailLookups:
    workspace_id: int
    numbers: TicketNumbers
    stored: set[tuple[int, str]] = field(default_factory=set)  # (inbox_id, message_id)
    owners: dict[str, int] = field(default_factory=dict)  # message_id -> ticket_id
    numbered: dict[int, int] = field(default_factory=dict)  # ticket number -> ticket_id
    # Mails of this batch whose new ticket is queued, not yet inserted (no id yet):
    # their Message-IDs and ticket numbers.
    pending_ids: set[str] = field(default_factory=set)
    pending_numbers: set[int] = field(default_factory=set)
    # normalized email -> contact (None: no contact has it)
    contacts: dict[str, Contact | None] = field(default_factory=dict)
    # The session's identity map holds rows weakly: these keep the loaded tickets and
    # contacts there, so `session.get` finds them for the whole batch without a query.
    _keep: list[Any] = field(default_factory=list)

    @classmethod
    async def load(
        cls, session: AsyncSession, workspace_id: int, mails: Sequence[MailKeys]
    ) -> MailLookups:
        known = cls(workspace_id, TicketNumbers(workspace_id))
        ids = {m.message_id for m in mails}
        for m in mails:
            ids.update(list(dict.fromkeys(m.thread_ids))[:MAX_THREAD_IDS])
        if ids:
            params = {"workspace_id": workspace_id, "ids": list(ids)}
            # Plain columns: through Core (the ORM would add several times the cost).
            connection = await core_connection(session)
            for message_id, inbox_id, ticket_id in (await connection.execute(_MAILS, params)).all():
                known.stored.add((inbox_id, message_id))
                if ticket_id is not None:
                    known.owners[message_id] = ticket_id
        ticket_ids = set(known.owners.values())
        ticket_ids.update(m.token_ticket_id for m in mails if m.token_ticket_id is not None)
        numbers = {m.subject_number for m in mails if m.subject_number is not None}
        if ticket_ids or numbers:
            params2 = {
                "workspace_id": workspace_id,
                "ids": list(ticket_ids),
                "numbers": list(numbers),
            }
            for ticket in (await session.exec(_TICKETS, params=params2)).all():
                known._keep.append(ticket)
                if ticket.number in numbers and ticket.id is not None:
                    known.numbered[ticket.number] = ticket.id
        emails = {_email_key(m.sender_email) for m in mails if m.sender_email}
        await known._load_contacts(session, [e for e in emails if e is not None])
        return known

    async def _load_contacts(self, session: AsyncSession, emails: Sequence[str]) -> None:
        if not emails:
            return
        params = {"workspace_id": self.workspace_id, "emails": list(emails)}
        found = dict((await session.exec(_CONTACTS, params=params)).all())
        for email in emails:
            contact = found.get(email)
            # Follow merges, as `contacts.find_by_identity` does.
            while contact is not None and contact.merged_into_id is not None:
                contact = await session.get(Contact, contact.merged_into_id)
            self.contacts[email] = contact
            self._keep.append(contact)

    def is_stored(self, inbox_id: int, message_id: str) -> bool:
        return (inbox_id, message_id) in self.stored

    def owners_of(self, message_ids: Iterable[str]) -> dict[str, int]:
        return {m: self.owners[m] for m in message_ids if m in self.owners}

    def ticket_numbered(self, number: int) -> int | None:
        """The id of the workspace's ticket with this number, if the batch knows it."""
        return self.numbered.get(number)

    def contact(self, email: str) -> Contact | None:
        """The contact owning a sender address, if the batch knows one."""
        key = _email_key(email)
        return self.contacts.get(key) if key is not None else None

    def remember_mail(self, inbox_id: int, message_id: str, ticket_id: int | None) -> None:
        self.stored.add((inbox_id, message_id))
        self.pending_ids.discard(message_id)
        if ticket_id is not None:
            self.owners[message_id] = ticket_id

    def remember_ticket(self, ticket: Ticket) -> None:
        assert ticket.id is not None
        self.remember_number(ticket.number, ticket.id)
        self._keep.append(ticket)

    def remember_number(self, number: int, ticket_id: int) -> None:
        self.numbered[number] = ticket_id
        self.pending_numbers.discard(number)

    def remember_pending(self, message_id: str, number: int) -> None:
        """A mail whose new ticket is queued: `remember_mail` and `remember_number`
        follow once it has an id."""
        self.pending_ids.add(message_id)
        self.pending_numbers.add(number)

    def waits_for_pending(self, thread_ids: Iterable[str], subject_number: int | None) -> bool:
        """Would threading a mail with these keys need a ticket that is still queued?"""
        if subject_number is not None and subject_number in self.pending_numbers:
            return True
        return bool(self.pending_ids) and any(m in self.pending_ids for m in thread_ids)

    def remember_contact(self, email: str, contact: Contact | None) -> None:
        key = _email_key(email)
        if key is not None:
            self.contacts[key] = contact
            self._keep.append(contact)
