"""REST benchmark: the real app vs a bare Starlette + SQLModel app, one load generator.

Both servers run as subprocesses pinned to CPU 0 (uvicorn on a pre-bound TCP_NODELAY
socket, as `helpdesk serve` does), the load generator runs pinned to CPU 1. Each server
gets its own copy of the same migrated SQLite file and the same engine (app.db: WAL,
same pragmas, BEGIN IMMEDIATE for writes and a deferred BEGIN for reads). Operations,
each for a fixed time at a fixed number of keep-alive connections:

  create  POST /tickets with a subject and a first message (ticket + event)
  list    GET  /tickets?limit=50 (newest first)
  append  POST /tickets/{id}/replies (gap-free seq, one ticket per connection)

Prints one JSON object: rps, p50/p99 latency, server CPU per request (from
/proc/<pid>/stat, all threads) and the ratio app/bare per operation.

    python bench/rest.py [--seconds 8] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0]; its email.py would shadow the stdlib `email`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.measure import percentile_ms, pin_load_generator, proc_cpu_seconds  # noqa: E402

OPS = ("create", "list", "append")


# --------------------------------------------------------------------------- bare app


def bare_app(database_url: str) -> Any:
    """The baseline: the same tables and engine, no auth, services, events or schemas."""
    from sqlalchemy import update
    from sqlmodel import col, select
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from app.db import create_engine, read_session_factory, session_factory
    from app.models import Ticket, TicketEvent, Workspace
    from app.models.base import utcnow
    from app.models.ticket import EventKind

    engine = create_engine(database_url)
    sessions = session_factory(engine)
    # Reads use a deferred transaction, as the app's GET requests do (app.db).
    reads = read_session_factory(engine)

    def ticket_json(t: Ticket) -> dict[str, Any]:
        return {
            "id": t.id,
            "number": t.number,
            "subject": t.subject,
            "status": t.status.value,
            "priority": t.priority.value,
            "tags": t.tags,
            "last_seq": t.last_seq,
            "created_at": t.created_at.isoformat(),
            "updated_at": t.updated_at.isoformat(),
        }

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        async with sessions() as session:
            number = (
                await session.exec(
                    update(Workspace)
                    .where(col(Workspace.id) == 1)
                    .values(ticket_counter=col(Workspace.ticket_counter) + 1)
                    .returning(col(Workspace.ticket_counter))
                )
            ).scalar_one()
            now = utcnow()
            ticket = Ticket(
                workspace_id=1,
                number=number,
                subject=body["subject"],
                last_seq=1,
                created_at=now,
                updated_at=now,
            )
            session.add(ticket)
            await session.flush()
            assert ticket.id is not None
            session.add(
                TicketEvent(
                    workspace_id=1,
                    ticket_id=ticket.id,
                    seq=1,
                    kind=EventKind.message,
                    body=body["message"],
                    created_at=now,
                )
            )
            await session.commit()
        return JSONResponse(ticket_json(ticket), status_code=201)

    async def listing(request: Request) -> JSONResponse:
        limit = int(request.query_params.get("limit", "50"))
        async with reads() as session:
            stmt = (
                select(Ticket)
                .where(Ticket.workspace_id == 1)
                .order_by(col(Ticket.updated_at).desc(), col(Ticket.id).desc())
                .limit(limit)
            )
            rows = (await session.exec(stmt)).all()
        return JSONResponse({"items": [ticket_json(t) for t in rows], "next_cursor": None})

    async def reply(request: Request) -> JSONResponse:
        ticket_id = int(request.path_params["ticket_id"])
        body = await request.json()
        async with sessions() as session:
            now = utcnow()
            seq = (
                await session.exec(
                    update(Ticket)
                    .where(col(Ticket.id) == ticket_id)
                    .values(last_seq=col(Ticket.last_seq) + 1, updated_at=now)
                    .returning(col(Ticket.last_seq))
                )
            ).scalar_one()
            event = TicketEvent(
                workspace_id=1,
                ticket_id=ticket_id,
                seq=seq,
                kind=EventKind.reply,
                body=body["body"],
                created_at=now,
            )
            session.add(event)
            await session.commit()
        return JSONResponse(
            {"id": event.id, "seq": event.seq, "body": event.body, "kind": event.kind.value},
            status_code=201,
        )

    return Starlette(
        routes=[
            Route("/tickets", create, methods=["POST"]),
            Route("/tickets", listing, methods=["GET"]),
            Route("/tickets/{ticket_id:int}/replies", reply, methods=["POST"]),
        ]
    )


def serve_bare(database_url: str) -> None:
    import uvicorn

    sock = listening_socket()
    config = uvicorn.Config(bare_app(database_url), log_config=None, access_log=False)
    print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket() -> socket.socket:
    # The same setup as `helpdesk serve` (app/cli.py): TCP_NODELAY is inherited by
    # accepted connections, so keep-alive responses do not wait on delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# --------------------------------------------------------------------------- setup


async def seed(database_url: str, tickets: int) -> tuple[str, list[int]]:
    """Workspace 1 with an admin token and `tickets` tickets to append to."""
    from app.context import AppContext
    from app.models import Role
    from app.services import tickets as ticket_service
    from app.services import tokens, workspaces
    from app.services.actors import Actor
    from app.settings import load_settings

    settings = load_settings(env="test", database_url=database_url, secret_key="b" * 40)
    ctx = AppContext(settings)
    try:
        async with ctx.uow() as uow:
            ws = await workspaces.do_create_workspace(uow, "bench", "Bench")
            assert ws.id == 1
            system = Actor.system(ws.id)
            _, token = await tokens.do_create_token(uow, system, name="bench", role=Role.admin)
            ids = []
            for n in range(tickets):
                ticket, _ = await ticket_service.do_create_ticket(
                    uow, system, subject=f"append target {n}", message="hello"
                )
                assert ticket.id is not None
                ids.append(ticket.id)
            await uow.commit()
    finally:
        await ctx.engine.dispose()
    return token, ids


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cpu: int) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        os.sched_setaffinity(self.proc.pid, {cpu})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{name} did not start: {line!r} {err[-2000:]}")
        self.port = int(line.strip().rsplit(":", 1)[1].split("/")[0])
        self.log: list[str] = []
        # Drain both pipes so a chatty server never blocks on a full pipe.
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()
        self._wait_listening()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line)

    def _wait_listening(self) -> None:
        # The port is printed when bound, and `helpdesk serve` listens before its
        # lifespan (imports, workers) has run: wait for a real HTTP answer (any status),
        # or the startup's CPU would be charged to the first measured operation.
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    if sock.recv(16).startswith(b"HTTP/1.1 "):
                        return
                    raise OSError("no HTTP answer")
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = "".join(self.log)
                    raise RuntimeError(f"{self.name} is not serving: {log}") from exc
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- load generator


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less
    than the servers it measures (httpx costs ~2 ms CPU per request)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {lines[0]}")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run_op(
    port: int,
    prefix: str,
    headers: dict[str, str],
    op: str,
    targets: list[int],
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    conns = [Connection(port, headers) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in conns))
    latencies: list[float] = []
    errors: dict[int, int] = {}
    counter = 0
    measuring = False
    deadline = 0.0

    def request_for(i: int, n: int) -> tuple[str, str, bytes | None]:
        if op == "create":
            payload = {"subject": f"bench ticket {i}-{n}", "message": "my printer is on fire"}
            return "POST", f"{prefix}/tickets", json.dumps(payload).encode()
        if op == "list":
            return "GET", f"{prefix}/tickets?limit=50", None
        body = json.dumps({"body": f"reply {n} from connection {i}"}).encode()
        return "POST", f"{prefix}/tickets/{targets[i % len(targets)]}/replies", body

    async def worker(i: int, conn: Connection) -> None:
        nonlocal counter
        n = 0
        while time.monotonic() < deadline:
            method, path, body = request_for(i, n)
            n += 1
            t0 = time.perf_counter()
            status, _ = await conn.request(method, path, body)
            elapsed = time.perf_counter() - t0
            if measuring:
                counter += 1
                latencies.append(elapsed)
                if status >= 300:
                    errors[status] = errors.get(status, 0) + 1

    # A short warm-up (caches, prepared statements, pool), then the measured run.
    deadline = time.monotonic() + min(1.0, seconds / 4)
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    measuring = True
    start = time.perf_counter()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    wall = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in conns))

    def pct(q: float) -> float | None:
        return percentile_ms(latencies, q)

    return {
        "requests": counter,
        "rps": round(counter / wall, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
        "wall_s": wall,
    }


async def measure(
    server: Server,
    prefix: str,
    headers: dict[str, str],
    targets: list[int],
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for op in OPS:
        cpu0 = server.cpu_seconds()
        result = await run_op(server.port, prefix, headers, op, targets, seconds, connections)
        cpu = server.cpu_seconds() - cpu0
        wall = result.pop("wall_s")
        # CPU over the warm-up and the run, divided by the measured requests: slightly
        # pessimistic, equally for both servers.
        result["server_cpu_ms_per_req"] = round(cpu * 1000 / max(result["requests"], 1), 3)
        result["server_cpu_util"] = round(cpu / wall, 2)
        results[op] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per op")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--bare-serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_serve:
        serve_bare(args.bare_serve)
        return

    server_cpu, load_cpu = pin_load_generator()

    from app.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp:
        template = Path(tmp) / "template.db"
        template_url = f"sqlite+aiosqlite:///{template}"
        upgrade(template_url)
        token, targets = asyncio.run(seed(template_url, args.connections))
        for name in ("app.db", "bare.db"):
            shutil.copyfile(template, Path(tmp) / name)
        app_url = f"sqlite+aiosqlite:///{Path(tmp) / 'app.db'}"
        bare_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bare.db'}"

        env = dict(os.environ)
        env.update(
            {
                "HELPDESK_ENV": "test",
                "HELPDESK_DATABASE_URL": app_url,
                "HELPDESK_SECRET_KEY": "bench-secret-" + "x" * 32,
                "HELPDESK_DATA_DIR": str(Path(tmp) / "data"),
                "HELPDESK_SMTP_LISTEN": "127.0.0.1:0",
                # The per-token rate limit would turn the benchmark into a 429 test.
                "HELPDESK_API_RATE_LIMIT": "0",
                "HELPDESK_LOG_LEVEL": "WARNING",
            }
        )
        python = sys.executable
        helpdesk = [python, "-c", "import sys; from app.cli import main; sys.exit(main())"]
        app_server = Server(
            "app", [*helpdesk, "serve", "--host", "127.0.0.1", "--port", "0"], env, server_cpu
        )
        try:
            app_results = asyncio.run(
                measure(
                    app_server,
                    "/api/v1",
                    {"Authorization": f"Bearer {token}"},
                    targets,
                    args.seconds,
                    args.connections,
                )
            )
        finally:
            app_server.stop()
        bare_server = Server("bare", [python, __file__, "--bare-serve", bare_url], env, server_cpu)
        try:
            bare_results = asyncio.run(
                measure(bare_server, "", {}, targets, args.seconds, args.connections)
            )
        finally:
            bare_server.stop()

    ratio = {
        op: {
            "rps": round(app_results[op]["rps"] / max(bare_results[op]["rps"], 1e-9), 3),
            "cpu_per_req": round(
                app_results[op]["server_cpu_ms_per_req"]
                / max(bare_results[op]["server_cpu_ms_per_req"], 1e-9),
                3,
            ),
        }
        for op in OPS
    }
    print(
        json.dumps(
            {
                "benchmark": "rest",
                "database": "sqlite (WAL; BEGIN IMMEDIATE writes, deferred reads; app.db for both)",
                "seconds_per_op": args.seconds,
                "connections": args.connections,
                "server_cpu": server_cpu,
                "loadgen_cpu": load_cpu,
                "app": app_results,
                "bare": bare_results,
                "ratio_app_over_bare": ratio,
                "goal_app_rps_at_least_half_of_bare": all(r["rps"] >= 0.5 for r in ratio.values()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
