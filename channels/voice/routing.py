"""Who hears what: a pure function from a call's state to each leg's audio route.

Bridging, hold, mute, supervision and manual overrides all reduce to one question per leg:
which other legs does it hear? One input with the same codec is forwarded encoded; several
inputs (or a codec change) are mixed; none is silence; hold is the hold loop. Keeping this
pure makes every combination cheap to test without a single packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RouteKind = Literal["silence", "hold", "leg", "mix"]
SupervisorMode = Literal["listen", "whisper", "barge"]
SUPERVISOR_MODES: tuple[SupervisorMode, ...] = ("listen", "whisper", "barge")


@dataclass(frozen=True)
class Route:
    """What one leg hears. ``leg`` routes are forwarded without decoding."""

    kind: RouteKind
    inputs: tuple[str, ...] = ()

    @classmethod
    def silence(cls) -> Route:
        return cls("silence")

    @classmethod
    def hold(cls) -> Route:
        return cls("hold")

    @classmethod
    def leg(cls, name: str) -> Route:
        return cls("leg", (name,))

    @classmethod
    def mix(cls, *names: str) -> Route:
        return cls("mix", tuple(sorted(names)))


@dataclass
class CallState:
    """The media-relevant state of one call; ``codecs`` maps leg name to codec name."""

    codecs: dict[str, str] = field(default_factory=dict)
    bridges: set[frozenset[str]] = field(default_factory=set)
    held: set[str] = field(default_factory=set)
    muted: set[str] = field(default_factory=set)
    supervisors: dict[str, tuple[str, SupervisorMode]] = field(default_factory=dict)
    overrides: dict[str, Route] = field(default_factory=dict)

    def partners(self, leg: str) -> set[str]:
        return {other for pair in self.bridges if leg in pair for other in pair if other != leg}

    def recorded_legs(self) -> list[str]:
        """Everyone who takes part in the conversation: not listening/whispering supervisors."""
        quiet = {s for s, (_, mode) in self.supervisors.items() if mode != "barge"}
        return sorted(leg for leg in self.codecs if leg not in quiet)


def _hears(state: CallState, leg: str) -> set[str]:
    inputs = {p for p in state.partners(leg) if p not in state.held}
    for sup, (agent, mode) in state.supervisors.items():
        if sup not in state.codecs or agent not in state.codecs:
            continue
        conversation = {agent} | state.partners(agent)
        if leg == sup:
            inputs |= {p for p in conversation if p not in state.held}
        elif leg == agent and mode in ("whisper", "barge"):
            inputs.add(sup)  # the agent hears the coach
        elif leg in conversation and mode == "barge" and agent not in state.held:
            inputs.add(sup)
    inputs -= state.muted
    inputs.discard(leg)
    return inputs


def compute_routes(state: CallState) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for leg, codec in state.codecs.items():
        override = state.overrides.get(leg)
        if override is not None:
            routes[leg] = override
            continue
        if leg in state.held:
            routes[leg] = Route.hold()
            continue
        inputs = _hears(state, leg)
        if not inputs:
            routes[leg] = Route.silence()
        elif len(inputs) == 1 and state.codecs[next(iter(inputs))] == codec:
            routes[leg] = Route.leg(next(iter(inputs)))
        else:
            routes[leg] = Route.mix(*inputs)
    return routes
