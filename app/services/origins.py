"""Browser origins: one normal form and one allowlist rule for every entry point.

The widget's config endpoint, its websocket, the demo page and the console's CSRF
check all compare origins; they must agree on what `https://*.example.com` means.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def normalize_origin(value: str | None) -> str | None:
    """`scheme://host[:port]` in lowercase with the default port dropped; None if unusable."""
    if not value or value == "null":
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Entries are exact origins, `https://*.example.com` (any subdomain) or `*` (any site)."""
    found = normalize_origin(origin)
    if found is None:
        return False
    for entry in allowed:
        entry = entry.strip().lower().rstrip("/")
        if entry == "*":
            return True
        if "://*." in entry:
            scheme, _, rest = entry.partition("://*.")
            if found.startswith(scheme + "://") and found.endswith("." + rest):
                return True
        elif normalize_origin(entry) == found:
            return True
    return False
