"""Deleting a ticket in Chromium: the admin confirms, every open console lets go of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import BrowserContext, expect

from app.context import AppContext
from app.services import tickets
from app.services.actors import Actor
from tests.browser.conftest import PageErrors
from tests.browser.test_console_pages import console_sign_in
from tests.conftest import LiveServer, SeededWorkspace

NewContext = Callable[..., Awaitable[BrowserContext]]


async def test_admin_deletes_a_ticket_and_open_consoles_drop_it(
    new_context: NewContext, live_server: LiveServer, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(
            uow, Actor.system(workspace.id), subject="Please forget me", message="my address"
        )
        await uow.commit()
    url = f"{live_server.url}/console/tickets/{ticket.id}"
    errors = PageErrors()

    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    await agent.get_by_test_id("view-unassigned").click()
    await expect(agent.get_by_test_id("ticket-row")).to_have_count(1)
    watcher = await agent.context.new_page()
    errors.watch(watcher)
    await watcher.goto(url)
    await expect(watcher.get_by_test_id("timeline")).to_contain_text("my address")
    await expect(watcher.get_by_test_id("delete-ticket")).to_have_count(0)

    admin = await console_sign_in(await new_context(), live_server, "admin@acme.test", errors)
    await admin.goto(url)
    confirm = admin.get_by_role("button", name=f"Delete #{ticket.number} for good")
    await expect(confirm).to_be_hidden()  # one more step: open the section first
    await admin.get_by_text("Delete ticket", exact=True).click()
    await confirm.click()
    await admin.wait_for_url(live_server.url + "/console")
    await admin.get_by_test_id("view-all").click()
    await expect(admin.get_by_test_id("ticket-row")).to_have_count(0)

    # The agent's inbox drops the row; the open ticket page says so and goes back.
    await expect(agent.get_by_test_id("ticket-row")).to_have_count(0)
    await expect(watcher.locator("#toast")).to_have_text("This ticket was deleted.")
    await watcher.wait_for_url(live_server.url + "/console")
    assert not [e for e in errors.items if "pageerror" in e], errors.items
