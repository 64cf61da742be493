"""Origin checks for cookie-authenticated unsafe requests (CSRF defence).

A browser always sends `Origin` on cross-site POST/PUT/PATCH/DELETE and on
same-origin ones from fetch/forms in every current engine; a request that
carries the session cookie must come from our own origin: the configured public
URL or the host the request itself was sent to (a dev server on another port).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from app.services.origins import normalize_origin

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_origins(conn: HTTPConnection, public_url: str) -> set[str]:
    allowed = set()
    public = normalize_origin(public_url)
    if public:
        allowed.add(public)
    host = conn.headers.get("host")
    if host:
        scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
        own = normalize_origin(f"{scheme}://{host}")
        if own:
            allowed.add(own)
    return allowed


def same_origin(conn: HTTPConnection, public_url: str) -> bool:
    """True when the request's Origin (or, lacking it, Referer) is ours."""
    origin = conn.headers.get("origin")
    if origin is None or origin == "null":
        referer = conn.headers.get("referer")
        if origin is None and referer:
            origin = referer
        else:
            return False
    found = normalize_origin(origin)
    return found is not None and found in allowed_origins(conn, public_url)
