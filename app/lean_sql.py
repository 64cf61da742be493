"""Hot statements sent straight to the DB-API cursor, compiled once per shape.

SQLAlchemy's Core execution costs 0.15-0.3 ms of CPU per statement around what
the database itself does (an execution context, parameter processing, a result
object), and it expands an `IN` list by rewriting the SQL string with a regular
expression on every call. A group-commit batch of widget messages sends six
statements; at a few messages per batch that overhead was most of the server's
CPU per message (see the chat issue notes). A `Lean` statement is still built with
SQLAlchemy and compiled by it, once per dialect and per length of each expanding
list; what runs per call is a list of the positional parameters, the cursor call
and the rows as plain tuples.

It runs on the connection of the caller's transaction, through SQLAlchemy's own
DB-API adapter (`AsyncConnection.run_sync`), so PostgreSQL's adapter still opens
its transaction first and errors still arrive as `sqlalchemy.exc.DBAPIError`
subclasses (`IntegrityError`, `OperationalError`), which the group commit tells
apart; a connection that died is invalidated. On our inline SQLite driver
(`app.sqlite_inline`), inside an open transaction, it calls SQLite directly: the
adapter's greenlet and awaits were a fifth of a one-message chat transaction, and
there is nothing to await there unless the database is busy, which sends the
statement back the adapter's way to wait. Bind and result processors run as in
SQLAlchemy, None included. What it does not do: ORM identity-map updates, the
engine's `echo` log, `handle_error` hooks, `literal_execute` parameters. Keep it to
hot statements whose results are plain values.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, Table, exc, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from app.sqlite_inline import InlineConnection, is_busy

Row = tuple[Any, ...]
Processor = Callable[[Any], Any] | None

# Compiled shapes kept per statement: one per combination of list lengths seen.
MAX_SHAPES = 256


class _Slot:
    """Stands for a caller's value while a shape is compiled: `(key, subkey)`, the
    value being `params[key]` (subkey None) or `params[key][subkey]`."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[Any, Any]) -> None:
        self.key = key


@dataclass(frozen=True, slots=True)
class _Shape:
    sql: str
    # Per positional parameter: where its value comes from (a `_Slot` key), or None
    # for a constant of the statement, in `constants` already processed.
    sources: tuple[tuple[Any, Any] | None, ...]
    constants: tuple[Any, ...]
    processors: tuple[Processor, ...]


