"""The widget's HTTP endpoints, called cross-origin from host pages.

- `GET  /widget/config?inbox=KEY`               theme, greeting, pre-chat, availability
- `POST /widget/attachments?inbox=KEY`          a visitor's upload (image or PDF)
- `GET  /widget/attachments/{id}?inbox=KEY`     a file of the visitor's conversation

CORS is granted only to the inbox's allowed origins (`Vary: Origin`), so another
site can neither read the config nor use a visitor's token from its own pages.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from app.context import AppContext
from app.models import Inbox
from app.services import attachments, widget
from app.services.actors import Actor
from app.services.attachment_types import serve_inline
from app.services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    ServiceError,
    TooLarge,
)

PREFLIGHT_MAX_AGE = "600"
UPLOADS_PER_WINDOW = 20
UPLOAD_WINDOW_SECONDS = 600.0
SNIFF_BYTES = 1024


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _cors(inbox: Inbox | None, origin: str | None) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if inbox is not None and origin and widget.origin_allowed(inbox, origin):
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _error(exc: ServiceError, headers: dict[str, str]) -> JSONResponse:
    body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _inbox(request: Request) -> Inbox:
    async with _ctx(request).sessions() as session:
        return await widget.get_widget_inbox(session, request.query_params.get("inbox"))


def _visitor_token(request: Request, form_token: Any = None) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("visitor", "bearer") and value.strip():
        return value.strip()
    return form_token if isinstance(form_token, str) and form_token else None


def _identity(raw: Any) -> dict[str, Any] | None:
    """A verified customer's identity fields, sent as JSON alongside the token."""
    if not isinstance(raw, str) or not raw:
        return None
    if len(raw) > 2048:
        raise Forbidden("identity is too long")
    try:
        value = json.loads(raw)
    except ValueError:
        raise Forbidden("identity must be JSON") from None
    return value if isinstance(value, dict) else None


async def preflight(request: Request) -> Response:
    origin = request.headers.get("origin")
    try:
        inbox = await _inbox(request)
    except NotFound as exc:
        return _error(exc, {"Vary": "Origin"})
    headers = _cors(inbox, origin)
    if "Access-Control-Allow-Origin" not in headers:
        return Response(status_code=403, headers=headers)
    headers.update(
        {
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Helpdesk-Identity",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        }
    )
    return Response(status_code=204, headers=headers)


async def config(request: Request) -> Response:
    ctx = _ctx(request)
    origin = request.headers.get("origin")
    async with ctx.read_sessions() as session:
        try:
            inbox = await widget.get_widget_inbox(session, request.query_params.get("inbox"))
        except NotFound as exc:
            return _error(exc, {"Vary": "Origin", "Cache-Control": "no-store"})
        headers = _cors(inbox, origin) | {"Cache-Control": "no-store"}
        # No Origin: a server or curl asking; the config is public. A browser page of a
        # foreign origin gets 403 without CORS headers, so it cannot read anything.
        if origin is not None and "Access-Control-Allow-Origin" not in headers:
            return _error(Forbidden("this site is not allowed to use the widget"), headers)
        available = await widget.agents_available(
            session, inbox, ctx.settings.chat_presence_ttl_seconds
        )
    body = widget.public_config(
        inbox,
        locale=widget.pick_locale(request.query_params.get("locale")),
        available=available,
        max_upload_bytes=ctx.settings.max_upload_bytes,
        ice_servers=ctx.settings.ice.for_peer(f"w{inbox.workspace_id}-inbox{inbox.id}"),
    )
    return JSONResponse(body, headers=headers)


class UploadLimiter:
    """At most N uploads per visitor per window, per process (bounded memory)."""

    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, key: str) -> None:
        now = time.monotonic()
        stamps = self.seen.pop(key, None) or deque()
        while stamps and now - stamps[0] > self.window:
            stamps.popleft()
        if len(stamps) >= self.limit:
            self.seen[key] = stamps
            raise RateLimited("too many uploads; try again in a few minutes")
        stamps.append(now)
        self.seen[key] = stamps
        while len(self.seen) > self.max_keys:
            self.seen.popitem(last=False)


