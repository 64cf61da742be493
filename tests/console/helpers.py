"""Helpers for console tests: sign in through the real form, write with our Origin."""

from __future__ import annotations

import httpx

ORIGIN = {"Origin": "http://testserver"}


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/console/login",
        data={"email": email, "password": password, "next": "/console"},
        headers=ORIGIN,
    )
