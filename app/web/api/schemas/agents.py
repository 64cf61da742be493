"""Agent and team shapes. Password hashes never appear in any response."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from app.models import Role
from app.web.api.schemas.common import Email, ObjectId, Strict

CHANNEL_KEYS = ("chat", "voice", "email")


def _check_capacity(value: dict[str, int] | None) -> dict[str, int] | None:
    if value is None:
        return None
    unknown = set(value) - set(CHANNEL_KEYS)
    if unknown:
        raise ValueError("capacity keys are " + ", ".join(CHANNEL_KEYS))
    if any(not 0 <= v <= 1000 for v in value.values()):
        raise ValueError("capacity values must be 0 to 1000")
    return value


def _check_time_zone(value: str | None) -> str | None:
    if value is None:
        return None
    from zoneinfo import available_timezones

    if value != "UTC" and value not in available_timezones():
        raise ValueError("unknown IANA time zone")
    return value


Label = str


class AgentCreate(Strict):
    email: Email
    name: str = Field(default="", max_length=200)
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=1024,
        description="Omit to create an agent who cannot sign in yet.",
    )
    role: Role = Role.agent
    team_ids: list[ObjectId] = Field(default_factory=list, max_length=50)
    skills: list[Label] = Field(default_factory=list, max_length=50)
    languages: list[Label] = Field(default_factory=list, max_length=20)
    time_zone: str = Field(default="UTC", max_length=64)
    locale: str = Field(default="en", min_length=2, max_length=8)
    capacity: dict[str, int] | None = Field(
        default=None, description="Concurrent conversations per channel: chat, voice, email."
    )

    _tz = field_validator("time_zone")(_check_time_zone)
    _cap = field_validator("capacity")(_check_capacity)

    @field_validator("skills", "languages")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        if any(not 1 <= len(v) <= 64 for v in value):
            raise ValueError("labels must be 1 to 64 characters")
        return value


class AgentUpdate(Strict):
    email: Email | None = None
    name: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    role: Role | None = None
    team_ids: list[ObjectId] | None = Field(default=None, max_length=50)
    skills: list[Label] | None = Field(default=None, max_length=50)
    languages: list[Label] | None = Field(default=None, max_length=20)
    time_zone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, min_length=2, max_length=8)
    capacity: dict[str, int] | None = None
    is_active: bool | None = Field(
        default=None, description="false deactivates: no sign-in, no new assignments."
    )

    _tz = field_validator("time_zone")(_check_time_zone)
    _cap = field_validator("capacity")(_check_capacity)

    @field_validator("skills", "languages")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not 1 <= len(v) <= 64 for v in value):
            raise ValueError("labels must be 1 to 64 characters")
        return value


class AgentOut(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    team_ids: list[int]
    skills: list[str]
    languages: list[str]
    time_zone: str
    locale: str
    capacity: dict[str, int]
    is_active: bool
    created_at: str
    last_seen_at: str | None


class TeamCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class TeamUpdate(Strict):
    name: str = Field(min_length=1, max_length=100)


class TeamOut(BaseModel):
    id: int
    name: str
    agent_ids: list[int]
    created_at: str
