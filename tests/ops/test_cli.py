"""The `helpdesk` command as an operator runs it: a real subprocess per command."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings
from tests.ops.helpers import isolated_env, run

TOKEN = re.compile(r"hd_[A-Za-z0-9_-]{20,}")


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "helpdesk.db"


def count(tmp_path: Path, sql: str) -> int:
    with sqlite3.connect(db_path(tmp_path)) as conn:
        value: int = conn.execute(sql).fetchone()[0]
    return value


async def api_status(tmp_path: Path, token: str) -> int:
    """GET /api/v1/tickets with `token` against the database the CLI wrote."""
    settings = make_settings(
        tmp_path / "app", f"sqlite+aiosqlite:///{db_path(tmp_path)}", workers_enabled=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            r = await c.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


async def test_migrate_demo_agent_and_token(tmp_path: Path) -> None:
    migrated = run(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "database is up to date" in migrated.stdout
    again = run(tmp_path, "migrate")
    assert again.returncode == 0, again.stderr

    first = run(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    demo_token = TOKEN.search(first.stdout)
    assert demo_token is not None, first.stdout
    assert "support@demo.localhost" in first.stdout
    assert "<script" in first.stdout

    second = run(tmp_path, "demo")
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    assert count(tmp_path, "SELECT count(*) FROM workspace WHERE slug = 'demo'") == 1
    assert count(tmp_path, "SELECT count(*) FROM agent") == 3
    assert count(tmp_path, "SELECT count(*) FROM api_token") == 1

    agent = run(
        tmp_path,
        "create-agent",
        "--workspace=demo",
        "--email=night@demo.localhost",
        "--password=a long enough password",
        "--role=supervisor",
    )
    assert agent.returncode == 0, agent.stderr
    assert "night@demo.localhost" in agent.stdout
    assert count(tmp_path, "SELECT count(*) FROM agent WHERE role = 'supervisor'") == 2

    created = run(tmp_path, "create-token", "--workspace=demo", "--name=ci", "--role=admin")
    assert created.returncode == 0, created.stderr
    # stdout is exactly the token, so `TOKEN=$(helpdesk create-token ...)` just works.
    assert TOKEN.fullmatch(created.stdout.rstrip("\n")), repr(created.stdout)
    assert created.stdout.count("\n") == 1

    token = created.stdout.strip()
    assert await api_status(tmp_path, token) == 200
    assert await api_status(tmp_path, demo_token.group(0)) == 200
    assert await api_status(tmp_path, token + "x") == 401


def test_unknown_workspace_and_duplicate_agent_are_one_line_errors(tmp_path: Path) -> None:
    assert run(tmp_path, "migrate").returncode == 0
    missing = run(tmp_path, "create-token", "--workspace", "nope", "--name", "x")
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr.strip() == "helpdesk: no workspace 'nope'"

    assert run(tmp_path, "demo").returncode == 0
    duplicate = run(
        tmp_path,
        "create-agent",
        "--workspace=demo",
        "--email=agent@demo.localhost",
        "--password=pw-12345678",
    )
    assert duplicate.returncode == 2
    lines = duplicate.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("helpdesk: "), duplicate.stderr


@pytest.mark.parametrize(
    ("command", "variable", "value", "needle"),
    [
        ("serve", "HELPDESK_DATABASE_URL", "mysql://root@localhost/hd", "HELPDESK_DATABASE_URL"),
        ("migrate", "HELPDESK_DATABASE_URL", "mysql://root@localhost/hd", "HELPDESK_DATABASE_URL"),
        ("serve", "HELPDESK_HTTP_PORT", "eighty", "HELPDESK_HTTP_PORT"),
        ("serve", "HELPDESK_LOG_FORMAT", "xml", "HELPDESK_LOG_FORMAT"),
        ("serve", "HELPDESK_ENV", "production", "HELPDESK_SECRET_KEY"),
    ],
)
def test_bad_config_exits_2_with_one_clear_line(
    tmp_path: Path, command: str, variable: str, value: str, needle: str
) -> None:
    env = isolated_env(tmp_path, **{variable: value})
    if variable == "HELPDESK_ENV":
        env.pop("HELPDESK_SECRET_KEY")
    result = run(tmp_path, command, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("helpdesk: invalid configuration: ")
    assert needle in lines[0]
    assert not db_path(tmp_path).exists()
