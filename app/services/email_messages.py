"""Read access to stored mail: the original bytes (.eml) and the unsplit body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import MailMessage, Role
from app.services.actors import Actor
from app.services.attachments import storage_path
from app.services.errors import NotFound
from app.services.tickets import get_ticket


async def get_mail(session: AsyncSession, actor: Actor, mail_id: int) -> MailMessage:
    """A stored mail the actor may see: through its ticket, or (no ticket) supervisors."""
    mail = await session.get(MailMessage, mail_id)
    if mail is None or mail.workspace_id != actor.workspace_id:
        raise NotFound("email not found")
    if mail.ticket_id is not None:
        await get_ticket(session, actor, mail.ticket_id)
    else:
        actor.require(Role.supervisor)
    return mail


async def raw_bytes(session: AsyncSession, data_dir: Path, mail: MailMessage) -> bytes:
    """The original bytes: from a file (`raw_key`) or, for a small inbound mail, from its
    row (`raw_data`, never loaded with the entity, so read here on purpose)."""
    if not mail.raw_key:
        stmt = select(MailMessage.raw_data).where(col(MailMessage.id) == mail.id)
        data = (await session.exec(stmt)).first()
        if data is None:
            raise NotFound("this email has no stored source yet")
        return data
    path = storage_path(data_dir, mail.raw_key)
    if not path.exists():
        raise NotFound("the stored source of this email is missing")
    return path.read_bytes()


def mail_public(mail: MailMessage) -> dict[str, Any]:
    return {
        "id": mail.id,
        "ticket_id": mail.ticket_id,
        "event_id": mail.event_id,
        "direction": mail.direction.value,
        "message_id": mail.message_id,
        "subject": mail.subject,
        "from": mail.from_address,
        "size": mail.size,
        "source": mail.source,
        "auto_reasons": mail.auto_reasons,
        "parse_errors": mail.parse_errors,
        "full_text": mail.full_text,
        "html": mail.html,
        "created_at": mail.created_at.isoformat(),
    }
