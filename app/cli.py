"""The `helpdesk` command: serve, migrate, demo, create-agent, create-token."""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import sys
from collections.abc import Sequence

from app.settings import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"helpdesk: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.logging import configure_logging
    from app.main import create_app

    settings = _settings()
    host = args.host or settings.http_host
    port = args.port if args.port is not None else settings.http_port
    configure_logging(settings)
    # TCP_NODELAY on the listening socket is inherited by accepted connections:
    # without it keep-alive responses can wait ~40 ms on the client's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        # Listen now so connections made right after the banner queue in the backlog
        # until the lifespan has started, instead of being refused.
        sock.listen(2048)
    except OSError as exc:
        print(f"helpdesk: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_config=None,
        proxy_headers=True,
        ws_max_size=64 * 1024,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    server = uvicorn.Server(config)
    _tune_gc()
    print(f"helpdesk serving on http://{host}:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])
    return 0


# The cyclic garbage collector's default (700 allocations between young collections)
# made it 17% of a busy chat server's CPU (py-spy, chaos test), growing with the heap:
# every connection, session and frame allocates. Fewer, larger young collections, and
# the objects of startup (modules, mappers, compiled statements) frozen out of every
# scan: the 200-conversation chaos run went from 137 s to 106 s.
GC_THRESHOLDS = (50_000, 20, 20)


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def cmd_migrate(_args: argparse.Namespace) -> int:
    from app.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print("database is up to date")
    return 0


async def _demo(settings: Settings) -> int:
    from app.context import AppContext
    from app.services.demo import seed_demo

    ctx = AppContext(settings)
    try:
        info = await seed_demo(ctx, settings.public_url)
    finally:
        await ctx.engine.dispose()
    token_file = settings.data_dir / "demo-token"
    if info.token:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(info.token + "\n")
        token_file.chmod(0o600)
    token = info.token or (token_file.read_text().strip() if token_file.exists() else None)
    base = settings.public_url.rstrip("/")
    print("Demo workspace 'demo' " + ("created." if info.created else "already exists."))
    print("\nConsole logins (" + base + "/console):")
    for email, password, role in info.logins:
        print(f"  {email:28} {password:16} {role}")
    if token:
        print(f"\nAPI token (admin): {token}")
        print(f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/tickets")
    print(f"\nEmail inbox: {info.email_address} (SMTP {settings.smtp_listen})")
    print("\nWidget snippet:")
    print(f'  <script src="{base}/widget.js" data-inbox="{info.widget_key}" async></script>')
    print(f"\nSample company page: {base}/demo")
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    return asyncio.run(_demo(_settings()))


async def _lookup_workspace(ctx: object, slug: str) -> int:
    from app.context import AppContext
    from app.services.workspaces import get_workspace_by_slug

    assert isinstance(ctx, AppContext)
    async with ctx.sessions() as session:
        ws = await get_workspace_by_slug(session, slug)
    if ws is None or ws.id is None:
        print(f"helpdesk: no workspace {slug!r}", file=sys.stderr)
        raise SystemExit(2)
    return ws.id


async def _create_agent(settings: Settings, args: argparse.Namespace) -> int:
    from app.context import AppContext
    from app.models import Role
    from app.services.actors import Actor
    from app.services.errors import ServiceError
    from app.services.workspaces import do_create_agent

    ctx = AppContext(settings)
    try:
        ws_id = await _lookup_workspace(ctx, args.workspace)
        async with ctx.uow() as uow:
            agent = await do_create_agent(
                uow,
                Actor.system(ws_id, "CLI"),
                email=args.email,
                name=args.name or args.email,
                password=args.password,
                role=Role(args.role),
            )
            await uow.commit()
        print(f"created agent {agent.email} (id {agent.id}, role {agent.role.value})")
        return 0
    except ServiceError as exc:
        print(f"helpdesk: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await ctx.engine.dispose()


async def _create_token(settings: Settings, args: argparse.Namespace) -> int:
    from app.context import AppContext
    from app.models import Role
    from app.services.actors import Actor
    from app.services.errors import ServiceError
    from app.services.tokens import do_create_token

    ctx = AppContext(settings)
    try:
        ws_id = await _lookup_workspace(ctx, args.workspace)
        async with ctx.uow() as uow:
            _, plaintext = await do_create_token(
                uow, Actor.system(ws_id, "CLI"), name=args.name, role=Role(args.role)
            )
            await uow.commit()
        print(plaintext)
        return 0
    except ServiceError as exc:
        print(f"helpdesk: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await ctx.engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helpdesk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web server, SMTP listener and workers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(fn=cmd_migrate)
    sub.add_parser("demo", help="seed the demo workspace (idempotent)").set_defaults(fn=cmd_demo)
    roles = ["admin", "supervisor", "agent"]
    agent = sub.add_parser("create-agent", help="create a console user")
    agent.add_argument("--workspace", required=True)
    agent.add_argument("--email", required=True)
    agent.add_argument("--password", required=True)
    agent.add_argument("--name")
    agent.add_argument("--role", choices=roles, default="agent")
    agent.set_defaults(fn=lambda a: asyncio.run(_create_agent(_settings(), a)))
    token = sub.add_parser("create-token", help="create an API token; prints only the token")
    token.add_argument("--workspace", required=True)
    token.add_argument("--name", required=True)
    token.add_argument("--role", choices=roles, default="agent")
    token.set_defaults(fn=lambda a: asyncio.run(_create_token(_settings(), a)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.fn(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
