"""The plan SQLite picks for a search: from the full-text match, never from the
workspace's rows (SQLite has no statistics here to tell it which is smaller)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite as sqlite_dialect

from app.services.actors import Actor
from app.services.search import _sqlite_docs, fts5_query


@pytest.mark.parametrize("customer", [False, True])
def test_on_sqlite_the_match_drives_the_search_not_the_workspace(
    sqlite_template: Path, customer: bool
) -> None:
    """SQLite once walked every ticket and event of the workspace and asked the FTS
    table about each, so a search took time in proportion to the workspace's whole
    history. The plan must start from the full-text match, newest first, and fetch
    each matching row by its id."""
    actor = Actor.contact(1, 1, "Jane") if customer else None
    statement = _sqlite_docs(1, fts5_query("parcel late") or "", actor)
    compiled = statement.compile(dialect=sqlite_dialect.dialect())
    expanded = compiled.construct_expanded_state()
    values = [expanded.parameters[name] for name in expanded.positiontup or ()]
    db = sqlite3.connect(sqlite_template)
    try:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {expanded.statement}", values)]
    finally:
        db.close()
    scans = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    # FTS5 reports ORDER BY rowid DESC consumed as idxNum 192: newest match first, no sort.
    assert scans == [
        "SCAN fts_ticket VIRTUAL TABLE INDEX 192:M1",
        "SEARCH ticket USING INTEGER PRIMARY KEY (rowid=?)",
        "SCAN subjects",
        "SCAN fts_ticket_event VIRTUAL TABLE INDEX 192:M1",
        "SEARCH ticket_event USING INTEGER PRIMARY KEY (rowid=?)",
        "SCAN events",
    ], plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
