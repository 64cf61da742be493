"""STARTTLS and AUTH on the inbound listener, with a throwaway CA (trustme) and smtplib."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from mailtools import create_email_inbox, port, tickets

from app.context import AppContext
from app.settings import ConfigError
from tests.conftest import SeededWorkspace, make_settings

USERS = "relay:s3cret-pass,backup:other-pass"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _non_loopback_ipv4() -> str | None:
    """This host's outward IPv4 address (no packet is sent by a UDP connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


LISTEN_HOST = _non_loopback_ipv4()


@pytest.fixture
def settings_overrides(ca: trustme.CA, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    cert = ca.issue_cert("mx.demo.localhost", "127.0.0.1", *([LISTEN_HOST] if LISTEN_HOST else []))
    cert_path, key_path = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    host = getattr(request, "param", "127.0.0.1")
    return {
        "smtp_listen": f"{host}:0",
        "smtp_tls_cert": cert_path,
        "smtp_tls_key": key_path,
        "smtp_auth_users": USERS,
    }


def _message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Anna <anna@example.com>"
    msg["To"] = "support@demo.localhost"
    msg["Subject"] = "Over TLS"
    msg["Message-ID"] = "<tls-1@mail.example.com>"
    msg.set_content("Hello over an encrypted session.")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def _session(
    host: str, port: int, ca: trustme.CA, *, tls: bool, login: tuple[str, str] | None
) -> dict[str, Any]:
    """One smtplib conversation; returns what each step answered."""
    out: dict[str, Any] = {}
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("relay.test")
        out["starttls_offered"] = client.has_extn("starttls")
        out["auth_before_tls"] = client.has_extn("auth")
        if tls:
            context = ssl.create_default_context()
            ca.configure_trust(context)  # verifies the chain and the IP in the certificate
            out["starttls"] = client.starttls(context=context)[0]
            client.ehlo("relay.test")
            out["cipher"] = client.sock.cipher() if isinstance(client.sock, ssl.SSLSocket) else None
            out["auth_after_tls"] = client.has_extn("auth")
        if login is not None:
            try:
                out["login"] = client.login(*login)[0]
            except smtplib.SMTPException as exc:
                out["login"] = getattr(exc, "smtp_code", str(exc))
        out["mail"] = client.mail("anna@example.com")[0]
        if out["mail"] == 250:
            client.rcpt("support@demo.localhost")
            out["data"] = client.data(_message())[0]
    return out


async def test_starttls_then_auth_then_delivery(
    ctx: AppContext, workspace: SeededWorkspace, ca: trustme.CA
) -> None:
    await create_email_inbox(ctx, workspace.id)
    result = await asyncio.to_thread(
        _session, "127.0.0.1", port(ctx), ca, tls=True, login=("relay", "s3cret-pass")
    )
    assert result["starttls_offered"] and result["starttls"] == 220
    assert result["cipher"] is not None and result["auth_after_tls"]
    assert result["login"] == 235 and result["mail"] == 250 and result["data"] == 250
    [ticket] = await tickets(ctx, workspace.id)
    assert ticket.subject == "Over TLS"


async def test_auth_required_when_users_are_configured(
    ctx: AppContext, workspace: SeededWorkspace, ca: trustme.CA
) -> None:
    await create_email_inbox(ctx, workspace.id)
    anonymous = await asyncio.to_thread(_session, "127.0.0.1", port(ctx), ca, tls=True, login=None)
    assert anonymous["mail"] == 530
    wrong = await asyncio.to_thread(
        _session, "127.0.0.1", port(ctx), ca, tls=True, login=("relay", "wrong")
    )
    assert wrong["login"] == 535 and wrong["mail"] == 530
    unknown = await asyncio.to_thread(
        _session, "127.0.0.1", port(ctx), ca, tls=True, login=("nobody", "s3cret-pass")
    )
    assert unknown["login"] == 535
    assert await tickets(ctx, workspace.id) == []


async def test_loopback_peer_may_auth_without_tls(
    ctx: AppContext, workspace: SeededWorkspace, ca: trustme.CA
) -> None:
    await create_email_inbox(ctx, workspace.id)
    result = await asyncio.to_thread(
        _session, "127.0.0.1", port(ctx), ca, tls=False, login=("backup", "other-pass")
    )
    assert result["auth_before_tls"] and result["login"] == 235 and result["data"] == 250


@pytest.mark.skipif(LISTEN_HOST is None, reason="this host has no non-loopback IPv4 address")
@pytest.mark.parametrize("settings_overrides", [LISTEN_HOST], indirect=True)
async def test_remote_peer_gets_auth_only_inside_tls(
    ctx: AppContext, workspace: SeededWorkspace, ca: trustme.CA
) -> None:
    assert LISTEN_HOST is not None
    await create_email_inbox(ctx, workspace.id)
    plain = await asyncio.to_thread(
        _session, LISTEN_HOST, port(ctx), ca, tls=False, login=("relay", "s3cret-pass")
    )
    # smtplib refuses to try AUTH the server did not advertise.
    assert not plain["auth_before_tls"] and plain["mail"] == 530
    assert "not supported" in str(plain["login"])
    secured = await asyncio.to_thread(
        _session, LISTEN_HOST, port(ctx), ca, tls=True, login=("relay", "s3cret-pass")
    )
    assert secured["auth_after_tls"] and secured["login"] == 235 and secured["data"] == 250


def test_auth_without_tls_on_a_public_listener_is_a_config_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigError, match="HELPDESK_SMTP_AUTH_USERS"):
        make_settings(tmp_path, url, smtp_listen="0.0.0.0:25", smtp_auth_users=USERS)
    with pytest.raises(ConfigError, match="user:password"):
        make_settings(tmp_path, url, smtp_auth_users="no-colon")
    with pytest.raises(ConfigError, match="go together"):
        make_settings(tmp_path, url, smtp_tls_cert=tmp_path / "c.pem")
    assert make_settings(tmp_path, url, smtp_auth_users=USERS).smtp_users == {
        "relay": "s3cret-pass",
        "backup": "other-pass",
    }
