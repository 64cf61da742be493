"""Supervisors and admins listen to, whisper to, or barge into an agent's call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.services import calls
from app.services.errors import Forbidden
from channels.voice.live import LiveCall
from channels.voice.protocol import CallProtocolError, Endpoint, sdp_of
from channels.voice.routing import SupervisorMode

if TYPE_CHECKING:
    from channels.voice.controller import CallController


async def supervise(
    ctrl: CallController, live: LiveCall, ep: Endpoint, mode: str, frame: dict[str, Any]
) -> None:
    from channels.voice.controller import agent_actor

    if not ep.is_supervisor or ep.agent_id is None:
        raise Forbidden("supervising calls needs the supervisor role")
    if live.agent_leg is None or live.agent_leg not in live.media.legs:
        raise CallProtocolError("conflict", "no agent is on this call")
    if ep.agent_id == live.agent_id:
        raise CallProtocolError("conflict", "you cannot supervise your own call")
    leg = f"sup-{ep.agent_id}"
    if leg not in live.media.legs:
        await ctrl.add_leg(live, leg, str(sdp_of(frame)), "supervisor", ep)
    modes: dict[str, SupervisorMode] = {"listen": "listen", "whisper": "whisper", "barge": "barge"}
    live.media.supervise(leg, live.agent_leg, modes[mode])
    live.supervisors[leg] = (ep, mode)
    await ctrl._write(
        live,
        lambda uow, call: calls.record(
            uow,
            call,
            "supervisor",
            internal=True,
            actor=agent_actor(ep),
            mode=mode,
            supervisor=ep.name,
        ),
    )
    await ctrl.send(ep, ctrl.agent_state(live, live.state, supervising=mode))


async def leave(ctrl: CallController, live: LiveCall, leg: str) -> None:
    ep, _ = live.supervisors.pop(leg)
    await ctrl.drop_leg(live, leg)
    await ctrl._write(
        live,
        lambda uow, call: calls.record(
            uow, call, "supervisor", internal=True, mode="left", supervisor=ep.name
        ),
    )
    await ctrl.send(ep, ctrl.agent_state(live, "ended", reason="left"))
