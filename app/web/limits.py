"""Request body limits and content-type checks for the JSON API (pure ASGI)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 once a body passes `max_bytes` (declared or streamed), 415 for non-JSON bodies.

    `upload_paths_suffix` routes accept multipart uploads up to `max_upload_bytes`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        max_upload_bytes: int,
        upload_suffix: str = "/attachments",
        form_prefix: str = "/console/",
    ) -> None:
        self.app = app
        self.form_prefix = form_prefix
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_suffix = upload_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_upload = scope["path"].rstrip("/").endswith(self.upload_suffix)
        limit = self.max_upload_bytes if is_upload else self.max_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_error(send, 400, "bad_request", "invalid Content-Length")
                return
            if length > limit:
                await _send_error(send, 413, "too_large", f"body is larger than {limit} bytes")
                return
        else:
            length = -1
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = length != 0 and (length > 0 or b"transfer-encoding" in headers)
        if has_body:
            allowed: tuple[bytes, ...] = (
                (b"multipart/form-data",) if is_upload else (b"application/json",)
            )
            if scope["path"].startswith(self.form_prefix):
                # Console pages post plain HTML forms (sign-in, admin) and file uploads.
                allowed = (
                    *allowed,
                    b"application/x-www-form-urlencoded",
                    b"multipart/form-data",
                )
            if ctype not in allowed and not ctype.endswith(b"+json"):
                await _send_error(
                    send,
                    415,
                    "unsupported_media_type",
                    f"send the body as {allowed[0].decode()}",
                )
                return

        # Buffer the (bounded) body first so an oversized stream is refused before
        # the application has seen any of it.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await _send_error(send, 413, "too_large", f"body is larger than {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
