"""Runtime configuration, read from the environment with the ``HELPDESK_`` prefix."""

from __future__ import annotations

import ipaddress
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.services.ice import STUN_SCHEMES, TURN_SCHEMES, IceServers, is_turn

DEFAULT_DEV_SECRET = "dev-insecure-secret"

# HELPDESK_SQLITE_WAL_LIMIT_BYTES; also what `app.db.create_engine` uses when not told.
SQLITE_WAL_LIMIT_BYTES = 16 * 1024 * 1024
# HELPDESK_SQLITE_MMAP_BYTES; also `app.db.create_engine`'s default.
SQLITE_MMAP_BYTES = 256 * 1024 * 1024


class ConfigError(Exception):
    """Raised when configuration is unusable; the message is one line for the operator."""


class Env(StrEnum):
    dev = "dev"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HELPDESK_", extra="ignore")

    env: Env = Env.dev
    database_url: str = "sqlite+aiosqlite:///./var/helpdesk.db"
    secret_key: str = ""
    redis_url: str | None = None
    # Part of every Redis channel name (app/bus/redis.py); default: the URL's database.
    redis_namespace: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    data_dir: Path = Path("./var/data")
    public_url: str = "http://127.0.0.1:8000"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    # permessage-deflate keeps a zlib compressor and decompressor per websocket (about
    # 40 KB); chat frames are small, so by default idle widgets do not pay for it.
    ws_compression: bool = False
    smtp_listen: str = "127.0.0.1:2525"
    smtp_relay: str | None = None
    smtp_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    smtp_enabled: bool = True
    # Optional STARTTLS for the listener (PEM files) and AUTH ("user:password,...");
    # when users are set every session must authenticate before MAIL.
    smtp_tls_cert: Path | None = None
    smtp_tls_key: Path | None = None
    smtp_auth_users: str = ""
    # Inbound mails up to this size keep their original bytes in their database row
    # (no file per mail); bigger ones go to DATA_DIR. 0: every source is a file.
    email_inline_raw_bytes: int = Field(default=256 * 1024, ge=0)
    # Comma-separated stun:/turn: URLs for WebRTC peers (app/services/ice.py); TURN
    # needs the secret shared with the TURN server (coturn's static-auth-secret).
    ice_servers: str = ""
    turn_secret: str = ""
    # At least six hours: clients refresh hourly, so a call starts with 5 hours left.
    turn_credential_ttl_seconds: int = Field(default=24 * 3600, ge=6 * 3600, le=7 * 24 * 3600)
    log_format: str = "text"
    log_level: str = "INFO"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    webhook_worker: bool = True
    # None: allowed outside production, refused in production (see webhooks_may_reach_private).
    webhook_allow_private: bool | None = None
    # Finished webhook deliveries (with their bodies) are deleted after this many days;
    # at least a week, longer than the retry schedule lasts.
    webhook_log_retention_days: int = Field(default=30, ge=7, le=3650)
    workers_enabled: bool = True
    # SQLite's write-ahead log (app/wal_checkpoint.py): the size its file is kept near,
    # and how often the app looks whether it must reset it.
    sqlite_wal_limit_bytes: int = Field(default=SQLITE_WAL_LIMIT_BYTES, ge=0)
    sqlite_checkpoint_interval_seconds: float = Field(default=5.0, gt=0)
    # How much of the database file SQLite reads through a memory map (0: none).
    sqlite_mmap_bytes: int = Field(default=SQLITE_MMAP_BYTES, ge=0)
    # REST API token bucket per caller: sustained requests/s and burst; rate 0 disables.
    api_rate_limit: float = Field(default=500.0, ge=0)
    api_rate_burst: int = Field(default=2000, ge=1)
    # Live chat (channels/webchat): routing, presence and per-visitor limits.
    chat_requeue_grace_seconds: float = Field(default=60.0, ge=0)
    chat_presence_ttl_seconds: float = Field(default=20.0, gt=0)
    chat_heartbeat_seconds: float = Field(default=5.0, gt=0)
    chat_route_interval_seconds: float = Field(default=2.0, gt=0)
    chat_max_message_chars: int = Field(default=5000, gt=0, le=100_000)
    chat_rate_burst: int = Field(default=20, gt=0)
    chat_rate_per_second: float = Field(default=1.0, gt=0)
    chat_agent_rate_burst: int = Field(default=60, gt=0)
    chat_agent_rate_per_second: float = Field(default=10.0, gt=0)
    # Voice (channels/voice): ACD timers, agent rejoin grace, optional hold audio file.
    voice_ring_timeout_seconds: float = Field(default=20.0, gt=0)
    voice_rejoin_grace_seconds: float = Field(default=30.0, ge=0)
    voice_max_wait_seconds: float = Field(default=300.0, gt=0)
    voice_acd_interval_seconds: float = Field(default=1.0, gt=0)
    voice_hold_audio: Path | None = None

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError("must be 'text' or 'json'")
        return value

    @field_validator("smtp_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:2525")
        return value

    @field_validator("smtp_auth_users")
    @classmethod
    def _auth_users(cls, value: str) -> str:
        for entry in filter(None, (e.strip() for e in value.split(","))):
            user, sep, password = entry.partition(":")
            if not sep or not user or not password:
                raise ValueError("must be user:password pairs separated by commas")
        return value

    @field_validator("ice_servers")
    @classmethod
    def _ice_urls(cls, value: str) -> str:
        for url in filter(None, (u.strip() for u in value.split(","))):
            if not url.lower().startswith((*STUN_SCHEMES, *TURN_SCHEMES)):
                raise ValueError(
                    f"{url!r}: each URL must start with stun:, stuns:, turn: or turns:"
                )
        return value

    @model_validator(mode="after")
    def _turn_needs_a_secret(self) -> Settings:
        if not self.turn_secret and any(is_turn(url) for url in self.ice.urls):
            raise ValueError(
                "HELPDESK_ICE_SERVERS lists a TURN server but HELPDESK_TURN_SECRET is not set:"
                " browsers refuse TURN servers without credentials"
            )
        return self

    @model_validator(mode="after")
    def _smtp_tls_and_auth(self) -> Settings:
        if (self.smtp_tls_cert is None) != (self.smtp_tls_key is None):
            raise ValueError("HELPDESK_SMTP_TLS_CERT and HELPDESK_SMTP_TLS_KEY go together")
        host = self.smtp_host_port[0].strip("[]")
        if self.smtp_users and self.smtp_tls_cert is None and not _is_loopback(host):
            # AUTH is only offered after STARTTLS to remote peers: without TLS nobody could send.
            raise ValueError(
                "HELPDESK_SMTP_AUTH_USERS on a non-loopback listener needs "
                "HELPDESK_SMTP_TLS_CERT and HELPDESK_SMTP_TLS_KEY"
            )
        return self

    @model_validator(mode="after")
    def _secret_required_in_production(self) -> Settings:
        if self.env is Env.production and (
            not self.secret_key
            or self.secret_key == DEFAULT_DEV_SECRET
            or len(self.secret_key) < 32
        ):
            raise ValueError(
                "HELPDESK_SECRET_KEY must be set to at least 32 random characters in production"
            )
        return self

    @property
    def webhooks_may_reach_private(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.env is not Env.production

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def smtp_host_port(self) -> tuple[str, int]:
        host, _, port = self.smtp_listen.rpartition(":")
        return host, int(port)

    @property
    def smtp_users(self) -> dict[str, str]:
        """``HELPDESK_SMTP_AUTH_USERS`` as {user: password}."""
        pairs = (e.strip().partition(":") for e in self.smtp_auth_users.split(","))
        return {user: password for user, _, password in pairs if user}

    @cached_property
    def secret(self) -> bytes:
        """The secret key as bytes; in dev it is generated once into the data folder."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip().encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key.encode()

    @property
    def ice(self) -> IceServers:
        urls = tuple(url.strip() for url in self.ice_servers.split(",") if url.strip())
        return IceServers(urls, self.turn_secret, self.turn_credential_ttl_seconds)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable line."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"HELPDESK_{loc.upper()}" if err["loc"] else "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{name}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None
