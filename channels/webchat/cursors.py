"""Per-ticket delivery cursors: the exactly-once, in-order rule for live events.

A connection remembers, per ticket, the highest `seq` it has passed (sent, or
skipped as not visible). A live event is then one of:

- `drop`: seq <= cursor, already delivered (replay and live overlap, or a copy);
- `next`: seq == cursor + 1, deliver it;
- `gap`: seq > cursor + 1, events in between were published later than this one
  (another node, another connection pool); read them from the database first.

Reading the gap from the database is exact because seqs are allocated under the
ticket's row lock and only published after commit: when seq N is seen, every
seq < N is already committed.
"""

from __future__ import annotations

from typing import Literal

Decision = Literal["drop", "next", "gap"]


class Cursors:
    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def __contains__(self, ticket: int) -> bool:
        return ticket in self._seen

    def get(self, ticket: int) -> int | None:
        return self._seen.get(ticket)

    def start(self, ticket: int, after_seq: int) -> None:
        """Follow a ticket from `after_seq` unless it is followed already."""
        self._seen.setdefault(ticket, after_seq)

    def decide(self, ticket: int, seq: int) -> Decision:
        last = self._seen.get(ticket, 0)
        if seq <= last:
            return "drop"
        if seq == last + 1:
            return "next"
        return "gap"

    def advance(self, ticket: int, seq: int) -> None:
        if seq > self._seen.get(ticket, 0):
            self._seen[ticket] = seq

    def forget(self, ticket: int) -> None:
        self._seen.pop(ticket, None)

    def snapshot(self) -> dict[int, int]:
        return dict(self._seen)
