"""/api/docs: the OpenAPI spec rendered to one self-contained HTML page (no CDN, no JS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
METHODS = ("get", "post", "put", "patch", "delete")

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def type_label(schema: dict[str, Any] | None) -> str:
    """A short, readable type: `Ticket`, `list[string]`, `integer | null`, `"a" | "b"`."""
    if not schema:
        return "any"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " | ".join(type_label(s) for s in schema[key])
    if "enum" in schema:
        return " | ".join(f'"{v}"' for v in schema["enum"])
    if "const" in schema:
        return f'"{schema["const"]}"'
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{type_label(schema.get('items'))}]"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"object[string, {type_label(extra if isinstance(extra, dict) else None)}]"
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def constraints(schema: dict[str, Any]) -> str:
    keys = ("minimum", "maximum", "minLength", "maxLength", "maxItems", "pattern", "default")
    parts = [f"{k}={schema[k]!r}" for k in keys if k in schema]
    return ", ".join(parts)


def _body_ref(op: dict[str, Any]) -> tuple[str, str] | None:
    content = op.get("requestBody", {}).get("content", {})
    for media, spec in content.items():
        return media, type_label(spec.get("schema"))
    return None


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = []
            for status, resp in sorted(op.get("responses", {}).items()):
                media: list[dict[str, Any]] = list(resp.get("content", {}).values())
                schema = media[0].get("schema") if media else None
                responses.append((status, resp.get("description", ""), type_label(schema)))
            out.append(
                {
                    "id": op.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "tag": (op.get("tags") or ["other"])[0],
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "role": op.get("x-required-role"),
                    "params": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": type_label(p.get("schema")),
                            "limits": constraints(p.get("schema", {})),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": _body_ref(op),
                    "responses": responses,
                }
            )
    return out


def schemas(spec: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", []))
        out.append(
            {
                "name": name,
                "description": schema.get("description", ""),
                "fields": [
                    {
                        "name": field,
                        "type": type_label(prop),
                        "required": field in required,
                        "limits": constraints(prop),
                        "description": prop.get("description", ""),
                    }
                    for field, prop in schema.get("properties", {}).items()
                ],
                "enum": schema.get("enum"),
            }
        )
    return out


def render(spec: dict[str, Any]) -> str:
    ops = operations(spec)
    tags: dict[str, list[dict[str, Any]]] = {}
    for op in ops:
        tags.setdefault(op["tag"], []).append(op)
    template = _env.get_template("api_docs.html")
    return template.render(
        info=spec.get("info", {}),
        servers=spec.get("servers", []),
        security=spec.get("components", {}).get("securitySchemes", {}),
        tags=tags,
        schemas=schemas(spec),
    )


async def api_docs(request: Request) -> Response:
    html: str | None = getattr(request.app.state, "api_docs_html", None)
    if html is None:
        html = render(request.app.state.api.openapi())
        request.app.state.api_docs_html = html
    return HTMLResponse(
        html,
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


routes = [Route("/api/docs", api_docs)]
