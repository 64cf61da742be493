"""Served over https, the session cookie is Secure."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, SeededWorkspace


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_url": "https://testserver"}


async def test_cookie_is_secure_on_https(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    response = await client.post(
        "/console/login",
        data={"email": "agent@acme.test", "password": PASSWORD},
        headers={"Origin": "https://testserver"},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]
