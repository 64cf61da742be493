"""The SMTP size limit (HELPDESK_SMTP_MAX_BYTES) answers 552 and stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from mailtools import create_email_inbox, mails, send

from app.context import AppContext
from tests.conftest import SeededWorkspace

LIMIT = 200_000


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"smtp_max_bytes": LIMIT}


async def test_oversize_message_is_refused_with_552(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    await create_email_inbox(ctx, workspace.id)
    port = ctx.extras["smtp_port"]
    big = b"Subject: big\r\nMessage-ID: <big@x>\r\n\r\n" + (b"x" * 998 + b"\r\n") * 250
    code, _ = await send(port, big)  # type: ignore[misc]
    assert code == 552
    assert await mails(ctx) == []
    code, _ = await send(port, b"Subject: small\r\nMessage-ID: <small@x>\r\n\r\nok\r\n")  # type: ignore[misc]
    assert code == 250
