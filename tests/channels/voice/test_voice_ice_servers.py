"""HELPDESK_ICE_SERVERS reaches both browsers that place calls, not only the server.

Behind NAT a browser needs STUN/TURN servers to find a path; the widget gets them
with its config, the console with its page's boot data and, once that page has
been open for long, from /console/api/ice. Each TURN entry carries credentials
minted for that peer from HELPDESK_TURN_SECRET (browsers refuse TURN without).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from call_clients import ORIGIN
from conftest import CallKit

from app.models import Inbox
from app.services.ice import turn_credential
from app.settings import Settings

ICE = "stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp"
SECRET = "shared-with-the-turn-server"
STUN = {"urls": "stun:stun.example.org:3478"}
TURN_URL = "turn:turn.example.org:3478?transport=udp"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {**settings_overrides, "ice_servers": ICE, "turn_secret": SECRET}


def assert_servers_for(servers: Any, who: str, settings: Settings, minted_after: float) -> None:
    stun, turn = servers
    assert stun == STUN  # STUN needs no credentials
    assert turn["urls"] == TURN_URL
    expiry, _, name = turn["username"].partition(":")
    assert name == who
    assert int(expiry) >= int(minted_after) + settings.turn_credential_ttl_seconds
    assert turn["credential"] == turn_credential(SECRET, turn["username"])


async def test_the_widget_config_carries_the_ice_servers(
    client: httpx.AsyncClient, inbox: Inbox, settings: Settings
) -> None:
    before = time.time()
    r = await client.get(f"/widget/config?inbox={inbox.public_key}", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"  # credentials are minted per request
    assert_servers_for(
        r.json()["ice_servers"], f"w{inbox.workspace_id}-inbox{inbox.id}", settings, before
    )


async def test_the_console_boots_with_the_ice_servers_and_can_refresh_them(
    client: httpx.AsyncClient, kit: CallKit, settings: Settings
) -> None:
    before = time.time()
    cookie = await kit.cookie("agent")
    r = await client.get("/console", headers={"Cookie": cookie})
    assert r.status_code == 200
    boot = re.search(r'<script type="application/json" id="boot">(.*?)</script>', r.text, re.S)
    assert boot is not None
    data = json.loads(boot.group(1))
    who = f"w{kit.workspace.id}-agent{data['me']['id']}"
    assert_servers_for(data["ice_servers"], who, settings, before)

    fresh = await client.get(
        "/console/api/ice", headers={"Cookie": cookie, "Accept": "application/json"}
    )
    assert fresh.status_code == 200
    assert fresh.headers["cache-control"] == "no-store"
    assert_servers_for(fresh.json()["ice_servers"], who, settings, before)
    anonymous = await client.get("/console/api/ice", headers={"Accept": "application/json"})
    assert anonymous.status_code == 401
