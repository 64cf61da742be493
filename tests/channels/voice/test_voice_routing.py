"""Who hears whom, for every call situation, without a packet (routing is pure)."""

from __future__ import annotations

from channels.voice.routing import CallState, Route, compute_routes


def bridged(**codecs: str) -> CallState:
    state = CallState(codecs=dict(codecs) or {"customer": "opus", "agent": "opus"})
    state.bridges.add(frozenset(("customer", "agent")))
    return state


def test_unbridged_legs_hear_silence_and_held_legs_hear_hold() -> None:
    state = CallState(codecs={"customer": "opus"})
    assert compute_routes(state) == {"customer": Route.silence()}
    state.held.add("customer")
    assert compute_routes(state) == {"customer": Route.hold()}


def test_bridge_forwards_same_codec_and_mixes_across_codecs() -> None:
    assert compute_routes(bridged()) == {
        "customer": Route.leg("agent"),
        "agent": Route.leg("customer"),
    }
    routes = compute_routes(bridged(customer="pcmu", agent="opus"))
    assert routes == {"customer": Route.mix("agent"), "agent": Route.mix("customer")}


def test_hold_and_mute() -> None:
    state = bridged()
    state.held.add("customer")
    assert compute_routes(state) == {"customer": Route.hold(), "agent": Route.silence()}
    state.held.clear()
    state.muted.add("customer")
    assert compute_routes(state) == {"customer": Route.leg("agent"), "agent": Route.silence()}


def test_supervisor_modes() -> None:
    state = bridged()
    state.codecs["sup"] = "opus"
    state.supervisors["sup"] = ("agent", "listen")
    assert compute_routes(state) == {
        "customer": Route.leg("agent"),
        "agent": Route.leg("customer"),
        "sup": Route.mix("agent", "customer"),
    }
    state.supervisors["sup"] = ("agent", "whisper")
    routes = compute_routes(state)
    assert routes["customer"] == Route.leg("agent")
    assert routes["agent"] == Route.mix("customer", "sup")
    state.supervisors["sup"] = ("agent", "barge")
    routes = compute_routes(state)
    assert routes["customer"] == Route.mix("agent", "sup")
    assert routes["agent"] == Route.mix("customer", "sup")
    assert routes["sup"] == Route.mix("agent", "customer")
    assert state.recorded_legs() == ["agent", "customer", "sup"]
    state.supervisors["sup"] = ("agent", "whisper")
    assert state.recorded_legs() == ["agent", "customer"]


def test_warm_transfer_consult_keeps_the_customer_on_hold() -> None:
    state = bridged()
    state.codecs["agent2"] = "opus"
    state.held.add("customer")
    state.bridges.add(frozenset(("agent", "agent2")))
    assert compute_routes(state) == {
        "customer": Route.hold(),
        "agent": Route.leg("agent2"),
        "agent2": Route.leg("agent"),
    }
    # Complete: the first agent leaves, the customer is bridged to the second.
    state.bridges = {frozenset(("customer", "agent2"))}
    state.held.clear()
    del state.codecs["agent"]
    assert compute_routes(state) == {
        "customer": Route.leg("agent2"),
        "agent2": Route.leg("customer"),
    }


def test_override_wins() -> None:
    state = bridged()
    state.overrides["agent"] = Route.hold()
    assert compute_routes(state)["agent"] == Route.hold()
