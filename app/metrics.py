"""Prometheus metrics shared by the web layer, services and channels.

Every label has a small, closed set of values (route templates, not paths;
HTTP method names; outcome words) so a scraper's memory stays bounded no
matter what clients send.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

HTTP_REQUESTS = Counter(
    "helpdesk_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "helpdesk_http_request_duration_seconds",
    "Time to the end of the response body, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBSOCKET_CONNECTIONS = Gauge(
    "helpdesk_websocket_connections",
    "Accepted websocket connections currently open, by route template.",
    ["route"],
)
OPEN_CONNECTIONS = Gauge(
    "helpdesk_open_connections",
    "Long-lived non-HTTP connections currently open (SMTP sessions, call legs, ...).",
    ["kind"],
)
WEBHOOK_DELIVERIES = Counter(
    "helpdesk_webhook_deliveries_total",
    "Webhook delivery attempts by result: delivered, retry, failed or skipped.",
    ["result"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "helpdesk_webhook_attempt_duration_seconds",
    "Duration of one webhook HTTP attempt.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0),
)
WEBHOOK_BACKLOG = Gauge(
    "helpdesk_webhook_outbox_backlog",
    "Webhook deliveries still pending (due now or waiting for a retry).",
)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


@contextmanager
def track_connection(kind: str) -> Iterator[None]:
    """Count a long-lived connection while the block runs.

    `kind` must be a literal chosen by the caller (e.g. "smtp", "voice_leg"),
    never client input, to keep the label set bounded.
    """
    gauge = OPEN_CONNECTIONS.labels(kind)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def generate_latest() -> bytes:
    return _generate_latest(REGISTRY)


__all__ = [
    "CONTENT_TYPE_LATEST",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "OPEN_CONNECTIONS",
    "WEBHOOK_ATTEMPT_SECONDS",
    "WEBHOOK_BACKLOG",
    "WEBHOOK_DELIVERIES",
    "WEBSOCKET_CONNECTIONS",
    "generate_latest",
    "method_label",
    "track_connection",
]
