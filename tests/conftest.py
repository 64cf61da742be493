"""Shared fixtures: a migrated database, the running app, HTTP clients, seeded workspaces.

Every test gets its own SQLite file (copied from a template migrated once per
session) or, for PostgreSQL tests, its own freshly created database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from app.context import AppContext
from app.main import create_app
from app.migrate import upgrade
from app.models import ActorType, Inbox, InboxKind, Role
from app.services import tokens, workspaces
from app.services.actors import Actor
from app.services.passwords import use_cheap_hashing_for_tests
from app.settings import Settings, load_settings

use_cheap_hashing_for_tests()

PG_URL = os.environ.get("HELPDESK_TEST_PG_URL")
REDIS_URL = os.environ.get("HELPDESK_TEST_REDIS_URL")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

requires_pg = pytest.mark.skipif(not PG_URL, reason="HELPDESK_TEST_PG_URL is not set")
requires_redis = pytest.mark.skipif(not REDIS_URL, reason="HELPDESK_TEST_REDIS_URL is not set")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def _sqlite_url(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "helpdesk.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


_pg_template: str | None = None


async def _pg_admin(sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    assert PG_URL
    base = make_url(PG_URL)
    conn = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    assert PG_URL
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


async def create_pg_database(migrated: bool = True) -> tuple[str, str]:
    """A fresh PostgreSQL database; returns (url, name).

    Migrated databases are cloned from a template migrated once per test session,
    which is several times faster than running the migrations for every test.
    """
    global _pg_template
    name = "t_" + uuid.uuid4().hex[:16]
    if not migrated:
        await _pg_admin(f'CREATE DATABASE "{name}"')
        return _pg_url(name), name
    if _pg_template is None:
        template = "tmpl_" + uuid.uuid4().hex[:16]
        await _pg_admin(f'CREATE DATABASE "{template}"')
        await asyncio.to_thread(upgrade, _pg_url(template))
        _pg_template = template
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template}"')
    return _pg_url(name), name


async def drop_pg_database(name: str) -> None:
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _pg_template is not None:
        asyncio.run(drop_pg_database(_pg_template))


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "secret_key": "test-secret-key-" + "x" * 32,
        "data_dir": tmp_path / "data",
        "public_url": "http://testserver",
        "smtp_listen": "127.0.0.1:0",
        "smtp_relay": None,
        "redis_url": None,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(params=["sqlite"])
async def database_url(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[str]:
    """SQLite by default; tests parametrize with ["sqlite", "pg"] to run on both."""
    if request.param == "pg":
        if not PG_URL:
            pytest.skip("HELPDESK_TEST_PG_URL is not set")
        url, name = await create_pg_database()
        try:
            yield url
        finally:
            await drop_pg_database(name)
    else:
        yield _sqlite_url(sqlite_template, tmp_path)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(tmp_path, database_url, **settings_overrides)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The real app with its lifespan running (channels and workers started)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def ctx(app: Starlette) -> AppContext:
    context: AppContext = app.state.ctx
    return context


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class LiveServer:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, lifespan="off", log_config=None, ws_max_size=64 * 1024)
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 (uvicorn exposes only a flag)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task
        self.sock.close()


@pytest.fixture
async def live_server(app: Starlette) -> AsyncIterator[LiveServer]:
    """The same app served over real TCP by uvicorn on an ephemeral port."""
    server = LiveServer(app)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class SeededWorkspace:
    id: int
    slug: str
    team_ids: dict[str, int]
    agent_ids: dict[str, int]
    tokens: dict[str, str]
    passwords: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def team_agent(self, *teams: str) -> Actor:
        """The `agent` as a team-scoped agent of `teams` (all of them by default)."""
        return Actor(
            workspace_id=self.id,
            type=ActorType.agent,
            id=self.agent_ids["agent"],
            name="Agent",
            role=Role.agent,
            team_ids=frozenset(self.team_ids[t] for t in teams or self.team_ids),
            team_scoped=True,
        )


PASSWORD = "correct horse battery"


async def make_widget_inbox(
    ctx: AppContext,
    workspace_id: int,
    team_id: int | None,
    origins: list[str],
    *,
    name: str = "Website chat",
    **fields: Any,
) -> Inbox:
    """A widget inbox of the workspace, answered by `team_id`, embeddable on `origins`."""
    return await make_inbox(
        ctx,
        workspace_id,
        InboxKind.widget,
        name=name,
        team_id=team_id,
        allowed_origins=origins,
        **fields,
    )


async def make_inbox(
    ctx: AppContext, workspace_id: int, kind: InboxKind, *, name: str, **fields: Any
) -> Inbox:
    """An inbox of the workspace, created (and committed) as an admin would."""
    async with ctx.uow() as uow:
        inbox = await workspaces.do_create_inbox(
            uow, Actor.system(workspace_id), kind=kind, name=name, **fields
        )
        await uow.commit()
    return inbox


async def seed_workspace(ctx: AppContext, slug: str) -> SeededWorkspace:
    async with ctx.uow() as uow:
        ws = await workspaces.do_create_workspace(uow, slug, slug.title())
        assert ws.id is not None
        system = Actor.system(ws.id)
        teams = {}
        for name in ("Support", "Billing"):
            team = await workspaces.do_create_team(uow, system, name)
            assert team.id is not None
            teams[name] = team.id
        agents = {}
        for role, team_names in (
            ("admin", ["Support", "Billing"]),
            ("supervisor", ["Support", "Billing"]),
            ("agent", ["Support"]),
        ):
            agent = await workspaces.do_create_agent(
                uow,
                system,
                email=f"{role}@{slug}.test",
                name=f"{role.title()} {slug}",
                password=PASSWORD,
                role=Role(role),
                team_ids=[teams[t] for t in team_names],
            )
            assert agent.id is not None
            agents[role] = agent.id
        plain = {}
        for role in ("admin", "supervisor", "agent"):
            _, plain[role] = await tokens.do_create_token(uow, system, name=role, role=Role(role))
        await uow.commit()
    return SeededWorkspace(
        id=ws.id,
        slug=slug,
        team_ids=teams,
        agent_ids=agents,
        tokens=plain,
        passwords={r: PASSWORD for r in agents},
    )


@pytest.fixture
async def workspace(ctx: AppContext) -> SeededWorkspace:
    """Workspace `acme`: teams Support/Billing, admin/supervisor/agent, a token per role."""
    return await seed_workspace(ctx, "acme")


@pytest.fixture
async def other_workspace(ctx: AppContext) -> SeededWorkspace:
    return await seed_workspace(ctx, "globex")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    if not SHARED.exists():
        pytest.skip("../shared is not present")
    yield SHARED
