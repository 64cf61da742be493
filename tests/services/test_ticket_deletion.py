"""Ticket deletion's ordering: rows go in the transaction, files only after it commits."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from app.context import AppContext
from app.models import ActorType, Attachment, Role, Ticket
from app.services import attachments, ticket_deletion, tickets
from app.services.actors import Actor
from app.services.errors import Forbidden
from tests.conftest import SeededWorkspace


async def ticket_with_file(ctx: AppContext, ws: SeededWorkspace) -> tuple[int, Path]:
    system = Actor.system(ws.id)
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(uow, system, subject="Delete me")
        assert ticket.id is not None
        stored = await attachments.do_store_attachment(
            uow,
            system,
            ctx.settings.data_dir,
            ticket_id=ticket.id,
            filename="a.txt",
            content_type="text/plain",
            content=b"personal data",
            max_bytes=1024,
        )
        await uow.commit()
    return ticket.id, attachments.storage_path(ctx.settings.data_dir, stored.storage_key)


async def test_files_outlive_a_rolled_back_deletion_and_go_after_a_commit(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    admin = Actor.system(workspace.id)
    ticket_id, path = await ticket_with_file(ctx, workspace)

    async with ctx.uow() as uow:
        deleted = await ticket_deletion.do_delete_ticket(
            uow, admin, ctx.settings.data_dir, ticket_id
        )
        assert deleted.counts["attachments"] == 1 and len(deleted.files) == 1
        assert path.exists()  # nothing on disk changes before the commit
        await uow.rollback()
    assert path.exists()
    async with ctx.sessions() as session:
        assert await session.get(Ticket, ticket_id) is not None

    async with ctx.uow() as uow:
        await ticket_deletion.do_delete_ticket(uow, admin, ctx.settings.data_dir, ticket_id)
        assert path.exists()
        await uow.commit()
    assert not path.exists()
    async with ctx.sessions() as session:
        assert await session.get(Ticket, ticket_id) is None
        assert (await session.exec(select(Attachment))).all() == []


async def test_agents_and_supervisors_cannot_delete(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id, path = await ticket_with_file(ctx, workspace)
    for role in (Role.agent, Role.supervisor):
        actor = Actor(workspace_id=workspace.id, type=ActorType.api, role=role)
        async with ctx.uow() as uow:
            with pytest.raises(Forbidden):
                await ticket_deletion.do_delete_ticket(uow, actor, ctx.settings.data_dir, ticket_id)
    assert path.exists()


def test_removing_files_after_the_commit_never_raises(tmp_path: Path) -> None:
    """A file that is already gone or cannot be removed is skipped (and logged)."""
    blocked = tmp_path / "attachments" / "1" / "blocked"
    (blocked / "inside").mkdir(parents=True)  # a directory: unlink() fails
    present = tmp_path / "attachments" / "1" / "present"
    present.write_bytes(b"x")
    removed = ticket_deletion.remove_files(tmp_path, ["1/missing", "1/blocked", "1/present"])
    assert removed == 1 and not present.exists() and blocked.exists()
