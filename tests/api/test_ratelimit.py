"""Per-caller token buckets: 429 with Retry-After, one caller never throttles another."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.web.ratelimit import TokenBuckets
from tests.conftest import SeededWorkspace


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Refills one request per ~17 minutes: no test machine is slow enough to see it.
    return {"api_rate_limit": 0.001, "api_rate_burst": 3}


async def test_a_token_is_throttled_alone(client: httpx.AsyncClient, workspace: SeededWorkspace):
    statuses = []
    for _ in range(4):
        r = await client.get("/api/v1/teams", headers=workspace.auth("agent"))
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 429]
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    other = await client.get("/api/v1/teams", headers=workspace.auth("admin"))
    assert other.status_code == 200


def test_bucket_refills_over_time() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0], max_keys=2)
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("a") == 0
    # Bounded memory: the least recently seen caller is forgotten (and starts full).
    buckets.take("b")
    buckets.take("c")
    assert "a" not in buckets._buckets
