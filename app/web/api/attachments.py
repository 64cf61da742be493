"""Attachments: upload to a ticket, list a ticket's files, download one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from starlette.responses import FileResponse

from app.services import attachments
from app.services.attachment_types import serve_inline
from app.services.errors import NotFound
from app.web.api.deps import Ctx, CurrentActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS
from app.web.api.schemas.attachments import AttachmentOut
from app.web.api.schemas.common import Page, PathId

router = APIRouter(tags=["attachments"], responses=COMMON_ERRORS)

SNIFF_BYTES = 1024


@router.post(
    "/tickets/{ticket_id}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    summary="Upload a file to a ticket",
    description="`multipart/form-data` with one part named `file`. Reference the returned id "
    "in `attachment_ids` of a reply to send it.",
)
async def upload(
    ticket_id: PathId,
    file: Annotated[UploadFile, File(description="The file; its size is limited per server.")],
    actor: CurrentActor,
    uow: Uow,
    ctx: Ctx,
) -> dict[str, Any]:
    limit = ctx.settings.max_upload_bytes
    content = await file.read(limit + 1)
    attachment = await attachments.do_store_attachment(
        uow,
        actor,
        ctx.settings.data_dir,
        ticket_id=ticket_id,
        filename=file.filename or "attachment",
        content_type=file.content_type or "application/octet-stream",
        content=content,
        max_bytes=limit,
    )
    out = attachments.attachment_public(attachment)
    await uow.commit()
    return out


@router.get(
    "/tickets/{ticket_id}/attachments",
    response_model=Page[AttachmentOut],
    summary="List a ticket's files",
)
async def list_for_ticket(
    ticket_id: PathId, actor: CurrentActor, session: Session
) -> dict[str, Any]:
    rows = await attachments.list_ticket_attachments(session, actor, ticket_id)
    return {"items": [attachments.attachment_public(a) for a in rows], "next_cursor": None}


@router.get(
    "/attachments/{attachment_id}",
    summary="Download a file",
    description="Served as a download unless it is an image, PDF, audio or plain text whose "
    "bytes match its type.",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file's bytes.",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def download(
    attachment_id: PathId, actor: CurrentActor, session: Session, ctx: Ctx
) -> FileResponse:
    attachment = await attachments.get_attachment(session, actor, attachment_id)
    path = attachments.storage_path(ctx.settings.data_dir, attachment.storage_key)
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise NotFound("the file is missing from storage") from None
    inline = serve_inline(attachment.content_type, attachments.INLINE_TYPES, head)
    return FileResponse(
        path,
        media_type=attachment.content_type if inline else "application/octet-stream",
        filename=attachment.filename,
        content_disposition_type="inline" if inline else "attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            # Chrome's PDF viewer refuses to run in a sandboxed document.
            "Content-Security-Policy": "default-src 'none'"
            + ("" if attachment.content_type == "application/pdf" and inline else "; sandbox"),
            "Cache-Control": "private, max-age=3600",
        },
    )
