"""The media API the voice signaling layer drives: one :class:`CallMedia` per call.

    engine = MediaEngine(ice_servers=[...])          # once per process
    call = engine.call("call-42")
    answer = await call.add_leg("customer", offer_sdp, role="customer")
    call.hold("customer")                            # queue: customer hears hold audio
    answer = await call.add_leg("agent", agent_offer, role="agent")
    call.bridge("customer", "agent")                 # forwarded, no decode, no renegotiation
    call.supervise("sup", "agent", "whisper")        # only here does anything get decoded
    await call.start_recording(path); ...; info = await call.stop_recording()
    await call.close()

Every operation is a change of call state; :func:`routing.compute_routes` turns the state
into one route per leg and only legs whose route changed get a new source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from aiortc import RTCIceServer

from .codec import CodecInfo
from .hold import HoldAudio, SilenceAudio
from .leg import Leg, MediaError, open_leg
from .recorder import CallRecorder, RecordingInfo
from .routing import SUPERVISOR_MODES, CallState, Route, SupervisorMode, compute_routes
from .tracks import LegSource, MixSource, PacketLoopSource, Source

logger = logging.getLogger(__name__)

MAX_LEGS_PER_CALL = 8
LEG_ROLES = ("customer", "agent", "supervisor")

StateCallback = Callable[["CallMedia", Leg, str], None]


class MediaEngine:
    """Process-wide media configuration and the shared pre-encoded audio."""

    def __init__(
        self, ice_servers: Sequence[RTCIceServer] = (), hold: HoldAudio | None = None
    ) -> None:
        self.ice_servers = list(ice_servers)
        self.hold = hold or HoldAudio.default()
        self.silence = SilenceAudio()
        self.calls: dict[str, CallMedia] = {}

    def call(self, call_id: str) -> CallMedia:
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = CallMedia(self, call_id)
        return call

    async def close(self) -> None:
        for call in list(self.calls.values()):
            await call.close()


class CallMedia:
    """The legs of one call and who hears whom."""

    def __init__(self, engine: MediaEngine, call_id: str) -> None:
        self.engine = engine
        self.call_id = call_id
        self.legs: dict[str, Leg] = {}
        self.state = CallState()
        self.routes: dict[str, Route] = {}
        self.recorder: CallRecorder | None = None
        self.on_state: StateCallback | None = None
        self._closed = False

    # legs

    async def add_leg(self, name: str, offer_sdp: str, role: str = "customer") -> str:
        """Answer a leg's offer; the leg starts hearing silence. Returns the answer SDP."""
        self._check_open()
        if name in self.legs:
            raise MediaError(f"leg {name!r} already exists")
        if role not in LEG_ROLES:
            raise MediaError(f"unknown leg role {role!r}")
        if len(self.legs) >= MAX_LEGS_PER_CALL:
            raise MediaError(f"a call has at most {MAX_LEGS_PER_CALL} legs")
        leg, answer = await open_leg(
            name,
            role,
            offer_sdp,
            silence=self.engine.silence.payloads,
            ice_servers=self.engine.ice_servers,
        )
        if self._closed or name in self.legs:  # closed or raced while answering
            await leg.close()
            raise MediaError(f"call {self.call_id} changed while leg {name!r} was answered")
        leg.on_state = self._leg_state
        self.legs[name] = leg
        assert leg.codec is not None
        self.state.codecs[name] = leg.codec.name
        self._apply()
        return answer

    async def remove_leg(self, name: str) -> None:
        leg = self._leg(name)
        del self.legs[name]
        st = self.state
        del st.codecs[name]
        st.bridges = {pair for pair in st.bridges if name not in pair}
        st.held.discard(name)
        st.muted.discard(name)
        st.overrides.pop(name, None)
        st.supervisors = {s: (a, m) for s, (a, m) in st.supervisors.items() if name not in (s, a)}
        self._apply()
        self.routes.pop(name, None)
        await leg.close()

    # who hears whom

    def bridge(self, a: str, b: str) -> None:
        """Let ``a`` and ``b`` hear each other (and take both off hold)."""
        self._leg(a), self._leg(b)
        if a == b:
            raise MediaError("cannot bridge a leg to itself")
        self.state.bridges.add(frozenset((a, b)))
        self.state.held -= {a, b}
        self._apply()

    def unbridge(self, a: str, b: str) -> None:
        self.state.bridges.discard(frozenset((a, b)))
        self._apply()

    def hold(self, name: str) -> None:
        """``name`` hears hold audio; its partners stop hearing it."""
        self._leg(name)
        self.state.held.add(name)
        self._apply()

    def unhold(self, name: str) -> None:
        self._leg(name)
        self.state.held.discard(name)
        self._apply()

    def mute(self, name: str, muted: bool = True) -> None:
        """Nobody hears ``name`` while muted (the leg itself still hears)."""
        self._leg(name)
        if muted:
            self.state.muted.add(name)
        else:
            self.state.muted.discard(name)
        self._apply()

    def supervise(self, supervisor: str, agent: str, mode: SupervisorMode) -> None:
        """listen: hears agent and party; whisper: the agent also hears them; barge: all do."""
        self._leg(supervisor), self._leg(agent)
        if mode not in SUPERVISOR_MODES:
            raise MediaError(f"unknown supervisor mode {mode!r}")
        if supervisor == agent:
            raise MediaError("a supervisor cannot supervise their own leg")
        self.state.supervisors[supervisor] = (agent, mode)
        self._apply()

    def unsupervise(self, supervisor: str) -> None:
        self.state.supervisors.pop(supervisor, None)
        self._apply()

    def set_source(self, name: str, source: Route | None) -> None:
        """Force what ``name`` hears (``None`` returns it to the computed route)."""
        self._leg(name)
        if source is None:
            self.state.overrides.pop(name, None)
        else:
            for other in source.inputs:
                self._leg(other)
            self.state.overrides[name] = source
        self._apply()

    # recording

    async def start_recording(self, path: Path) -> None:
        self._check_open()
        if self.recorder is not None:
            raise MediaError("the call is already being recorded")
        self.recorder = CallRecorder(path)
        self.recorder.set_inputs([self.legs[n] for n in self.state.recorded_legs()])
        self.recorder.start()

    async def stop_recording(self) -> RecordingInfo:
        recorder = self.recorder
        if recorder is None:
            raise MediaError("the call is not being recorded")
        self.recorder = None
        return await recorder.stop()

    async def close(self) -> RecordingInfo | None:
        """Hang up every leg; returns the recording if one was running."""
        if self._closed:
            return None
        self._closed = True
        info = await self.stop_recording() if self.recorder is not None else None
        for name in list(self.legs):
            await self.remove_leg(name)
        self.engine.calls.pop(self.call_id, None)
        return info

    # internals

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError(f"call {self.call_id} is closed")

    def _leg(self, name: str) -> Leg:
        leg = self.legs.get(name)
        if leg is None:
            raise MediaError(f"no leg {name!r} in call {self.call_id}")
        return leg

    def _leg_state(self, leg: Leg, state: str) -> None:
        if self.on_state is not None:
            self.on_state(self, leg, state)

    def _source(self, leg: Leg, route: Route) -> Source:
        codec = leg.codec
        assert codec is not None
        if route.kind == "silence":
            return PacketLoopSource(self.engine.silence.payloads(codec))
        if route.kind == "hold":
            return PacketLoopSource(self.engine.hold.payloads(codec))
        inputs = [self.legs[n] for n in route.inputs]
        if route.kind == "leg" and _compatible(codec, inputs[0].codec):
            return LegSource(inputs[0])
        silence = self.engine.silence.payloads(codec)[0]
        return MixSource(list(inputs), codec, silence)

    def _apply(self) -> None:
        routes = compute_routes(self.state)
        for name, route in routes.items():
            if self.routes.get(name) != route:
                leg = self.legs[name]
                leg.track.set_source(self._source(leg, route))
                self.routes[name] = route
        if self.recorder is not None:
            self.recorder.set_inputs([self.legs[n] for n in self.state.recorded_legs()])


def _compatible(a: CodecInfo, b: CodecInfo | None) -> bool:
    """Same encoding on both legs, so payloads can be forwarded (payload types may differ)."""
    return b is not None and (a.name, a.clock_rate) == (b.name, b.clock_rate)
