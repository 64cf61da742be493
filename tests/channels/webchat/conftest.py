"""Fixtures for the live chat tests: a widget inbox and console cookies for the seeded agents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from webchat_client import ORIGIN, session_cookie

from app.context import AppContext
from app.models import Agent, Inbox
from app.services.agent_auth import password_fingerprint
from app.settings import Settings
from tests.conftest import SeededWorkspace, make_widget_inbox


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Fast routing passes so tests wait on conditions, not on timers.
    return {"chat_route_interval_seconds": 0.05, "chat_heartbeat_seconds": 0.5}


async def make_inbox(
    ctx: AppContext, workspace_id: int, team_id: int | None, origins: list[str]
) -> Inbox:
    return await make_widget_inbox(ctx, workspace_id, team_id, origins, greeting="Hi!")


@pytest.fixture
async def chat_inbox(ctx: AppContext, workspace: SeededWorkspace) -> Inbox:
    return await make_inbox(ctx, workspace.id, workspace.team_ids["Support"], [ORIGIN])


@pytest.fixture
def cookie_for(ctx: AppContext, settings: Settings) -> Callable[[int], Any]:
    async def make(agent_id: int) -> str:
        async with ctx.sessions() as session:
            agent = await session.get(Agent, agent_id)
            assert agent is not None
            return session_cookie(
                settings, agent_id, agent.workspace_id, password_fingerprint(agent)
            )

    return make
