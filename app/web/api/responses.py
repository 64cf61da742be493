"""Fast JSON responses for hot routes.

A route that returns a plain dict makes FastAPI validate it against the route's
`response_model` and serialize it through pydantic, which costs more than the
work behind a simple read. A route that returns a `Response` skips both, while
its `response_model` still documents the shape in the OpenAPI spec. Use this only
where the dict comes from a `*_public` function whose keys are exactly the
model's fields, with values already in their JSON form.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def json_response(content: Any, status_code: int = 200) -> JSONResponse:
    """`content` (already JSON-ready: str dates, enum values) as it is."""
    return JSONResponse(content, status_code=status_code)
