"""Canned responses: workspace-wide reply snippets, managed by admins, used by every agent."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Role
from app.models.base import utcnow
from app.models.canned import CannedResponse
from app.services import audit
from app.services.actors import Actor
from app.services.errors import Conflict, Invalid, NotFound

SHORTCUT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_BODY = 10_000
MAX_TITLE = 200
MAX_PER_WORKSPACE = 1000


def canned_public(canned: CannedResponse) -> dict[str, Any]:
    return {
        "id": canned.id,
        "shortcut": canned.shortcut,
        "title": canned.title,
        "body": canned.body,
        "created_at": canned.created_at.isoformat(),
        "updated_at": canned.updated_at.isoformat(),
    }


def check_fields(shortcut: str, title: str, body: str) -> tuple[str, str, str]:
    shortcut = shortcut.strip().lower().lstrip("/")
    if not SHORTCUT_RE.match(shortcut):
        raise Invalid("shortcut must be 1 to 64 lowercase letters, digits, '-' or '_'")
    title = " ".join(title.split()) or shortcut
    if len(title) > MAX_TITLE:
        raise Invalid(f"title is longer than {MAX_TITLE} characters")
    if not body.strip():
        raise Invalid("a canned response needs a body")
    if len(body) > MAX_BODY:
        raise Invalid(f"body is longer than {MAX_BODY} characters")
    return shortcut, title, body


async def list_canned(
    session: AsyncSession, workspace_id: int, q: str | None = None, limit: int = 200
) -> Sequence[CannedResponse]:
    stmt = select(CannedResponse).where(CannedResponse.workspace_id == workspace_id)
    if q:
        prefix = q.strip().lower().lstrip("/")
        if prefix:
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(col(CannedResponse.shortcut).like(like, escape="\\"))
    stmt = stmt.order_by(col(CannedResponse.shortcut)).limit(limit)
    return (await session.exec(stmt)).all()


async def get_canned(session: AsyncSession, workspace_id: int, canned_id: int) -> CannedResponse:
    canned = await session.get(CannedResponse, canned_id)
    if canned is None or canned.workspace_id != workspace_id:
        raise NotFound("canned response not found")
    return canned


async def _shortcut_taken(
    session: AsyncSession, workspace_id: int, shortcut: str, except_id: int | None = None
) -> bool:
    stmt = select(CannedResponse.id).where(
        CannedResponse.workspace_id == workspace_id, CannedResponse.shortcut == shortcut
    )
    found = (await session.exec(stmt)).first()
    return found is not None and found != except_id


async def do_create_canned(
    uow: UnitOfWork, actor: Actor, *, shortcut: str, title: str, body: str
) -> CannedResponse:
    actor.require(Role.admin)
    shortcut, title, body = check_fields(shortcut, title, body)
    if await _shortcut_taken(uow.session, actor.workspace_id, shortcut):
        raise Conflict(f"shortcut /{shortcut} exists")
    if len(await list_canned(uow.session, actor.workspace_id, limit=MAX_PER_WORKSPACE)) >= (
        MAX_PER_WORKSPACE
    ):
        raise Invalid(f"at most {MAX_PER_WORKSPACE} canned responses per workspace")
    canned = CannedResponse(
        workspace_id=actor.workspace_id, shortcut=shortcut, title=title, body=body
    )
    uow.session.add(canned)
    await uow.session.flush()
    audit.record(uow, actor, "canned.create", "canned_response", canned.id, {"shortcut": shortcut})
    return canned


async def do_update_canned(
    uow: UnitOfWork, actor: Actor, canned_id: int, *, shortcut: str, title: str, body: str
) -> CannedResponse:
    actor.require(Role.admin)
    canned = await get_canned(uow.session, actor.workspace_id, canned_id)
    shortcut, title, body = check_fields(shortcut, title, body)
    if await _shortcut_taken(uow.session, actor.workspace_id, shortcut, except_id=canned_id):
        raise Conflict(f"shortcut /{shortcut} exists")
    canned.shortcut, canned.title, canned.body = shortcut, title, body
    canned.updated_at = utcnow()
    uow.session.add(canned)
    audit.record(uow, actor, "canned.update", "canned_response", canned.id, {"shortcut": shortcut})
    return canned


async def do_delete_canned(uow: UnitOfWork, actor: Actor, canned_id: int) -> None:
    actor.require(Role.admin)
    canned = await get_canned(uow.session, actor.workspace_id, canned_id)
    await uow.session.delete(canned)
    audit.record(uow, actor, "canned.delete", "canned_response", canned_id, {})
