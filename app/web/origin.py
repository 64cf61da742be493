"""Origin checks for cookie-authenticated unsafe requests (CSRF defence).

A browser always sends `Origin` on cross-site POST/PUT/PATCH/DELETE and on
same-origin ones from fetch/forms in every current engine; a request that
carries the session cookie must come from our own origin: the configured public
URL or the host the request itself was sent to (a dev server on another port).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` in lowercase, default ports dropped; None if not a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def allowed_origins(conn: HTTPConnection, public_url: str) -> set[str]:
    allowed = set()
    public = origin_of(public_url)
    if public:
        allowed.add(public)
    host = conn.headers.get("host")
    if host:
        scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
        own = origin_of(f"{scheme}://{host}")
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
    found = origin_of(origin)
    return found is not None and found in allowed_origins(conn, public_url)
