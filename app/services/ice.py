"""The STUN/TURN servers handed to each WebRTC peer, with TURN credentials that expire.

Browsers refuse a TURN server without a username and a credential (the
`RTCPeerConnection` constructor throws), and a long-lived TURN password given to
every visitor of every embedding site would let anyone relay traffic through the
operator's server for ever. So TURN credentials are minted per client (a widget
inbox, an agent), valid for a while, from a secret shared with the TURN server:
the "TURN REST API" scheme that coturn implements (`use-auth-secret` with
`static-auth-secret`):

    username   = "<unix time of expiry>:<who>"
    credential = base64(HMAC-SHA1(secret, username))

The TURN server checks the HMAC and refuses the username once its time has
passed. STUN needs no credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

STUN_SCHEMES = ("stun:", "stuns:")
TURN_SCHEMES = ("turn:", "turns:")


def is_turn(url: str) -> bool:
    return url.lower().startswith(TURN_SCHEMES)


def turn_credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class IceServers:
    """`HELPDESK_ICE_SERVERS` and the TURN secret, as `RTCPeerConnection` wants them."""

    urls: tuple[str, ...]
    turn_secret: str = ""
    ttl_seconds: int = 24 * 3600

    @property
    def stun_urls(self) -> list[str]:
        return [url for url in self.urls if not is_turn(url)]

    def for_peer(self, who: str, now: float | None = None) -> list[dict[str, str]]:
        """The servers for one peer (`who` names it in the TURN server's log): each
        TURN entry with a username and credential valid for `ttl_seconds`."""
        expires = int(now if now is not None else time.time()) + self.ttl_seconds
        username = f"{expires}:{who}"
        servers: list[dict[str, str]] = []
        for url in self.urls:
            if is_turn(url) and self.turn_secret:
                credential = turn_credential(self.turn_secret, username)
                servers.append({"urls": url, "username": username, "credential": credential})
            else:
                servers.append({"urls": url})
        return servers
