"""The widget's HTTP side: bundle, config (CORS by inbox), uploads/downloads, /demo."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.models import IdentityKind
from app.models.ticket import Channel
from app.services import demo, visitors
from app.services.actors import Actor
from app.services.contacts import IdentityIn, do_create_contact
from app.services.tickets import (
    do_create_ticket,
    do_customer_message,
    do_note,
    do_reply,
    get_ticket,
)
from app.web.widget_assets import build_bundle, minify_css
from tests.conftest import SeededWorkspace, make_widget_inbox

HOST = "https://shop.example"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BUDGET = 20 * 1024


@pytest.fixture
async def inbox(ctx: AppContext, workspace: SeededWorkspace) -> Any:
    return await make_widget_inbox(
        ctx,
        workspace.id,
        workspace.team_ids["Support"],
        [HOST, "https://*.partner.example"],
        name="Shop chat",
        theme={"color": "#ffcc00", "position": "left", "title": "Shop"},
        greeting="Hello!",
        settings={"greetings": {"de": "Hallo!"}},
    )


async def visitor_with_ticket(ctx: AppContext, inbox: Any) -> tuple[str, int, int]:
    """(token, contact id, ticket id) of a visitor who has started a chat."""
    token, visitor_id = visitors.issue_token(ctx.settings.secret, inbox.workspace_id)
    async with ctx.uow() as uow:
        contact = await do_create_contact(
            uow, inbox.workspace_id, identities=[IdentityIn(IdentityKind.visitor, visitor_id)]
        )
        assert contact.id is not None
        ticket, _ = await do_create_ticket(
            uow,
            Actor.system(inbox.workspace_id),
            contact_id=contact.id,
            channel=Channel.chat,
            inbox_id=inbox.id,
            team_id=inbox.team_id,
            message="hi",
            message_actor=Actor.contact(inbox.workspace_id, contact.id, ""),
        )
        await uow.commit()
    assert ticket.id is not None
    return token, contact.id, ticket.id


def test_bundle_fits_the_budget_and_inlines_the_css() -> None:
    js, css = build_bundle()
    assert len(js.gzipped) + len(css.gzipped) <= BUDGET, (len(js.gzipped), len(css.gzipped))
    assert b"__HD_CSS__" not in js.body
    assert b".launcher{" in js.body
    assert gzip.decompress(js.gzipped) == js.body


def test_minify_css_keeps_rules() -> None:
    assert minify_css("/* x */\na > b {\n  color: red;\n}\n") == "a>b{color:red}"


async def test_widget_js_is_served_cross_origin_with_caching(client: httpx.AsyncClient) -> None:
    r = await client.get("/widget.js", headers={"Accept-Encoding": "gzip", "Origin": HOST})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "max-age=" in r.headers["cache-control"]
    assert "Helpdesk" in r.text  # httpx decoded the gzip body
    again = await client.get(
        "/widget.js", headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    plain = await client.get("/widget.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["etag"] != r.headers["etag"]
    css = await client.get("/widget.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"


async def test_config_answers_allowed_origins_only(client: httpx.AsyncClient, inbox: Any) -> None:
    url = f"/widget/config?inbox={inbox.public_key}&locale=de"
    ok = await client.get(url, headers={"Origin": HOST})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == HOST
    assert "Origin" in ok.headers["vary"]
    body = ok.json()
    assert body["theme"] == {"color": "#ffcc00", "position": "left", "title": "Shop"}
    assert body["greeting"] == "Hallo!"
    assert body["available"] is False  # nobody has a console open
    assert "identity_secret" not in json.dumps(body) and "allowed_origins" not in body
    wildcard = await client.get(url, headers={"Origin": "https://eu.partner.example"})
    assert wildcard.headers["access-control-allow-origin"] == "https://eu.partner.example"
    evil = await client.get(url, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers
    lookalike = await client.get(url, headers={"Origin": "https://partner.example.evil.example"})
    assert lookalike.status_code == 403
    unknown = await client.get("/widget/config?inbox=nope", headers={"Origin": HOST})
    assert unknown.status_code == 404
    no_origin = await client.get(url)
    assert no_origin.status_code == 200


async def test_upload_binds_to_the_visitors_ticket_and_downloads_once_sent(
    client: httpx.AsyncClient, ctx: AppContext, inbox: Any
) -> None:
    token, contact_id, ticket_id = await visitor_with_ticket(ctx, inbox)
    url = f"/widget/attachments?inbox={inbox.public_key}"
    files = {"file": ("shot.png", io.BytesIO(PNG), "image/png")}
    r = await client.post(url, files=files, data={"token": token}, headers={"Origin": HOST})
    assert r.status_code == 201, r.text
    assert r.headers["access-control-allow-origin"] == HOST
    up = r.json()
    assert up["content_type"] == "image/png" and up["ticket"] == ticket_id
    dl = f"/widget/attachments/{up['id']}?inbox={inbox.public_key}"
    auth = {"Origin": HOST, "Authorization": f"Visitor {token}"}
    # Not yet part of a message: nobody can fetch it through the widget.
    assert (await client.get(dl, headers=auth)).status_code == 404
    async with ctx.uow() as uow:
        t = await get_ticket(uow.session, Actor.system(inbox.workspace_id), ticket_id)
        await do_customer_message(
            uow,
            t,
            Actor.contact(inbox.workspace_id, contact_id, ""),
            body="",
            payload={"attachments": [up["id"]]},
        )
        await uow.commit()
    got = await client.get(dl, headers=auth)
    assert got.status_code == 200
    assert got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["access-control-allow-origin"] == HOST
    # Another visitor's token, a foreign origin, no token: refused.
    other, _, _ = await visitor_with_ticket(ctx, inbox)
    assert (
        await client.get(dl, headers={"Origin": HOST, "Authorization": f"Visitor {other}"})
    ).status_code == 404
    assert (
        await client.get(dl, headers={**auth, "Origin": "https://evil.example"})
    ).status_code == 403
    assert (await client.get(dl, headers={"Origin": HOST})).status_code == 403


async def test_files_on_internal_notes_never_reach_the_widget(
    client: httpx.AsyncClient, ctx: AppContext, inbox: Any, workspace: SeededWorkspace
) -> None:
    token, _, ticket_id = await visitor_with_ticket(ctx, inbox)
    files = {"file": ("doc.pdf", io.BytesIO(PDF), "application/pdf")}
    r = await client.post(
        f"/widget/attachments?inbox={inbox.public_key}",
        files=files,
        data={"token": token},
        headers={"Origin": HOST},
    )
    att = r.json()["id"]
    system = Actor.system(workspace.id)
    async with ctx.uow() as uow:
        note, _ = await do_note(uow, system, ticket_id, body="internal")
        note.payload = {"attachments": [att]}
        uow.session.add(note)
        await uow.commit()
    dl = f"/widget/attachments/{att}?inbox={inbox.public_key}"
    auth = {"Origin": HOST, "Authorization": f"Visitor {token}"}
    assert (await client.get(dl, headers=auth)).status_code == 404
    async with ctx.uow() as uow:
        await do_reply(uow, system, ticket_id, body="here", payload={"attachments": [att]})
        await uow.commit()
    assert (await client.get(dl, headers=auth)).status_code == 200


@pytest.mark.parametrize(
    ("content", "declared", "status", "code"),
    [
        (b"<script>alert(1)</script>", "image/png", 422, "invalid"),
        (b"MZ\x90\x00", "application/pdf", 422, "invalid"),
        (PNG + b"\x00" * (10 * 1024 * 1024), "image/png", 413, "too_large"),
    ],
)
async def test_upload_rejects_what_is_not_an_image_or_pdf(
    client: httpx.AsyncClient,
    ctx: AppContext,
    inbox: Any,
    content: bytes,
    declared: str,
    status: int,
    code: str,
) -> None:
    token, _, _ = await visitor_with_ticket(ctx, inbox)
    r = await client.post(
        f"/widget/attachments?inbox={inbox.public_key}",
        files={"file": ("x", io.BytesIO(content), declared)},
        data={"token": token},
        headers={"Origin": HOST},
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


async def test_upload_needs_token_origin_and_a_conversation(
    client: httpx.AsyncClient, ctx: AppContext, inbox: Any
) -> None:
    url = f"/widget/attachments?inbox={inbox.public_key}"

    def files() -> dict[str, Any]:
        return {"file": ("a.png", io.BytesIO(PNG), "image/png")}

    token, _, _ = await visitor_with_ticket(ctx, inbox)
    r = await client.post(url, files=files(), data={"token": "forged"}, headers={"Origin": HOST})
    assert r.status_code == 403
    r = await client.post(
        url, files=files(), data={"token": token}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    fresh, _ = visitors.issue_token(ctx.settings.secret, inbox.workspace_id)
    r = await client.post(url, files=files(), data={"token": fresh}, headers={"Origin": HOST})
    assert r.status_code == 409
    # The header form works as well as the form field.
    r = await client.post(
        url, files=files(), headers={"Origin": HOST, "Authorization": f"Visitor {token}"}
    )
    assert r.status_code == 201


async def test_preflight_only_for_allowed_origins(client: httpx.AsyncClient, inbox: Any) -> None:
    url = f"/widget/attachments/1?inbox={inbox.public_key}"
    ok = await client.options(
        url,
        headers={
            "Origin": HOST,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == HOST
    assert "Authorization" in ok.headers["access-control-allow-headers"]
    bad = await client.options(url, headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403
    assert "access-control-allow-origin" not in bad.headers


async def test_demo_page_carries_the_demo_snippet(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    empty = await client.get("/demo")
    assert empty.status_code == 200 and "helpdesk demo" in empty.text
    info = await demo.seed_demo(ctx, ctx.settings.public_url)
    page = await client.get("/demo")
    tag = (
        f'<script src="{ctx.settings.public_url}/widget.js" '
        f'data-inbox="{info.widget_key}" async></script>'
    )
    assert tag in page.text
    assert "not allow" not in page.text  # served at the public URL, which the inbox allows
    german = await client.get("/demo?locale=de")
    assert 'lang="de"' in german.text and 'data-locale="de"' in german.text
