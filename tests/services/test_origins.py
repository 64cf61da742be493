"""One origin rule for the widget config, its websocket, the demo page and CSRF checks."""

from __future__ import annotations

from app.services.origins import normalize_origin, origin_allowed


def test_origins_are_normalised() -> None:
    assert normalize_origin("HTTPS://Shop.Example.com:443/") == "https://shop.example.com"
    assert normalize_origin("http://127.0.0.1:8001/page?x=1") == "http://127.0.0.1:8001"
    assert normalize_origin("http://[::1]:80") == "http://[::1]"
    assert normalize_origin("null") is None
    assert normalize_origin("javascript:alert(1)") is None
    assert normalize_origin("http://host:99999") is None


def test_allowlist_entries() -> None:
    allowed = ["https://*.example.com", "http://127.0.0.1:8001"]
    assert origin_allowed("https://shop.example.com", allowed)
    assert not origin_allowed("https://example.com", allowed)
    assert not origin_allowed("http://shop.example.com", allowed)
    assert not origin_allowed("https://evil-example.com", allowed)
    assert origin_allowed("http://127.0.0.1:8001", allowed)
    assert not origin_allowed("http://127.0.0.1:8002", allowed)
    assert not origin_allowed(None, allowed)
    assert origin_allowed("https://anything.test", ["*"])
