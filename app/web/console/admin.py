"""Admin pages: agents, teams, inboxes, canned responses, API tokens, webhooks.

Plain HTML forms posting back here (post/redirect/get); every write goes through
the same services as the REST API, which check the admin role again.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import RedirectResponse, Response

from app.models import InboxKind, Role
from app.services import canned, tokens, webhook_admin, workspaces
from app.services.errors import Invalid, ServiceError
from app.web.console.base import Visit, console_route, form_data

SECTIONS = ("agents", "teams", "inboxes", "canned", "tokens", "webhooks")


def _back(section: str, flash: str = "saved", **extra: str) -> Response:
    query = "&".join([f"flash={flash}", *(f"{k}={v}" for k, v in extra.items())])
    return RedirectResponse(f"/console/admin/{section}?{query}", status_code=303)


def _id(visit: Visit, name: str = "item_id") -> int:
    return int(visit.request.path_params[name])


def _int_list(values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values if v]
    except ValueError:
        raise Invalid("a list of ids is not valid") from None


def _words(raw: str, limit: int = 50) -> list[str]:
    items = [w.strip() for w in raw.replace("\n", ",").split(",") if w.strip()]
    if len(items) > limit or any(len(w) > 64 for w in items):
        raise Invalid(f"at most {limit} entries of up to 64 characters")
    return items


async def _page(visit: Visit, section: str, **context: Any) -> Response:
    flash = visit.request.query_params.get("flash")
    messages = {
        "saved": visit.t("admin.saved"),
        "created": visit.t("admin.created"),
        "deleted": visit.t("admin.deleted"),
        "test": visit.t("admin.test_queued"),
    }
    return visit.render(
        f"console/admin/{section}.html",
        section=section,
        sections=SECTIONS,
        flash=messages.get(flash or ""),
        **context,
    )


async def _rollback(visit: Visit) -> None:
    await visit.uow.rollback()
    # The rollback expired the signed-in agent; the page about to render reads it.
    await visit.uow.session.refresh(visit.agent)


async def _guard(visit: Visit, section: str, action: Any) -> Response:
    """Run a write; on a domain error show the section again with the message."""
    try:
        response: Response = await action()
        await visit.uow.commit()
        return response
    except ServiceError as exc:
        await _rollback(visit)
        loader = LOADERS[section]
        return await _page(visit, section, error=exc.message, **(await loader(visit)))


@console_route("/console/admin", role=Role.admin)
async def admin_home(visit: Visit) -> Response:
    return RedirectResponse("/console/admin/agents", status_code=303)


# -- agents --------------------------------------------------------------------------


async def _agents(visit: Visit) -> dict[str, Any]:
    session, ws = visit.uow.session, visit.actor.workspace_id
    return {
        "agents": await workspaces.list_agents(session, ws),
        "teams": await workspaces.list_teams(session, ws),
        "memberships": await workspaces.team_ids_by_agent(session, ws),
        "roles": [r.value for r in Role],
    }


@console_route("/console/admin/agents", role=Role.admin)
async def agents_page(visit: Visit) -> Response:
    return await _page(visit, "agents", **(await _agents(visit)))


def _capacity(form: dict[str, str], current: dict[str, int]) -> dict[str, int]:
    out = dict(current)
    for key in ("chat", "voice", "email"):
        raw = form.get(f"capacity_{key}")
        if raw:
            try:
                value = int(raw)
            except ValueError:
                raise Invalid(f"{key} capacity must be a number") from None
            if not 0 <= value <= 1000:
                raise Invalid(f"{key} capacity must be 0 to 1000")
            out[key] = value
    return out


@console_route("/console/admin/agents", methods=("POST",), role=Role.admin)
async def agents_create(visit: Visit) -> Response:
    form = await visit.request.form(max_files=0, max_fields=100)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    team_ids = _int_list([v for v in form.getlist("team_ids") if isinstance(v, str)])

    async def action() -> Response:
        try:
            role = Role(fields.get("role", "agent"))
        except ValueError:
            raise Invalid("unknown role") from None
        from app.models.workspace import default_capacity

        await workspaces.do_create_agent(
            visit.uow,
            visit.actor,
            email=fields.get("email", ""),
            name=fields.get("name", ""),
            password=fields.get("password") or None,
            role=role,
            team_ids=team_ids,
            skills=_words(fields.get("skills", "")),
            capacity=_capacity(fields, default_capacity()),
        )
        return _back("agents", "created")

    return await _guard(visit, "agents", action)


@console_route("/console/admin/agents/{item_id:int}", methods=("POST",), role=Role.admin)
async def agents_update(visit: Visit) -> Response:
    form = await visit.request.form(max_files=0, max_fields=100)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    team_ids = _int_list([v for v in form.getlist("team_ids") if isinstance(v, str)])
    agent_id = _id(visit)

    async def action() -> Response:
        agent = await workspaces.get_agent(visit.uow.session, visit.actor.workspace_id, agent_id)
        try:
            role = Role(fields.get("role", agent.role.value))
        except ValueError:
            raise Invalid("unknown role") from None
        await workspaces.do_update_agent(
            visit.uow,
            visit.actor,
            agent_id,
            team_ids=team_ids,
            role=role,
            name=fields.get("name", agent.name),
            skills=_words(fields.get("skills", "")),
            capacity=_capacity(fields, agent.capacity),
            is_active=fields.get("is_active") == "on",
        )
        return _back("agents")

    return await _guard(visit, "agents", action)


# -- teams ---------------------------------------------------------------------------


async def _teams(visit: Visit) -> dict[str, Any]:
    return {"teams": await workspaces.list_teams(visit.uow.session, visit.actor.workspace_id)}


@console_route("/console/admin/teams", role=Role.admin)
async def teams_page(visit: Visit) -> Response:
    return await _page(visit, "teams", **(await _teams(visit)))


@console_route("/console/admin/teams", methods=("POST",), role=Role.admin)
async def teams_create(visit: Visit) -> Response:
    form = await form_data(visit.request)

    async def action() -> Response:
        await workspaces.do_create_team(visit.uow, visit.actor, form.get("name", "")[:100])
        return _back("teams", "created")

    return await _guard(visit, "teams", action)


@console_route("/console/admin/teams/{item_id:int}", methods=("POST",), role=Role.admin)
async def teams_update(visit: Visit) -> Response:
    form = await form_data(visit.request)
    team_id = _id(visit)

    async def action() -> Response:
        if form.get("delete") == "1":
            await workspaces.do_delete_team(visit.uow, visit.actor, team_id)
            return _back("teams", "deleted")
        await workspaces.do_update_team(visit.uow, visit.actor, team_id, form.get("name", "")[:100])
        return _back("teams")

    return await _guard(visit, "teams", action)


# -- inboxes -------------------------------------------------------------------------


async def _inboxes(visit: Visit) -> dict[str, Any]:
    session, ws = visit.uow.session, visit.actor.workspace_id
    return {
        "inboxes": await workspaces.list_inboxes(session, ws),
        "teams": await workspaces.list_teams(session, ws),
        "public_url": visit.settings.public_url.rstrip("/"),
    }


@console_route("/console/admin/inboxes", role=Role.admin)
async def inboxes_page(visit: Visit) -> Response:
    return await _page(visit, "inboxes", **(await _inboxes(visit)))


def _team_or_none(raw: str | None) -> int | None:
    return _int_list([raw])[0] if raw else None


def _origins(raw: str) -> list[str]:
    from app.services.origins import normalize_origin

    out = []
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        origin = normalize_origin(line)
        if origin is None:
            raise Invalid(f"{line!r} is not an origin like https://shop.example.com")
        out.append(origin)
    if len(out) > 50:
        raise Invalid("at most 50 allowed origins")
    return sorted(set(out))


@console_route("/console/admin/inboxes", methods=("POST",), role=Role.admin)
async def inboxes_create(visit: Visit) -> Response:
    form = await form_data(visit.request)

    async def action() -> Response:
        try:
            kind = InboxKind(form.get("kind", "widget"))
        except ValueError:
            raise Invalid("unknown inbox kind") from None
        fields: dict[str, Any] = {"team_id": _team_or_none(form.get("team_id"))}
        if kind is InboxKind.email:
            fields["address"] = form.get("address", "")
        else:
            fields["allowed_origins"] = _origins(form.get("allowed_origins", ""))
        await workspaces.do_create_inbox(
            visit.uow,
            visit.actor,
            kind=kind,
            name=form.get("name", "")[:200] or kind.value,
            **fields,
        )
        return _back("inboxes", "created")

    return await _guard(visit, "inboxes", action)


def _color(raw: str) -> str:
    raw = raw.strip()
    if raw and not (
        len(raw) == 7 and raw[0] == "#" and all(c in "0123456789abcdefABCDEF" for c in raw[1:])
    ):
        raise Invalid("theme color must look like #3454d1")
    return raw


@console_route("/console/admin/inboxes/{item_id:int}", methods=("POST",), role=Role.admin)
async def inboxes_update(visit: Visit) -> Response:
    form = await form_data(visit.request)
    inbox_id = _id(visit)

    async def action() -> Response:
        inbox = await workspaces.get_inbox(visit.uow.session, visit.actor.workspace_id, inbox_id)
        if form.get("delete") == "1":
            await workspaces.do_delete_inbox(visit.uow, visit.actor, inbox_id)
            return _back("inboxes", "deleted")
        changes: dict[str, Any] = {
            "name": form.get("name", inbox.name)[:200] or inbox.name,
            "team_id": _team_or_none(form.get("team_id")),
        }
        if inbox.kind is InboxKind.widget:
            position = form.get("theme_position", "right")
            if position not in ("left", "right"):
                raise Invalid("position must be left or right")
            changes["allowed_origins"] = _origins(form.get("allowed_origins", ""))
            changes["greeting"] = form.get("greeting", "")[:500]
            changes["prechat_form"] = form.get("prechat_form") == "on"
            changes["theme"] = {
                **inbox.theme,
                "color": _color(form.get("theme_color", "")) or inbox.theme.get("color", ""),
                "title": form.get("theme_title", "")[:100],
                "position": position,
            }
            if form.get("rotate_secret") == "1":
                changes["identity_secret"] = secrets.token_urlsafe(32)
        else:
            changes["address"] = form.get("address", inbox.address or "")
            port_raw = form.get("imap_port", "").strip()
            try:
                port = int(port_raw) if port_raw else 993
            except ValueError:
                raise Invalid("IMAP port must be a number") from None
            if not 1 <= port <= 65535:
                raise Invalid("IMAP port must be 1 to 65535")
            imap = {
                "host": form.get("imap_host", "").strip()[:255],
                "port": port,
                "user": form.get("imap_user", "").strip()[:255],
                "folder": form.get("imap_folder", "").strip()[:255] or "INBOX",
            }
            # An empty password field keeps the stored one (it is never sent to the browser).
            password = form.get("imap_password", "")
            imap["password"] = password[:1024] if password else inbox.imap.get("password", "")
            changes["imap"] = imap if imap["host"] else {}
        await workspaces.do_update_inbox(visit.uow, visit.actor, inbox_id, **changes)
        return _back("inboxes")

    return await _guard(visit, "inboxes", action)


# -- canned responses ----------------------------------------------------------------


async def _canned(visit: Visit) -> dict[str, Any]:
    return {"items": await canned.list_canned(visit.uow.session, visit.actor.workspace_id)}


@console_route("/console/admin/canned", role=Role.admin)
async def canned_page(visit: Visit) -> Response:
    return await _page(visit, "canned", **(await _canned(visit)))


@console_route("/console/admin/canned", methods=("POST",), role=Role.admin)
async def canned_create(visit: Visit) -> Response:
    form = await form_data(visit.request)

    async def action() -> Response:
        await canned.do_create_canned(
            visit.uow,
            visit.actor,
            shortcut=form.get("shortcut", ""),
            title=form.get("title", ""),
            body=form.get("body", ""),
        )
        return _back("canned", "created")

    return await _guard(visit, "canned", action)


@console_route("/console/admin/canned/{item_id:int}", methods=("POST",), role=Role.admin)
async def canned_update(visit: Visit) -> Response:
    form = await form_data(visit.request)
    canned_id = _id(visit)

    async def action() -> Response:
        if form.get("delete") == "1":
            await canned.do_delete_canned(visit.uow, visit.actor, canned_id)
            return _back("canned", "deleted")
        await canned.do_update_canned(
            visit.uow,
            visit.actor,
            canned_id,
            shortcut=form.get("shortcut", ""),
            title=form.get("title", ""),
            body=form.get("body", ""),
        )
        return _back("canned")

    return await _guard(visit, "canned", action)


# -- API tokens ----------------------------------------------------------------------


async def _tokens(visit: Visit) -> dict[str, Any]:
    return {
        "tokens": await tokens.list_tokens(visit.uow.session, visit.actor.workspace_id),
        "roles": [r.value for r in Role],
    }


@console_route("/console/admin/tokens", role=Role.admin)
async def tokens_page(visit: Visit) -> Response:
    return await _page(visit, "tokens", **(await _tokens(visit)))


@console_route("/console/admin/tokens", methods=("POST",), role=Role.admin)
async def tokens_create(visit: Visit) -> Response:
    form = await form_data(visit.request)
    try:
        role = Role(form.get("role", "agent"))
    except ValueError:
        role = Role.agent
    try:
        _, plaintext = await tokens.do_create_token(
            visit.uow, visit.actor, name=form.get("name", ""), role=role
        )
        await visit.uow.commit()
    except ServiceError as exc:
        await _rollback(visit)
        return await _page(visit, "tokens", error=exc.message, **(await _tokens(visit)))
    # Shown once, in this response only; never in a URL (logs, history) nor stored.
    return await _page(visit, "tokens", new_token=plaintext, **(await _tokens(visit)))


@console_route("/console/admin/tokens/{item_id:int}", methods=("POST",), role=Role.admin)
async def tokens_revoke(visit: Visit) -> Response:
    token_id = _id(visit)

    async def action() -> Response:
        await tokens.do_revoke_token(visit.uow, visit.actor, token_id)
        return _back("tokens")

    return await _guard(visit, "tokens", action)


# -- webhooks ------------------------------------------------------------------------


async def _webhooks(visit: Visit) -> dict[str, Any]:
    session, ws = visit.uow.session, visit.actor.workspace_id
    hooks = await webhook_admin.list_webhooks(
        session, ws, limit=webhook_admin.MAX_HOOKS_PER_WORKSPACE
    )
    deliveries = {}
    for hook in hooks:
        assert hook.id is not None
        rows, _ = await webhook_admin.list_deliveries(session, ws, hook.id, limit=10)
        deliveries[hook.id] = rows
    from app.services.webhook_outbox import WEBHOOK_EVENTS

    return {"hooks": hooks, "deliveries": deliveries, "events": WEBHOOK_EVENTS}


@console_route("/console/admin/webhooks", role=Role.admin)
async def webhooks_page(visit: Visit) -> Response:
    return await _page(visit, "webhooks", **(await _webhooks(visit)))


@console_route("/console/admin/webhooks", methods=("POST",), role=Role.admin)
async def webhooks_create(visit: Visit) -> Response:
    form = await form_data(visit.request)
    try:
        hook = await webhook_admin.do_create_webhook(
            visit.uow,
            visit.actor,
            url=form.get("url", ""),
            events=_words(form.get("events", ""), limit=20),
            description=form.get("description", "")[:500],
        )
        await visit.uow.commit()
    except ServiceError as exc:
        await _rollback(visit)
        return await _page(visit, "webhooks", error=exc.message, **(await _webhooks(visit)))
    return await _page(visit, "webhooks", new_secret=hook.secret, **(await _webhooks(visit)))


@console_route("/console/admin/webhooks/{item_id:int}", methods=("POST",), role=Role.admin)
async def webhooks_update(visit: Visit) -> Response:
    form = await form_data(visit.request)
    hook_id = _id(visit)

    async def action() -> Response:
        if form.get("delete") == "1":
            await webhook_admin.do_delete_webhook(visit.uow, visit.actor, hook_id)
            return _back("webhooks", "deleted")
        if form.get("test") == "1":
            await webhook_admin.do_send_test(visit.uow, visit.actor, hook_id)
            return _back("webhooks", "test")
        await webhook_admin.do_update_webhook(
            visit.uow, visit.actor, hook_id, {"active": form.get("active") == "on"}
        )
        return _back("webhooks")

    return await _guard(visit, "webhooks", action)


LOADERS = {
    "agents": _agents,
    "teams": _teams,
    "inboxes": _inboxes,
    "canned": _canned,
    "tokens": _tokens,
    "webhooks": _webhooks,
}

routes = [
    admin_home,
    agents_page,
    agents_create,
    agents_update,
    teams_page,
    teams_create,
    teams_update,
    inboxes_page,
    inboxes_create,
    inboxes_update,
    canned_page,
    canned_create,
    canned_update,
    tokens_page,
    tokens_create,
    tokens_revoke,
    webhooks_page,
    webhooks_create,
    webhooks_update,
]
