"""Signed console session cookies, shared by console pages, the API and /console/ws.

The cookie holds (agent id, workspace id, password fingerprint), signed with the
secret key and time-limited; nothing is stored server-side.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection
from starlette.responses import Response

from app.models import Agent
from app.services.actors import Actor
from app.services.agent_auth import actor_for_session, password_fingerprint
from app.settings import Settings

COOKIE = "hd_session"
MAX_AGE = 12 * 3600


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret, salt="console-session")


def set_session_cookie(response: Response, settings: Settings, agent: Agent) -> None:
    value = _serializer(settings).dumps(
        {"a": agent.id, "w": agent.workspace_id, "f": password_fingerprint(agent)}
    )
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def read_session(conn: HTTPConnection, settings: Settings) -> dict[str, Any] | None:
    raw = conn.cookies.get(COOKIE)
    if not raw or len(raw) > 4096:
        return None
    try:
        data = _serializer(settings).loads(raw, max_age=MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not all(k in data for k in ("a", "w", "f")):
        return None
    return data


async def session_actor(conn: HTTPConnection, session: AsyncSession) -> Actor | None:
    settings: Settings = conn.app.state.settings
    data = read_session(conn, settings)
    if data is None:
        return None
    return await actor_for_session(session, int(data["a"]), int(data["w"]), str(data["f"]))
