"""Alembic environment: async engine, SQLModel metadata, batch mode on SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.db import create_engine, is_unmanaged_table

config = context.config
target_metadata = SQLModel.metadata


def _include_object(obj: Any, name: str | None, type_: str, *_args: Any) -> bool:
    # Full-text search tables (SQLite) and expression indexes (PostgreSQL) are
    # created by hand-written revisions and share the fts_ prefix.
    return not (type_ in ("table", "index") and name is not None and is_unmanaged_table(name))


def _configure(connection: Connection | None = None, **kwargs: Any) -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    context.configure(
        connection=connection,
        url=None if connection is not None else url,
        target_metadata=target_metadata,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        include_object=_include_object,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            _check_foreign_keys(connection)


def _foreign_keys_off(connection: Connection) -> None:
    """SQLite: stop enforcing foreign keys on this connection (app.db turns them on).

    A batch ("move and copy") alteration drops a table and renames its copy into place.
    While foreign keys are enforced, DROP TABLE first deletes every row, and the ON DELETE
    actions of the tables referencing it run: rebuilding `ticket` would empty
    `ticket_event`. The pragma is ignored inside a transaction, so it goes to the driver
    connection before the migrations begin theirs; `_check_foreign_keys` checks the
    references at the end instead.
    """
    cursor = connection.connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=OFF")
    finally:
        cursor.close()


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        # Raised before the commit: the migrations are rolled back.
        raise RuntimeError(f"migrations left rows with dangling references: {broken[:10]}")


async def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run_sync(connectable)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.run_sync(_foreign_keys_off)
        await connection.run_sync(_run_sync)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
