"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.context import AppContext


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    try:
        async with ctx.read_sessions() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:  # the database is down or unreachable
        return JSONResponse(
            {"status": "unavailable", "reason": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready"})


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