class Lean:
    """A Core statement (SELECT, or DML with RETURNING or without) run through
    `execute(connection, params)`; `expanding` names its `bindparam(...,
    expanding=True)` parameters (lists)."""

    def __init__(self, statement: ClauseElement, *, expanding: Sequence[str] = ()) -> None:
        self.statement = statement
        self.expanding = tuple(expanding)
        self._compiled: dict[str, SQLCompiler] = {}
        self._shapes: dict[tuple[str, tuple[int, ...]], _Shape] = {}
        self._results: dict[str, tuple[Processor, ...] | None] = {}

    async def execute(self, connection: AsyncConnection, params: Mapping[str, Any]) -> list[Row]:
        """The rows of the statement run with `params` (an empty list for DML
        without RETURNING); an empty expanding list matches nothing, as in SQL."""
        dialect = connection.dialect
        sql, values = self.render(dialect, params)
        rows, description = await _execute(connection, sql, values)
        if not rows:
            return rows
        processors = self._results.get(dialect.name, ())
        if processors == ():
            processors = self._results[dialect.name] = self._result_processors(dialect, description)
        if processors is None:
            return rows
        return [
            tuple(
                value if process is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in rows
        ]

    def render(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and positional parameters `execute` sends (also for EXPLAIN)."""
        lengths = tuple(len(params[name]) for name in self.expanding)
        shape = self._shapes.get((dialect.name, lengths))
        if shape is None:
            shape = self._shape(dialect, lengths)
        return shape.sql, _positional(shape, params)

    def _shape(self, dialect: Dialect, lengths: tuple[int, ...]) -> _Shape:
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = self.statement.compile(dialect=dialect)  # type: ignore[assignment]
            assert compiled is not None
        slots: dict[str, Any] = {name: _Slot((name, None)) for name in compiled.binds}
        for name, length in zip(self.expanding, lengths, strict=True):
            slots[name] = [_Slot((name, i)) for i in range(length)]
        for name, bind in compiled.binds.items():
            # Values fixed in the statement (`.in_([...])` of constants, literals).
            if bind.value is not None and name not in self.expanding:
                slots[name] = bind.effective_value
        state = compiled.construct_expanded_state(slots)
        assert state.positiontup is not None
        shape = _make_shape(
            dialect,
            compiled,
            state.statement,
            state.positiontup,
            state.positional_parameters,
            state.processors,
        )
        self._shapes[(dialect.name, lengths)] = shape
        return shape

    def _result_processors(
        self, dialect: Dialect, description: Sequence[Sequence[Any]] | None
    ) -> tuple[Processor, ...] | None:
        # A text() statement declares no columns: its values come as the driver gives them.
        columns = list(getattr(self.statement, "exported_columns", ()))
        if not columns or description is None:
            return None
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, entry[1])
            for column, entry in zip(columns, description, strict=True)
        )
        return None if all(p is None for p in processors) else processors


class LeanInsert:
    """`INSERT INTO table (...) VALUES (...), (...) RETURNING id` for rows given as
    dicts with the same keys; their ids, in the rows' order.

    The ids come back sorted: a statement's rows take their ids one after the
    other, in the order of its VALUES (SQLite: each the largest so far plus one;
    PostgreSQL: the sequence, evaluated row by row), so ascending ids are the rows
    in order whatever order RETURNING lists them in."""

    # Rows per statement: far below SQLite's 32 766 variables for our widest table.
    MAX_ROWS = 500

    def __init__(self, table: Table) -> None:
        self.table = table
        (self.pk,) = table.primary_key.columns
        self._shapes: dict[tuple[str, int, tuple[str, ...]], _Shape] = {}

    async def insert(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        ids: list[int] = []
        for start in range(0, len(rows), self.MAX_ROWS):
            ids.extend(await self._insert(connection, rows[start : start + self.MAX_ROWS]))
        return ids

    async def _insert(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> list[int]:
        if not rows:
            return []
        names = tuple(rows[0])
        dialect = connection.dialect
        key = (dialect.name, len(rows), names)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shape(dialect, len(rows), names)
        found, _ = await _execute(connection, shape.sql, _positional(shape, rows))
        return sorted(int(row[0]) for row in found)

    def _shape(self, dialect: Dialect, count: int, names: tuple[str, ...]) -> _Shape:
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        columns = {column.key for column in self.table.columns}
        unknown = set(names) - columns
        if unknown:
            raise ValueError(f"{self.table.name}: no column {sorted(unknown)}")
        statement: Insert = insert(self.table).returning(self.pk)
        slots = [{name: _Slot((i, name)) for name in names} for i in range(count)]
        compiled: Any = statement.values(slots).compile(dialect=dialect)
        params = compiled.construct_params()
        positional = [params[name] for name in compiled.positiontup]
        # Python-side defaults of columns the rows leave out would be compiled into
        # the shape once; every column a default would fill must be given.
        for value in positional:
            if not isinstance(value, _Slot):
                raise ValueError(f"{self.table.name}: rows must give every column with a default")
        shape = _make_shape(
            dialect, compiled, compiled.string, compiled.positiontup, positional, {}
        )
        self._shapes[(dialect.name, count, names)] = shape
        return shape


def _make_shape(
    dialect: Dialect,
    compiled: Any,
    sql: str,
    positiontup: Sequence[str],
    positional: Sequence[Any],
    expanded_processors: Mapping[str, Any],
) -> _Shape:
    sources: list[tuple[Any, Any] | None] = []
    constants: list[Any] = []
    processors: list[Processor] = []
    binds = compiled.binds
    for name, value in zip(positiontup, positional, strict=True):
        process = expanded_processors.get(name)
        if process is None and name in binds:
            process = binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if isinstance(value, _Slot):
            sources.append(value.key)
            constants.append(None)
            processors.append(process)
        else:
            sources.append(None)
            constants.append(value if process is None else process(value))
            processors.append(None)
    return _Shape(sql, tuple(sources), tuple(constants), tuple(processors))


def _positional(shape: _Shape, params: Any) -> list[Any]:
    values = []
    for source, constant, process in zip(
        shape.sources, shape.constants, shape.processors, strict=True
    ):
        if source is None:
            values.append(constant)
            continue
        key, subkey = source
        value = params[key] if subkey is None else params[key][subkey]
        values.append(value if process is None else process(value))
    return values


async def _execute(
    connection: AsyncConnection, sql: str, values: list[Any]
) -> tuple[list[Row], Any]:
    sync = connection.sync_connection
    if sync is not None and sync.in_transaction() and not sync.invalidated:
        raw = sync.connection.driver_connection
        if isinstance(raw, InlineConnection):
            inline = raw.in_transaction_now()
            if inline is not None:
                try:
                    return _run_on(sync, inline.cursor(), sql, values)
                except exc.OperationalError as error:
                    busy = error.orig
                    if not (isinstance(busy, sqlite3.OperationalError) and is_busy(busy)):
                        raise
                    # Busy: the statement did nothing; the adapter's path waits for
                    # the database without blocking the loop.
    return await connection.run_sync(_run, sql, values)


def _run(connection: Connection, sql: str, values: list[Any]) -> tuple[list[Row], Any]:
    """On SQLAlchemy's DB-API adapter, inside its greenlet: the statement in the
    connection's transaction (begun here if the caller had not, as SQLAlchemy's
    own execute would)."""
    if not connection.in_transaction():
        connection.begin()
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    return _run_on(connection, dbapi_connection.cursor(), sql, values)


def _run_on(
    connection: Connection, cursor: Any, sql: str, values: list[Any]
) -> tuple[list[Row], Any]:
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    parameters = dialect.execute_sequence_format(values)
    # Statement listeners (tracing, tests that count statements) see these
    # statements as they see SQLAlchemy's own, without an execution context. The
    # engine's `echo` log does not show them.
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute:
        dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, False)
    try:
        cursor.execute(sql, parameters)
        description = cursor.description
        rows = [tuple(row) for row in cursor.fetchall()] if description else []
    except dialect.loaded_dbapi.Error as error:
        # A connection that died must not go back to the pool.
        gone = dialect.is_disconnect(error, dbapi_connection, cursor)
        if gone:
            connection.invalidate(error)
        raise exc.DBAPIError.instance(
            sql,
            values,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=gone,
            dialect=dialect,
        ) from error
    finally:
        cursor.close()
    if dispatch.after_cursor_execute:
        dispatch.after_cursor_execute(connection, cursor, sql, parameters, None, False)
    return rows, description
