"""Migration 0004 on a SQLite database in use: AUTOINCREMENT without losing a row.

The tables are rebuilt (copied into new ones), so everything has to survive the copy:
rows and their ids, indexes, foreign keys with their ON DELETE actions, and the
full-text search triggers of 0002. Afterwards a deleted id is not handed out again,
including ids deleted before the upgrade that the audit log remembers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import SQLModel

from app.context import AppContext
from app.main import create_app
from app.migrate import check, downgrade, upgrade
from tests.conftest import SeededWorkspace, make_settings, seed_workspace
from tests.storage.conftest import sqlite_tables

API = "/api/v1"
# What the models ask for; test_migrations' drift check holds migration 0004 to it.
REBUILT = {
    table.name
    for table in SQLModel.metadata.tables.values()
    if table.kwargs.get("sqlite_autoincrement")
}


@asynccontextmanager
async def running(tmp_path: Path, url: str) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext]]:
    """The real app on the database at `url` (whatever revision it is at)."""
    application = create_app(make_settings(tmp_path, url))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, application.state.ctx


async def post(client: httpx.AsyncClient, ws: SeededWorkspace, path: str, **body: Any) -> Any:
    r = await client.post(f"{API}{path}", headers=ws.auth(), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def fill(client: httpx.AsyncClient, ws: SeededWorkspace) -> dict[str, int]:
    """Some of everything; deletes the newest ticket and contact (ids the log keeps)."""
    await post(client, ws, "/inboxes", kind="email", name="Mail", address="help@acme.test")
    await post(client, ws, "/webhooks", url="http://127.0.0.1:9/hook", events=["ticket.created"])
    for n in range(3):
        ticket = await post(
            client,
            ws,
            "/tickets",
            subject=f"walrus number {n}",
            contact={"email": f"c{n}@example.com", "name": f"C{n}"},
            message=f"the tusk is chipped {n}",
        )
        r = await client.post(
            f"{API}/tickets/{ticket['id']}/attachments",
            headers=ws.auth(),
            files={"file": (f"{n}.txt", f"file {n}".encode(), "text/plain")},
        )
        assert r.status_code == 201, r.text
        await post(client, ws, f"/tickets/{ticket['id']}/notes", body=f"note {n}")
    r = await client.delete(f"{API}/tickets/{ticket['id']}", headers=ws.auth())
    assert r.status_code == 204, r.text
    r = await client.delete(f"{API}/contacts/{ticket['contact_id']}", headers=ws.auth())
    assert r.status_code == 200, r.text
    return {"ticket": ticket["id"], "contact": ticket["contact_id"]}


def snapshot(path: Path) -> dict[str, Any]:
    """Every row of every table, and the schema apart from the tables' own DDL text."""
    with sqlite3.connect(path) as conn:
        tables = sqlite_tables(conn, skip=("alembic_version",))
        # Sorted in Python: FTS5 keeps part of its index in a table without rowids.
        rows = {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
        schema = {
            "objects": sorted(
                conn.execute(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                    " WHERE type IN ('index', 'trigger', 'view')"
                ).fetchall()
            ),
            "columns": {t: conn.execute(f'PRAGMA table_xinfo("{t}")').fetchall() for t in tables},
            # (table, from, to, on update, on delete, match): not the constraint's position.
            "foreign_keys": {
                t: sorted(row[2:] for row in conn.execute(f'PRAGMA foreign_key_list("{t}")'))
                for t in tables
            },
        }
    return {"rows": rows, "schema": schema}


def autoincrement_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for name, sql in rows if "AUTOINCREMENT" in sql.upper()}


def assert_consistent(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        for fts in ("fts_ticket", "fts_ticket_event"):
            # Raises if the index and its content table disagree.
            conn.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")


async def search(client: httpx.AsyncClient, ws: SeededWorkspace, q: str) -> set[int]:
    r = await client.get(f"{API}/search", headers=ws.auth(), params={"q": q})
    assert r.status_code == 200, r.text
    return {ticket["id"] for ticket in r.json()["tickets"]}


async def test_upgrading_a_database_in_use_keeps_every_row_and_stops_id_reuse(
    tmp_path: Path,
) -> None:
    path = tmp_path / "helpdesk.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url, "0003")
    async with running(tmp_path, url) as (client, ctx):
        ws = await seed_workspace(ctx, "acme")
        deleted = await fill(client, ws)
    before = snapshot(path)
    assert autoincrement_tables(path) == set()

    await asyncio.to_thread(upgrade, url, "0004")

    assert snapshot(path) == before
    assert autoincrement_tables(path) == REBUILT
    assert_consistent(path)
    await asyncio.to_thread(upgrade, url)  # what later revisions change is theirs to test
    assert_consistent(path)
    await asyncio.to_thread(check, url)

    async with running(tmp_path, url) as (client, ctx):
        # Rows written before the upgrade are still found (the search triggers survived).
        assert len(await search(client, ws, "walrus")) == 2
        newest = max(await search(client, ws, "walrus"))
        r = await client.delete(f"{API}/tickets/{newest}", headers=ws.auth())
        assert r.status_code == 204, r.text
        assert len(await search(client, ws, "walrus")) == 1

        ticket = await post(
            client, ws, "/tickets", subject="walrus again", contact={"email": "n@example.com"}
        )
        # Neither the id deleted now nor the one deleted before the upgrade comes back.
        assert ticket["id"] > deleted["ticket"] > newest
        assert ticket["contact_id"] > deleted["contact"]
        assert ticket["id"] in await search(client, ws, "walrus")
    assert_consistent(path)


async def test_downgrading_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "helpdesk.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url, "0004")
    async with running(tmp_path, url) as (client, ctx):
        await fill(client, await seed_workspace(ctx, "acme"))
    before = snapshot(path)

    await asyncio.to_thread(downgrade, url, "0003")

    assert snapshot(path) == before
    assert autoincrement_tables(path) == set()
    assert_consistent(path)
