"""Which agents may take a call: voice capacity, language and skills (pure checks)."""

from __future__ import annotations

from app.models import Agent, Call
from app.services.acd import matches, voice_capacity


def agent(**fields: object) -> Agent:
    return Agent(workspace_id=1, email="a@x.test", name="A", **fields)  # type: ignore[arg-type]


def call(**fields: object) -> Call:
    return Call(workspace_id=1, ticket_id=1, owner_node="n", **fields)  # type: ignore[arg-type]


def test_language_must_match_when_the_agent_lists_languages() -> None:
    assert matches(agent(languages=["de", "en"]), call(language="de-AT"))
    assert not matches(agent(languages=["fr"]), call(language="de"))
    assert matches(agent(languages=[]), call(language="de"))  # lists none: takes any
    assert matches(agent(languages=["fr"]), call(language=None))


def test_every_skill_of_the_call_is_needed() -> None:
    assert matches(agent(skills=["billing", "vip"]), call(skills=["vip"]))
    assert not matches(agent(skills=["billing"]), call(skills=["vip"]))


def test_voice_capacity() -> None:
    assert voice_capacity(agent()) == 1  # the default capacity takes one call
    assert voice_capacity(agent(capacity={"chat": 3, "voice": 0})) == 0
    assert voice_capacity(agent(capacity={"voice": "x"})) == 0
