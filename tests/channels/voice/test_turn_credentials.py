"""TURN credentials: minted per peer from the secret shared with the TURN server,
accepted by a real coturn while valid, refused when forged or expired; a TURN URL
without the secret is a configuration error (test_voice_ice_servers covers what the
widget and the console are given)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import aioice
import pytest

from app.services.ice import IceServers
from app.settings import ConfigError, load_settings
from tests.channels.voice.coturn import INSTALLED, Coturn, running_coturn

needs_coturn = pytest.mark.skipif(
    not INSTALLED, reason="coturn is not installed (apt-get install coturn)"
)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    with running_coturn(tmp_path) as server:
        yield server


async def relayed_through(coturn: Coturn, username: str, password: str) -> bool:
    """Whether coturn grants an allocation (a relay candidate) for these credentials."""
    connection = aioice.Connection(
        ice_controlling=True,
        turn_server=("127.0.0.1", coturn.port),
        turn_username=username,
        turn_password=password,
        use_ipv6=False,
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    try:
        await connection.gather_candidates()
        return any(c.type == "relay" for c in connection.local_candidates)
    finally:
        await connection.close()


@needs_coturn
async def test_coturn_relays_for_minted_credentials_and_refuses_forged_or_expired(
    coturn: Coturn,
) -> None:
    servers = IceServers((coturn.url, "stun:127.0.0.1:3478"), coturn.secret, 3600)
    turn, stun = servers.for_peer("w1-inbox2")
    assert stun == {"urls": "stun:127.0.0.1:3478"}  # STUN needs no credentials
    assert await relayed_through(coturn, turn["username"], turn["credential"])

    forged = IceServers((coturn.url,), "not-the-secret", 3600).for_peer("w1-inbox2")[0]
    assert not await relayed_through(coturn, forged["username"], forged["credential"])
    # Minted two hours ago with a one-hour lifetime: expired an hour ago.
    old = servers.for_peer("w1-inbox2", now=time.time() - 7200)[0]
    assert not await relayed_through(coturn, old["username"], old["credential"])


def test_credentials_follow_the_turn_rest_api_scheme() -> None:
    servers = IceServers(("turns:turn.example.org:5349",), "s3cret", 7200)
    (turn,) = servers.for_peer("w3-agent9", now=1_700_000_000)
    assert turn["username"] == "1700007200:w3-agent9"
    digest = hmac.new(b"s3cret", b"1700007200:w3-agent9", hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()


def test_a_turn_server_without_a_secret_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELPDESK_ICE_SERVERS", "stun:stun.example.org,turn:turn.example.org")
    with pytest.raises(ConfigError, match="HELPDESK_TURN_SECRET"):
        load_settings()
    monkeypatch.setenv("HELPDESK_ICE_SERVERS", "http://turn.example.org")
    with pytest.raises(ConfigError, match="stun:, stuns:, turn: or turns:"):
        load_settings()
    monkeypatch.setenv("HELPDESK_ICE_SERVERS", "stun:stun.example.org,turn:turn.example.org")
    monkeypatch.setenv("HELPDESK_TURN_SECRET", "s3cret")
    assert load_settings().ice.stun_urls == ["stun:stun.example.org"]
