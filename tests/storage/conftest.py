"""Storage tests drive the services and the database directly: an AppContext without
the web app, channels or background workers (they would only add noise here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.context import AppContext
from app.settings import Settings


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = AppContext(settings)
    await context.start([])
    try:
        yield context
    finally:
        await context.stop()
