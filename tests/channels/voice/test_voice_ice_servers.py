"""HELPDESK_ICE_SERVERS reaches both browsers that place calls, not only the server.

Behind NAT a browser needs the same STUN/TURN servers as the server's legs to find a
path; the widget gets them with its config, the console with its page's boot data.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from call_clients import ORIGIN
from conftest import CallKit

from app.models import Inbox

ICE = "stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp"
SERVERS = [
    {"urls": "stun:stun.example.org:3478"},
    {"urls": "turn:turn.example.org:3478?transport=udp"},
]


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "ice_servers": ICE}


async def test_the_widget_config_carries_the_ice_servers(
    client: httpx.AsyncClient, inbox: Inbox
) -> None:
    r = await client.get(f"/widget/config?inbox={inbox.public_key}", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.json()["ice_servers"] == SERVERS


async def test_the_console_page_boots_with_the_ice_servers(
    client: httpx.AsyncClient, kit: CallKit
) -> None:
    r = await client.get("/console", headers={"Cookie": await kit.cookie("agent")})
    assert r.status_code == 200
    boot = re.search(r'<script type="application/json" id="boot">(.*?)</script>', r.text, re.S)
    assert boot is not None
    assert json.loads(boot.group(1))["ice_servers"] == SERVERS
