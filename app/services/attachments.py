"""Files attached to tickets, stored content-addressed under DATA_DIR/attachments."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Attachment
from app.services.actors import Actor
from app.services.errors import Invalid, NotFound, TooLarge
from app.services.tickets import get_ticket

MAX_FILENAME = 255
# What a browser may render inline; everything else is served as a download.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "audio/ogg",
        "audio/wav",
        "audio/webm",
        "text/plain",
    }
)


def safe_filename(name: str) -> str:
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().strip(".")
    return (name or "attachment")[:MAX_FILENAME]


def storage_path(data_dir: Path, key: str) -> Path:
    return data_dir / "attachments" / key


# Folders known to exist: every inbound mail writes at least one blob, and asking for
# the folder each time cost about as much as writing the file.
_folders: set[str] = set()


def write_blob(data_dir: Path, workspace_id: int, content: bytes) -> tuple[str, str]:
    """Store bytes once per workspace; returns (storage key, sha256)."""
    sha = hashlib.sha256(content).hexdigest()
    key = f"{workspace_id}/{sha[:2]}/{sha}"
    path = os.path.join(data_dir, "attachments", key)
    if not os.path.exists(path):
        folder = os.path.dirname(path)
        if folder not in _folders:
            os.makedirs(folder, exist_ok=True)
            _folders.add(folder)
        # Written aside and renamed: a crash mid-write never leaves a partial blob
        # under the name that says it is complete.
        tmp = path + ".tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:  # the folder was removed behind our back
            _folders.discard(folder)
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return key, sha


async def do_store_attachment(
    uow: UnitOfWork,
    actor: Actor,
    data_dir: Path,
    *,
    ticket_id: int | None,
    filename: str,
    content_type: str,
    content: bytes,
    max_bytes: int,
    content_id: str | None = None,
    inline: bool = False,
) -> Attachment:
    if ticket_id is not None:
        await get_ticket(uow.session, actor, ticket_id)
    if len(content) > max_bytes:
        raise TooLarge(f"attachment is larger than {max_bytes} bytes")
    if not content:
        raise Invalid("attachment is empty")
    ctype = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", ctype):
        ctype = "application/octet-stream"
    key, sha = write_blob(data_dir, actor.workspace_id, content)
    attachment = Attachment(
        workspace_id=actor.workspace_id,
        ticket_id=ticket_id,
        filename=safe_filename(filename),
        content_type=ctype,
        size=len(content),
        sha256=sha,
        storage_key=key,
        content_id=content_id,
        inline=inline,
    )
    uow.session.add(attachment)
    await uow.session.flush()
    return attachment


async def get_attachment(session: AsyncSession, actor: Actor, attachment_id: int) -> Attachment:
    attachment = await session.get(Attachment, attachment_id)
    if attachment is None or attachment.workspace_id != actor.workspace_id:
        raise NotFound("attachment not found")
    if attachment.ticket_id is not None:
        await get_ticket(session, actor, attachment.ticket_id)
    return attachment


async def check_attachments(
    session: AsyncSession, actor: Actor, ticket_id: int, ids: list[int]
) -> list[Attachment]:
    """Attachments referenced by a reply must belong to that ticket (or be unbound uploads)."""
    if not ids:
        return []
    stmt = select(Attachment).where(
        Attachment.workspace_id == actor.workspace_id, col(Attachment.id).in_(ids)
    )
    found = {a.id: a for a in (await session.exec(stmt)).all()}
    for attachment_id in ids:
        attachment = found.get(attachment_id)
        if attachment is None or attachment.ticket_id not in (None, ticket_id):
            raise NotFound(f"attachment {attachment_id} not found")
    return [found[i] for i in ids]


def attachment_public(attachment: Attachment) -> dict[str, object]:
    return {
        "id": attachment.id,
        "ticket_id": attachment.ticket_id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "inline": attachment.inline,
        "content_id": attachment.content_id,
        "created_at": attachment.created_at.isoformat(),
    }


async def list_ticket_attachments(
    session: AsyncSession, actor: Actor, ticket_id: int, *, limit: int = 500
) -> list[Attachment]:
    await get_ticket(session, actor, ticket_id)
    stmt = (
        select(Attachment)
        .where(Attachment.workspace_id == actor.workspace_id, Attachment.ticket_id == ticket_id)
        .order_by(col(Attachment.id))
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())
