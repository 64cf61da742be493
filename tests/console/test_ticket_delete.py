"""The ticket page's delete action: shown to admins only, done through the REST API."""

from __future__ import annotations

import httpx

from app.context import AppContext
from app.services import tickets
from app.services.actors import Actor
from tests.conftest import PASSWORD, SeededWorkspace
from tests.console.helpers import ORIGIN, sign_in


async def test_admins_see_and_use_the_delete_action(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(
            uow, Actor.system(workspace.id), subject="Erase me", message="personal"
        )
        await uow.commit()
    page_url = f"/console/tickets/{ticket.id}"

    await sign_in(client, "agent@acme.test", PASSWORD)
    page = await client.get(page_url)
    assert page.status_code == 200 and 'data-testid="delete-ticket"' not in page.text
    refused = await client.delete(f"/api/v1/tickets/{ticket.id}", headers=ORIGIN)
    assert refused.status_code == 403

    client.cookies.clear()
    await sign_in(client, "admin@acme.test", PASSWORD)
    page = await client.get(page_url)
    assert 'data-testid="delete-ticket"' in page.text
    assert f"Delete #{ticket.number} for good" in page.text
    # The console's fetch carries the cookie and our Origin, like every other write.
    cross_site = await client.delete(f"/api/v1/tickets/{ticket.id}")
    assert cross_site.status_code == 403
    deleted = await client.delete(f"/api/v1/tickets/{ticket.id}", headers=ORIGIN)
    assert deleted.status_code == 204
    assert (await client.get(page_url)).status_code == 404
