"""/inboxes/{id}/imap: fetch an email inbox's mail from an existing IMAP mailbox (admin).

The password is stored encrypted with a key derived from the secret key and is
never returned; reads show the settings and the fetch state (high-water mark,
last error).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.models import Inbox
from app.services import email_imap, workspaces
from app.web.api.deps import AdminActor, Ctx, Session, Uow
from app.web.api.errors import COMMON_ERRORS
from app.web.api.schemas.common import PathId

router = APIRouter(prefix="/inboxes", tags=["inboxes"], responses=COMMON_ERRORS)


class ImapSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253, examples=["imap.example.com"])
    port: int = Field(default=993, ge=1, le=65535)
    ssl: bool = Field(default=True, description="Implicit TLS (IMAPS); false means plain IMAP")
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(
        min_length=1, max_length=255, description="Password or app password; stored encrypted"
    )
    folder: str = Field(default="INBOX", min_length=1, max_length=255)
    poll_seconds: int = Field(
        default=60, ge=5, le=3600, description="Poll interval; with IDLE, how often to re-IDLE"
    )
    enabled: bool = True


class ImapSettingsOut(BaseModel):
    inbox_id: int
    configured: bool
    enabled: bool = False
    host: str | None = None
    port: int | None = None
    ssl: bool | None = None
    username: str | None = None
    folder: str | None = None
    poll_seconds: int | None = None
    uidvalidity: int | None = None
    last_uid: int | None = None
    last_error: str = ""


def imap_out(inbox: Inbox) -> dict[str, Any]:
    public = email_imap.imap_public(inbox)
    return {
        "inbox_id": inbox.id,
        "configured": bool(public.get("host")),
        "enabled": bool(public.get("enabled")),
        **{k: public.get(k) for k in ImapSettingsOut.model_fields if k in public},
        "last_error": str(public.get("last_error") or ""),
    }


def _wake_poller(ctx: Any) -> None:
    poller = ctx.extras.get("imap_poller")
    if poller is not None:
        poller.wake()


@router.get(
    "/{inbox_id}/imap", response_model=ImapSettingsOut, summary="IMAP fetch settings (admin)"
)
async def get_imap(inbox_id: PathId, actor: AdminActor, session: Session) -> dict[str, Any]:
    return imap_out(await workspaces.get_inbox(session, actor.workspace_id, inbox_id))


@router.put(
    "/{inbox_id}/imap",
    response_model=ImapSettingsOut,
    summary="Fetch this email inbox's mail from an IMAP mailbox (admin)",
    description="Replaces the settings. The same host, user and folder keep the fetch "
    "position; another mailbox starts over (Message-ID dedupe keeps re-reads harmless).",
)
async def put_imap(
    inbox_id: PathId, body: ImapSettingsIn, actor: AdminActor, uow: Uow, ctx: Ctx
) -> dict[str, Any]:
    inbox = await email_imap.do_configure_imap(
        uow, actor, inbox_id, secret=ctx.settings.secret, **body.model_dump()
    )
    out = imap_out(inbox)
    await uow.commit()
    _wake_poller(ctx)
    return out


@router.delete(
    "/{inbox_id}/imap",
    response_model=ImapSettingsOut,
    summary="Stop fetching over IMAP and forget the credentials (admin)",
)
async def delete_imap(inbox_id: PathId, actor: AdminActor, uow: Uow, ctx: Ctx) -> dict[str, Any]:
    inbox = await email_imap.do_remove_imap(uow, actor, inbox_id)
    out = imap_out(inbox)
    await uow.commit()
    _wake_poller(ctx)
    return out