async def upload(request: Request) -> Response:
    ctx = _ctx(request)
    origin = request.headers.get("origin")
    headers: dict[str, str] = {"Vary": "Origin", "Cache-Control": "no-store"}
    try:
        inbox = await _inbox(request)
        headers = _cors(inbox, origin) | {"Cache-Control": "no-store"}
        # A visitor's token only works from the sites the inbox names.
        widget.check_origin(inbox, origin)
        limit = widget.widget_max_upload(ctx.settings.max_upload_bytes)
        async with request.form(max_files=1, max_fields=4, max_part_size=4096) as form:
            token = _visitor_token(request, form.get("token"))
            identity = _identity(form.get("identity") or request.headers.get("x-helpdesk-identity"))
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise Invalid("send the file in a multipart field named 'file'")
            content = await part.read(limit + 1)
            filename = part.filename or "attachment"
        if len(content) > limit:
            raise TooLarge(f"the file is larger than {limit // (1024 * 1024)} MB")
        ctype = widget.sniff_upload(content)
        async with ctx.uow() as uow:
            contact = await widget.visitor_contact(
                uow.session, inbox, ctx.settings.secret, token, identity
            )
            ticket = None
            if contact is not None:
                ticket = await widget.open_chat_ticket(uow.session, inbox, contact)
            if contact is None or ticket is None:
                # Files join a conversation; binding them to its ticket at once means no
                # other visitor can ever reference them.
                raise Conflict("send a message first, then attach files")
            assert contact.id is not None
            _limiter(request).check(f"{inbox.workspace_id}:{contact.id}")
            actor = Actor.contact(inbox.workspace_id, contact.id, contact.name)
            stored = await attachments.do_store_attachment(
                uow,
                actor,
                ctx.settings.data_dir,
                ticket_id=ticket.id,
                filename=filename,
                content_type=ctype,
                content=content,
                max_bytes=limit,
            )
            body = {
                "id": stored.id,
                "filename": stored.filename,
                "content_type": stored.content_type,
                "size": stored.size,
                "ticket": ticket.id,
            }
            await uow.commit()
    except ServiceError as exc:
        return _error(exc, headers)
    return JSONResponse(body, status_code=201, headers=headers)


def _limiter(request: Request) -> UploadLimiter:
    state = request.app.state
    limiter: UploadLimiter | None = getattr(state, "widget_upload_limiter", None)
    if limiter is None:
        limiter = UploadLimiter(UPLOADS_PER_WINDOW, UPLOAD_WINDOW_SECONDS)
        state.widget_upload_limiter = limiter
    return limiter


async def download(request: Request) -> Response:
    ctx = _ctx(request)
    origin = request.headers.get("origin")
    headers: dict[str, str] = {"Vary": "Origin"}
    try:
        inbox = await _inbox(request)
        headers = _cors(inbox, origin)
        widget.check_origin(inbox, origin)
        attachment_id = int(request.path_params["attachment_id"])
        async with ctx.read_sessions() as session:
            contact = await widget.visitor_contact(
                session,
                inbox,
                ctx.settings.secret,
                _visitor_token(request),
                _identity(request.headers.get("x-helpdesk-identity")),
            )
            found = await widget.visitor_attachment(session, inbox, contact, attachment_id)
        path = attachments.storage_path(ctx.settings.data_dir, found.storage_key)
        try:
            with path.open("rb") as fh:
                head = fh.read(SNIFF_BYTES)
        except FileNotFoundError:
            raise NotFound("the file is missing from storage") from None
    except ServiceError as exc:
        return _error(exc, headers)
    inline = serve_inline(found.content_type, attachments.INLINE_TYPES, head)
    return FileResponse(
        path,
        media_type=found.content_type if inline else "application/octet-stream",
        filename=found.filename,
        content_disposition_type="inline" if inline else "attachment",
        headers=headers
        | {
            "X-Content-Type-Options": "nosniff",
            "Access-Control-Expose-Headers": "Content-Disposition",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )


routes = [
    Route("/widget/config", config, methods=["GET"]),
    Route("/widget/attachments", upload, methods=["POST"]),
    Route("/widget/attachments", preflight, methods=["OPTIONS"]),
    Route("/widget/attachments/{attachment_id:int}", download, methods=["GET"]),
    Route("/widget/attachments/{attachment_id:int}", preflight, methods=["OPTIONS"]),
]
