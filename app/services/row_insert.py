"""Core statements on hot paths inside an ORM session; INSERT one new row that way.

A unit-of-work flush of one new row costs several times the INSERT it sends: on the
inbound paths (a ticket and its first event per mail or chat message) it was the
largest share of the server's CPU. `insert_row` sends the same INSERT ... RETURNING
id, then attaches the object to the session as a persistent row, so later changes to
it are tracked and flushed as usual.

`core_connection` is for other hot statements (a lookup, a counter UPDATE): an ORM
query costs about three times the same Core one.

`insert_rows` is the multi-row form, for rows whose ids are needed in order.

`insert_row` only for plain rows: no relationships, no ORM events, no server-side defaults other
than the primary key (the models here fill every column in Python).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app.lean_sql import LeanInsert

_statements: dict[Table, tuple[Insert, list[str]]] = {}


def _statement(table: Table) -> tuple[Insert, list[str]]:
    found = _statements.get(table)
    if found is None:
        (pk,) = table.primary_key.columns
        names = [c.key for c in table.columns if c is not pk]
        found = _statements[table] = (insert(table).returning(pk), names)
    return found


async def core_connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection for a Core statement on a hot path, after flushing
    what the ORM's autoflush would have flushed first (rows the statement may refer
    to or read)."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    return await session.connection()


async def insert_row(session: AsyncSession, row: SQLModel) -> None:
    """INSERT `row` (new, not in the session, id unset) and make it persistent in `session`."""
    table: Any = row.__table__  # type: ignore[attr-defined]
    statement, names = _statement(table)
    values = {name: getattr(row, name) for name in names}
    connection = await core_connection(session)
    row_id = (await connection.execute(statement, values)).scalar_one()
    row.id = row_id
    make_transient_to_detached(row)
    session.add(row)


_many: dict[Table, LeanInsert] = {}


async def insert_rows(
    connection: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> list[int]:
    """One multi-row INSERT of `rows` (all with the same keys); their ids, in order."""
    statement = _many.get(table)
    if statement is None:
        statement = _many[table] = LeanInsert(table)
    return await statement.insert(connection, rows)
