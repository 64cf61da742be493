"""Deleting a call's ticket: refused while the call is live, then the recording goes with it."""

from __future__ import annotations

import httpx
from conftest import AGENT_HZ, CallKit

from app.models import Attachment, Call
from tests.conftest import LiveServer


async def test_a_recorded_call_is_deleted_with_its_ticket(
    kit: CallKit, live_server: LiveServer
) -> None:
    await kit.enable_recording()
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    console = await kit.console("agent")
    await kit.accept(console, call)
    await customer.wait_for_tone(AGENT_HZ)
    await console.send({"type": "subscribe", "stream": "workspace"})
    await console.wait("subscribed", lambda f: f.get("stream") == "workspace")
    async with kit.ctx.sessions() as session:
        row = await session.get(Call, call)
        assert row is not None
    ticket_id = row.ticket_id
    admin = kit.workspace.auth("admin")

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        busy = await http.delete(f"/api/v1/tickets/{ticket_id}", headers=admin)
        assert busy.status_code == 409
        assert "call in progress" in busy.json()["error"]["message"]
        assert busy.json()["error"]["details"] == {"call_id": call}

        await console.send({"type": "call.hangup", "call": call})
        await widget.state("ended", call)
        async with kit.ctx.sessions() as session:
            ended = await session.get(Call, call)
            assert ended is not None and ended.recording_attachment_id is not None
            recording = await session.get(Attachment, ended.recording_attachment_id)
            assert recording is not None
        path = kit.settings.data_dir / "attachments" / recording.storage_key
        assert path.stat().st_size > 0

        mark = console.mark()
        deleted = await http.delete(f"/api/v1/tickets/{ticket_id}", headers=admin)
        assert deleted.status_code == 204, deleted.text
        gone = await http.get(f"/api/v1/attachments/{recording.id}", headers=admin)
        assert gone.status_code == 404

    assert not path.exists()
    async with kit.ctx.sessions() as session:
        assert await session.get(Call, call) is None
        assert await session.get(Attachment, recording.id) is None
    # The agent's open console is told to drop the ticket.
    frame = await console.wait("ticket", lambda f: f.get("action") == "deleted", after=mark)
    assert frame["ticket"]["id"] == ticket_id
