"""The OpenAPI document is complete and valid; the docs page renders it offline."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.routing import APIRoute
from openapi_spec_validator import validate

from app.web.api import ROUTERS
from tests.conftest import SeededWorkspace

METHODS = {"get", "post", "put", "patch", "delete"}


async def _spec(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


async def test_spec_is_valid_openapi_31(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    assert spec["openapi"].startswith("3.1")
    validate(spec)


async def test_every_route_is_documented_with_errors_and_auth(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in METHODS}
    served = {
        (method, route.path_format)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert served == documented, served ^ documented
    assert len(documented) >= 40

    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    assert "ErrorResponse" in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            assert op.get("summary"), (method, path)
            assert {"HTTPBearer": []} in op["security"], (method, path)
            for status in ("401", "404", "422", "429"):
                ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (method, path, status)
            for param in re.findall(r"{(\w+)}", path):
                p = next(x for x in op["parameters"] if x["name"] == param)
                assert p["schema"]["maximum"] == 2**63 - 1, (method, path)


async def test_docs_page_renders_offline(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    r = await client.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    spec = await _spec(client)
    for path in spec["paths"]:
        assert path in html
    assert "ErrorResponse" in html and "needs admin" in html
    # Nothing is loaded from anywhere else: no external scripts, styles or fonts.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "default-src 'none'" in r.headers["content-security-policy"]
