"""The demo workspace `helpdesk demo` and `make run` seed (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.context import AppContext
from app.models import Agent, Inbox, InboxKind, Role, Team, Workspace
from app.services import tokens, workspaces
from app.services.actors import Actor

DEMO_SLUG = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_AGENTS = [
    ("admin@demo.localhost", "Ada Admin", Role.admin, ["Support", "Billing"]),
    ("supervisor@demo.localhost", "Sam Supervisor", Role.supervisor, ["Support", "Billing"]),
    ("agent@demo.localhost", "Anna Agent", Role.agent, ["Support"]),
]


async def demo_widget_inbox(session: AsyncSession) -> Inbox | None:
    """The demo workspace's first widget inbox, for the /demo sample page."""
    stmt = (
        select(Inbox)
        .join(Workspace, col(Workspace.id) == Inbox.workspace_id)
        .where(Workspace.slug == DEMO_SLUG, Inbox.kind == InboxKind.widget)
        .order_by(col(Inbox.id))
    )
    return (await session.exec(stmt)).first()


@dataclass
class DemoInfo:
    created: bool
    workspace_id: int
    logins: list[tuple[str, str, str]] = field(default_factory=list)
    widget_key: str = ""
    email_address: str = ""
    token: str | None = None


async def seed_demo(ctx: AppContext, public_url: str) -> DemoInfo:
    async with ctx.uow() as uow:
        ws = await workspaces.get_workspace_by_slug(uow.session, DEMO_SLUG)
        created = ws is None
        if ws is None:
            ws = await workspaces.do_create_workspace(uow, DEMO_SLUG, "Demo Company")
        assert ws.id is not None
        system = Actor.system(ws.id)
        teams: dict[str, int] = {}
        for name in ("Support", "Billing"):
            team = (
                await uow.session.exec(
                    select(Team).where(Team.workspace_id == ws.id, Team.name == name)
                )
            ).first() or await workspaces.do_create_team(uow, system, name)
            assert team.id is not None
            teams[name] = team.id
        for email, name, role, team_names in DEMO_AGENTS:
            exists = (
                await uow.session.exec(
                    select(Agent).where(Agent.workspace_id == ws.id, Agent.email == email)
                )
            ).first()
            if exists is None:
                await workspaces.do_create_agent(
                    uow,
                    system,
                    email=email,
                    name=name,
                    password=DEMO_PASSWORD,
                    role=role,
                    team_ids=[teams[t] for t in team_names],
                    languages=["en", "de"],
                    skills=["general"],
                )
        inboxes = list(await workspaces.list_inboxes(uow.session, ws.id))
        widget = next((i for i in inboxes if i.kind is InboxKind.widget), None)
        if widget is None:
            widget = await workspaces.do_create_inbox(
                uow,
                system,
                kind=InboxKind.widget,
                name="Website chat",
                team_id=teams["Support"],
                allowed_origins=sorted(
                    {public_url.rstrip("/"), "http://127.0.0.1:8001", "http://localhost:8001"}
                ),
                greeting="Hi! How can we help you today?",
                theme={"color": "#3454d1", "position": "right", "title": "Demo Company"},
            )
        mail: Inbox | None = next((i for i in inboxes if i.kind is InboxKind.email), None)
        if mail is None:
            mail = await workspaces.do_create_inbox(
                uow,
                system,
                kind=InboxKind.email,
                name="Support mail",
                team_id=teams["Support"],
                address="support@demo.localhost",
            )
        token = None
        if created:
            _, token = await tokens.do_create_token(uow, system, name="demo", role=Role.admin)
        await uow.commit()
        return DemoInfo(
            created=created,
            workspace_id=ws.id,
            logins=[(e, DEMO_PASSWORD, r.value) for e, _, r, _ in DEMO_AGENTS],
            widget_key=widget.public_key or "",
            email_address=mail.address or "",
            token=token,
        )
