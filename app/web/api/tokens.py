"""/tokens: API tokens (admin). The token is shown once, in the create response."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.models import ApiToken
from app.services import tokens
from app.services.timeline import iso
from app.web.api.deps import AdminActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS
from app.web.api.schemas.common import Page, PathId
from app.web.api.schemas.tokens import TokenCreate, TokenCreated, TokenOut

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=COMMON_ERRORS)


def token_out(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "role": token.role,
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at),
    }


@router.get("", response_model=Page[TokenOut], summary="List API tokens (admin)")
async def list_tokens(actor: AdminActor, session: Session) -> dict[str, Any]:
    rows = await tokens.list_tokens(session, actor.workspace_id)
    return {"items": [token_out(t) for t in rows], "next_cursor": None}


@router.post(
    "", status_code=201, response_model=TokenCreated, summary="Create an API token (admin)"
)
async def create_token(body: TokenCreate, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    token, plaintext = await tokens.do_create_token(uow, actor, name=body.name, role=body.role)
    out = {**token_out(token), "token": plaintext}
    await uow.commit()
    return out


@router.get("/{token_id}", response_model=TokenOut, summary="Get an API token (admin)")
async def get_token(token_id: PathId, actor: AdminActor, session: Session) -> dict[str, Any]:
    return token_out(await tokens.get_token(session, actor.workspace_id, token_id))


@router.delete(
    "/{token_id}",
    response_model=TokenOut,
    summary="Revoke an API token (admin)",
    description="Takes effect at once; the token is kept, marked revoked, for the record.",
)
async def revoke_token(token_id: PathId, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    token = await tokens.do_revoke_token(uow, actor, token_id)
    out = token_out(token)
    await uow.commit()
    return out
