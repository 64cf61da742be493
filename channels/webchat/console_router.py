"""Which agent consoles of a workspace hear which of its bus messages.

Every ticket event, typing signal and ticket update of a workspace is published on
the workspace's topic. Subscribed directly, each console was offered every one of
them and filtered it (`AgentConnection._wanted`): the cost of a chat message grew
with the number of consoles open in the workspace (bench/chat.py: 0.60 ms of server
CPU per message with 50 consoles, 1.22 ms with 500), although one or two of them
want it. Here one subscription per workspace and node hands a message only to
the consoles that may want it, found through an index:

- by ticket: the tickets a console follows, holds, or was just given;
- consoles following the whole workspace or a team (they filter by team);
- consoles following their assigned tickets, for assignment events (they track
  their own assignments);
- anything else (a malformed message, a kind the index does not know): all.

The index only narrows; each chosen console still decides with `_wanted`, so what
a console receives is exactly what it received when it filtered everything.
Everything here runs synchronously in the publisher's call, like the bus itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from app.bus.base import EventBus, Message, Subscription
from app.events import workspace_topic

if TYPE_CHECKING:
    from channels.webchat.agent_ws import AgentConnection

_TICKET_ROWS = ("ticket.created", "ticket.updated", "ticket.deleted")
_SIGNALS = ("typing", "read")


class TrackedSet(set[int]):
    """A console's set of tickets (or teams) that tells the index when it changes.

    Only `add`, `discard`, `remove` and `clear` tell it: change these sets through
    them (`update`, `|=` or `pop` would leave the index behind, and the console
    would miss messages)."""

    def __init__(self, changed: Callable[[int | None], None]) -> None:
        super().__init__()
        self._changed = changed

    def add(self, value: int) -> None:
        if value not in self:
            super().add(value)
            self._changed(value)

    def discard(self, value: object) -> None:
        if isinstance(value, int) and value in self:
            super().discard(value)
            self._changed(value)

    def remove(self, value: int) -> None:
        super().remove(value)
        self._changed(value)

    def clear(self) -> None:
        values = list(self)
        super().clear()
        for value in values:
            self._changed(value)


class ConsoleRouter:
    """The consoles of one workspace on this node."""

    def __init__(self, workspace_id: int) -> None:
        self.workspace_id = workspace_id
        self.consoles: set[AgentConnection] = set()
        self.by_ticket: dict[int, set[AgentConnection]] = {}
        self.wide: set[AgentConnection] = set()
        self.assigning: set[AgentConnection] = set()
        self.sub: Subscription | None = None
        self.ready = asyncio.Event()

    def route(self, message: Message) -> bool:
        """The router subscription's `accept`: offer `message` to the consoles that
        may want it; the router's own buffer never keeps anything."""
        for console in self._candidates(message):
            if console.sub is not None:
                console.sub.offer(message)
        return False

    def _candidates(self, message: Message) -> tuple[AgentConnection, ...]:
        kind = message.get("type")
        extra: Iterable[AgentConnection] = ()
        try:
            if kind == "ticket.event":
                ticket = int(message["ticket"])
                if message.get("kind") == "assignment":
                    extra = self.assigning
            elif kind in _TICKET_ROWS:
                ticket = int((message.get("ticket") or {}).get("id") or 0)
            elif kind in _SIGNALS:
                ticket = int(message.get("ticket") or 0)
            else:
                return tuple(self.consoles)
        except Exception:  # malformed: the consoles' own filters deal with it
            return tuple(self.consoles)
        following = self.by_ticket.get(ticket)
        if following is None and not extra:
            return tuple(self.wide)
        return tuple({*(following or ()), *self.wide, *extra})

    # -- index upkeep (called by the consoles) ------------------------------------------

    def ticket_changed(self, console: AgentConnection, ticket: int | None) -> None:
        if ticket is None:
            return
        followers = self.by_ticket.get(ticket)
        if console.follows(ticket):
            if followers is None:
                followers = self.by_ticket[ticket] = set()
            followers.add(console)
        elif followers is not None:
            followers.discard(console)
            if not followers:
                del self.by_ticket[ticket]

    def streams_changed(self, console: AgentConnection) -> None:
        if console.workspace or console.teams:
            self.wide.add(console)
        else:
            self.wide.discard(console)
        if console.assigned_stream:
            self.assigning.add(console)
        else:
            self.assigning.discard(console)

    def forget(self, console: AgentConnection) -> None:
        self.consoles.discard(console)
        self.wide.discard(console)
        self.assigning.discard(console)
        for ticket in [t for t, followers in self.by_ticket.items() if console in followers]:
            self.by_ticket[ticket].discard(console)
            if not self.by_ticket[ticket]:
                del self.by_ticket[ticket]


class ConsoleRouters:
    """One router per workspace with consoles on this node; it follows the workspace
    topic while it has consoles."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.routers: dict[int, ConsoleRouter] = {}

    async def join(self, console: AgentConnection, workspace_id: int) -> ConsoleRouter:
        """Route the workspace's messages to `console` from now on (once this returns)."""
        router = self.routers.get(workspace_id)
        if router is None:
            router = self.routers[workspace_id] = ConsoleRouter(workspace_id)
            router.consoles.add(console)
            try:
                router.sub = await self.bus.subscribe([workspace_topic(workspace_id)], maxsize=1)
            except BaseException:
                router.consoles.discard(console)
                if self.routers.get(workspace_id) is router:
                    del self.routers[workspace_id]
                router.ready.set()  # those waiting for it fail below
                raise
            router.sub.accept = router.route
            router.ready.set()
        else:
            router.consoles.add(console)
            await router.ready.wait()
            if router.sub is None:
                router.consoles.discard(console)
                raise RuntimeError("the workspace's bus subscription failed")
        router.streams_changed(console)
        return router

    async def leave(self, console: AgentConnection, router: ConsoleRouter) -> None:
        router.forget(console)
        if router.consoles or self.routers.get(router.workspace_id) is not router:
            return
        del self.routers[router.workspace_id]
        if router.sub is not None:
            await router.sub.close()
