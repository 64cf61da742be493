"""/emails: stored mail of both directions, and its original source as .eml."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.services import email_messages
from app.web.api.deps import Ctx, CurrentActor, Session
from app.web.api.errors import COMMON_ERRORS
from app.web.api.schemas.common import PathId

router = APIRouter(prefix="/emails", tags=["emails"], responses=COMMON_ERRORS)


@router.get("/{mail_id}", summary="A stored email: full text and sanitized HTML")
async def get_email(mail_id: PathId, actor: CurrentActor, session: Session) -> dict[str, Any]:
    mail = await email_messages.get_mail(session, actor, mail_id)
    return email_messages.mail_public(mail)


@router.get(
    "/{mail_id}/raw",
    summary="The original message as received or sent (.eml)",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}}},
)
async def get_email_raw(
    mail_id: PathId, actor: CurrentActor, session: Session, ctx: Ctx
) -> Response:
    mail = await email_messages.get_mail(session, actor, mail_id)
    data = await email_messages.raw_bytes(session, ctx.settings.data_dir, mail)
    return Response(
        content=data,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="email-{mail.id}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )
