"""Full-text search over ticket subjects and timeline bodies, one interface for two engines.

SQLite uses the FTS5 tables ``fts_ticket`` / ``fts_ticket_event`` and PostgreSQL
the GIN expression indexes on ``to_tsvector('simple', …)``, both created by
migration 0002. A ticket matches when its subject or one of its events contains
every word of the query; it ranks by its best document (subjects weigh double).

User text never becomes query syntax: for FTS5 every whitespace-separated chunk
is wrapped as a phrase in double quotes (inner quotes doubled), so ``NEAR``,
``OR``, ``*``, ``:`` or parentheses are just text; PostgreSQL gets the text as a
bound parameter of ``plainto_tsquery``, which has no operators at all.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    cast,
    column,
    false,
    func,
    literal,
    literal_column,
    null,
    table,
    text,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import ActorType, Ticket, TicketEvent
from app.models.ticket import CUSTOMER_VISIBLE_KINDS
from app.services.actors import Actor
from app.services.errors import Invalid
from app.services.sql_dialect import dialect_of

MAX_QUERY_CHARS = 500
MAX_TERMS = 32
MAX_LIMIT = 1000
SUBJECT_WEIGHT = 2.0
# A common word can match most of a workspace's history. Ranking every match took
# 0.4 s on SQLite (where statements run on the event loop, so the whole server
# waited) and about 1 s on PostgreSQL for 180 000 matching messages. Only the
# newest matches of the workspace are ranked: this many subjects and this many
# messages; a query that matches more finds what is recent.
RANKED_CANDIDATES = 5000
# With filters (visibility, a list's status…), the candidates are the matches that
# pass them among this many of the workspace's newest: a filter that few matches
# pass would otherwise read back through every match.
SCANNED_CANDIDATES = 20_000
# Private-use characters mark the highlights inside the database's snippet so the
# text around them can be HTML-escaped before <mark> goes in.
_HL_START = "\ue000"
_HL_STOP = "\ue001"
_SNIPPET_WORDS = 16
_WORD = re.compile(r"\w", re.UNICODE)

_fts_ticket = table("fts_ticket", column("rowid"))
_fts_event = table("fts_ticket_event", column("rowid"))


@dataclass(frozen=True)
class SearchHit:
    ticket_id: int
    score: float
    # Where the best match is: "subject" or "event" (then event_id is set).
    source: str
    event_id: int | None
    snippet: str
    # The snippet HTML-escaped with each match wrapped in <mark>…</mark>.
    snippet_html: str


def clean_query(q: str) -> str:
    """Drop what no database accepts (NUL, lone surrogates) and check the size."""
    q = q.encode("utf-8", "ignore").decode("utf-8").replace("\x00", " ").strip()
    if len(q) > MAX_QUERY_CHARS:
        raise Invalid(f"search text is longer than {MAX_QUERY_CHARS} characters")
    return q


def fts5_query(q: str) -> str | None:
    """The FTS5 MATCH expression for user text: every chunk a quoted phrase, ANDed.
    Chunks without a word character are dropped; None when nothing is left."""
    terms = [chunk for chunk in q.split() if _WORD.search(chunk)][:MAX_TERMS]
    if not terms:
        return None
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _event_filters(
    workspace_id: int, actor: Actor | None, *, indexed: bool = True
) -> list[ColumnElement[bool]]:
    workspace = col(TicketEvent.workspace_id)
    clauses: list[ColumnElement[bool]] = [(workspace if indexed else workspace + 0) == workspace_id]
    if actor is not None and actor.type is ActorType.contact:
        # Customers never find tickets through notes or internal bookkeeping.
        clauses.append(col(TicketEvent.internal).is_(False))
        clauses.append(col(TicketEvent.kind).in_(sorted(CUSTOMER_VISIBLE_KINDS)))
    return clauses


def _sqlite_docs(
    workspace_id: int,
    match: str,
    actor: Actor | None,
    tickets: Sequence[ColumnElement[bool]] = (),
) -> Select[Any]:
    # SQLite without statistics preferred the index on workspace_id to the full-text
    # match: it walked every ticket and event of the workspace and asked the FTS
    # table about each, so a search took time in proportion to the workspace's
    # whole history. Compared as an expression (`+ 0`), the workspace can no longer
    # drive: the MATCH does, newest first (FTS5 reads its index backwards), and each
    # match is fetched by its rowid and checked until enough belong to the workspace.
    limit = SCANNED_CANDIDATES if tickets else RANKED_CANDIDATES
    subjects = (
        sa_select(
            col(Ticket.id).label("ticket_id"),
            (-func.bm25(literal_column("fts_ticket")) * SUBJECT_WEIGHT).label("score"),
            literal("subject").label("source"),
            cast(null(), Integer).label("event_id"),
        )
        .select_from(_fts_ticket)
        .join(Ticket, col(Ticket.id) == _fts_ticket.c.rowid)
        .where(
            text("fts_ticket MATCH :fts_q").bindparams(fts_q=match),
            col(Ticket.workspace_id) + 0 == workspace_id,
        )
        .order_by(_fts_ticket.c.rowid.desc())
        .limit(limit)
        .subquery("subjects")
    )
    events = (
        sa_select(
            col(TicketEvent.ticket_id).label("ticket_id"),
            (-func.bm25(literal_column("fts_ticket_event"))).label("score"),
            literal("event").label("source"),
            col(TicketEvent.id).label("event_id"),
        )
        .select_from(_fts_event)
        .join(TicketEvent, col(TicketEvent.id) == _fts_event.c.rowid)
        .where(
            text("fts_ticket_event MATCH :fts_q").bindparams(fts_q=match),
            *_event_filters(workspace_id, actor, indexed=False),
        )
        .order_by(_fts_event.c.rowid.desc())
        .limit(limit)
        .subquery("events")
    )
    return _candidates(subjects, events, tickets)


def _candidates(subjects: Any, events: Any, tickets: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """Both sides of a search, newest first; with `tickets` (visibility, a list's
    filters), the newest of those that pass them, so the candidates are matches the
    caller may have."""
    sides = []
    for side, newest in ((subjects, subjects.c.ticket_id), (events, events.c.event_id)):
        if tickets:
            sides.append(
                sa_select(side.c.ticket_id, side.c.score, side.c.source, side.c.event_id)
                .join(Ticket, col(Ticket.id) == side.c.ticket_id)
                .where(*tickets)
                .order_by(newest.desc())
                .limit(RANKED_CANDIDATES)
                .subquery()
            )
        else:
            sides.append(side)
    return union_all(sa_select(sides[0]), sa_select(sides[1]))  # type: ignore[return-value]


# The exact expressions of migration 0002's expression indexes: the configuration
# must be a literal (not a bound parameter) for the planner to use the GIN index.
def _pg_vector(column_sql: str) -> ColumnElement[Any]:
    return literal_column(f"to_tsvector('simple'::regconfig, {column_sql})")


def _pg_query(q: str) -> ColumnElement[Any]:
    return func.plainto_tsquery(literal_column("'simple'::regconfig"), q)


def _pg_docs(
    workspace_id: int,
    q: str,
    actor: Actor | None,
    tickets: Sequence[ColumnElement[bool]] = (),
) -> Select[Any]:
    subject_vec = _pg_vector("ticket.subject")
    body_vec = _pg_vector("ticket_event.body")
    # Ranking recomputes each match's tsvector: only the newest candidates are ranked.
    limit = SCANNED_CANDIDATES if tickets else RANKED_CANDIDATES
    subjects = (
        sa_select(
            col(Ticket.id).label("ticket_id"),
            (func.ts_rank(subject_vec, _pg_query(q)) * SUBJECT_WEIGHT).label("score"),
            literal("subject").label("source"),
            cast(null(), Integer).label("event_id"),
        )
        .where(subject_vec.op("@@")(_pg_query(q)), col(Ticket.workspace_id) == workspace_id)
        .order_by(col(Ticket.id).desc())
        .limit(limit)
        .subquery("subjects")
    )
    events = (
        sa_select(
            col(TicketEvent.ticket_id).label("ticket_id"),
            func.ts_rank(body_vec, _pg_query(q)).label("score"),
            literal("event").label("source"),
            col(TicketEvent.id).label("event_id"),
        )
        .where(body_vec.op("@@")(_pg_query(q)), *_event_filters(workspace_id, actor))
        .order_by(col(TicketEvent.id).desc())
        .limit(limit)
        .subquery("events")
    )
    return _candidates(subjects, events, tickets)


def _documents(
    session: AsyncSession,
    workspace_id: int,
    q: str,
    actor: Actor | None,
    tickets: Sequence[ColumnElement[bool]],
) -> Select[Any] | None:
    """The candidate documents of the session's engine; None when `q` has no word."""
    dialect = dialect_of(session)
    if dialect == "sqlite":
        match = fts5_query(q)
        return None if match is None else _sqlite_docs(workspace_id, match, actor, tickets)
    if dialect == "postgresql":
        return _pg_docs(workspace_id, q, actor, tickets) if _WORD.search(q) else None
    raise NotImplementedError(f"full-text search is not implemented for {dialect}")


async def _ranked(
    session: AsyncSession,
    workspace_id: int,
    q: str,
    *,
    actor: Actor | None,
    limit: int,
) -> list[tuple[int, float, str, int | None]]:
    visible: list[ColumnElement[bool]] = []
    if actor is not None:
        from app.services.tickets import visibility_clause

        clause = visibility_clause(actor)
        if clause is not None:
            visible.append(clause)
    documents = _documents(session, workspace_id, q, actor, visible)
    if documents is None:
        return []
    docs = documents.subquery("docs")
    # Keep each ticket's best document, then rank tickets by it.
    best = sa_select(
        docs.c.ticket_id,
        docs.c.score,
        docs.c.source,
        docs.c.event_id,
        func.row_number()
        .over(partition_by=docs.c.ticket_id, order_by=(docs.c.score.desc(), docs.c.event_id))
        .label("rn"),
    ).subquery("best")
    stmt = (
        sa_select(best.c.ticket_id, best.c.score, best.c.source, best.c.event_id)
        .join(Ticket, col(Ticket.id) == best.c.ticket_id)
        .where(best.c.rn == 1, col(Ticket.workspace_id) == workspace_id)
        .order_by(best.c.score.desc(), best.c.ticket_id.desc())
        .limit(limit)
    )
    # Core statements run on the session's connection (sqlmodel deprecates execute()).
    connection = await session.connection()
    rows = (await connection.execute(stmt)).all()
    return [(int(r[0]), float(r[1]), str(r[2]), r[3]) for r in rows]


async def _snippets(
    session: AsyncSession, q: str, ticket_ids: list[int], event_ids: list[int]
) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    if dialect_of(session) == "sqlite":
        match = fts5_query(q)
        for source, fts, ids in (
            ("subject", "fts_ticket", ticket_ids),
            ("event", "fts_ticket_event", event_ids),
        ):
            if not ids:
                continue
            stmt = text(
                f"SELECT rowid, snippet({fts}, 0, :start, :stop, '…', :words) FROM {fts} "
                f"WHERE {fts} MATCH :fts_q AND rowid IN ({','.join(str(int(i)) for i in ids)})"
            ).bindparams(start=_HL_START, stop=_HL_STOP, words=_SNIPPET_WORDS, fts_q=match)
            # A plain text statement: run it on the session's connection (same transaction).
            connection = await session.connection()
            for rowid, snippet in (await connection.execute(stmt)).all():
                out[(source, int(rowid))] = str(snippet or "")
        return out
    options = (
        f"StartSel={_HL_START}, StopSel={_HL_STOP}, MaxWords={_SNIPPET_WORDS}, MinWords=6, "
        'MaxFragments=2, FragmentDelimiter=" … "'
    )
    for source, id_col, text_col, ids in (
        ("subject", col(Ticket.id), col(Ticket.subject), ticket_ids),
        ("event", col(TicketEvent.id), col(TicketEvent.body), event_ids),
    ):
        if not ids:
            continue
        pg_stmt = sa_select(
            id_col,
            func.ts_headline(
                literal_column("'simple'::regconfig"), text_col, _pg_query(q), options
            ),
        ).where(id_col.in_(ids))
        connection = await session.connection()
        for rowid, snippet in (await connection.execute(pg_stmt)).all():
            out[(source, int(rowid))] = str(snippet or "")
    return out


def _render(raw: str) -> tuple[str, str]:
    plain = raw.replace(_HL_START, "").replace(_HL_STOP, "")
    marked = html.escape(raw).replace(_HL_START, "<mark>").replace(_HL_STOP, "</mark>")
    return plain, marked


async def search_tickets(
    session: AsyncSession,
    workspace_id: int,
    q: str,
    *,
    actor: Actor | None = None,
    limit: int = 50,
    snippets: bool = True,
) -> list[SearchHit]:
    """Tickets of one workspace matching every word of ``q``, best first.

    With ``actor`` the results are limited to the tickets that actor may see (team
    scoping for agents; only customer-visible events for contacts)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}")
    q = clean_query(q)
    if not q:
        return []
    ranked = await _ranked(session, workspace_id, q, actor=actor, limit=limit)
    texts: dict[tuple[str, int], str] = {}
    if snippets and ranked:
        texts = await _snippets(
            session,
            q,
            [t for t, _, source, _ in ranked if source == "subject"],
            [e for _, _, source, e in ranked if source == "event" and e is not None],
        )
    hits = []
    for ticket_id, score, source, event_id in ranked:
        key = (source, ticket_id if source == "subject" else int(event_id or 0))
        plain, marked = _render(texts.get(key, ""))
        hits.append(
            SearchHit(
                ticket_id=ticket_id,
                score=score,
                source=source,
                event_id=event_id,
                snippet=plain,
                snippet_html=marked,
            )
        )
    return hits


def matching_tickets(
    session: AsyncSession,
    workspace_id: int,
    q: str,
    tickets: Sequence[ColumnElement[bool]] = (),
) -> ColumnElement[bool]:
    """A filter for ticket lists: the ticket has a match of ``q`` among the newest
    candidates of the workspace's tickets that pass `tickets` (the list's other
    filters and the caller's visibility).

    A subquery rather than a list of the best-ranked ids, and filtered before the
    candidates are cut: cutting to the best 1 000 first lost the matching tickets
    ranked below them (an open ticket behind a thousand closed ones)."""
    documents = _documents(session, workspace_id, clean_query(q), None, tickets)
    if documents is None:
        return false()
    found = documents.subquery("matches")
    return col(Ticket.id).in_(sa_select(found.c.ticket_id))
