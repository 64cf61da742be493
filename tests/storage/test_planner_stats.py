"""SQLite plans must not depend on the order the migrations happened to create the
indexes in (it follows a Python set's iteration, so it differs between
installations); estimated statistics make the selective index win every tie, and
statistics that ANALYZE gathered are kept."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from app.migrate import upgrade
from app.planner_stats import fill_missing

ROOT = Path(__file__).resolve().parents[2]

# Two statements whose plan flipped between builds: a contact merge moving the
# tickets, and a ticket's attachments.
STATEMENTS = {
    "UPDATE ticket SET contact_id = ? WHERE ticket.contact_id = ? AND ticket.workspace_id = ?": (
        [2, 1, 1],
        "ix_ticket_contact_id",
    ),
    "SELECT id FROM attachment WHERE workspace_id = ? AND ticket_id = ?": (
        [1, 1],
        "ix_attachment_ticket_id",
    ),
}


def build(path: Path, hash_seed: str) -> None:
    """Migrate a new database in a process of its own, with its own set ordering."""
    code = f"from app.migrate import upgrade; upgrade('sqlite+aiosqlite:///{path}')"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def index_order(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='ticket'")
        return [str(row[0]) for row in rows]


def plan(path: Path, sql: str, params: list[int]) -> list[str]:
    with sqlite3.connect(path) as db:
        return [str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def test_every_build_picks_the_selective_index(tmp_path: Path) -> None:
    builds = []
    for seed in ("1", "3"):  # these two create the ticket indexes in different orders
        path = tmp_path / f"seed{seed}.db"
        build(path, seed)
        builds.append(path)
    assert index_order(builds[0]) != index_order(builds[1])
    for sql, (params, index) in STATEMENTS.items():
        plans = [plan(path, sql, params) for path in builds]
        assert plans[0] == plans[1], sql
        assert index in plans[0][0], plans[0]


def test_statistics_gathered_by_analyze_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as db:
        estimated = dict(db.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'ticket'"))
        assert estimated["ix_ticket_contact_id"].split()[0] == "1000000"
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute(
            "INSERT INTO ticket (id, workspace_id, number, subject, status, priority, channel,"
            " tags, custom_fields, participants, last_seq, created_at, updated_at)"
            " VALUES (1, 1, 1, '', 'new', 'normal', 'api', '[]', '{}', '[]', 0, '', '')"
        )
        db.execute("ANALYZE ticket")
        gathered = dict(db.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'ticket'"))
    assert gathered["ix_ticket_contact_id"].split()[0] == "1"
    fill_missing(str(path))  # may estimate an index ANALYZE wrote nothing for
    with sqlite3.connect(path) as db:
        kept = dict(db.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'ticket'"))
    assert {idx: kept[idx] for idx in gathered} == gathered
