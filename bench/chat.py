"""Live chat benchmark: the app (widget protocol + agent websocket, every message stored)
vs a bare `websockets` relay (visitor frames forwarded to the paired agent, no storage).

One load generator, two servers (subprocesses), one run:

  fixed       OFFERED msg/s spread over CONVERSATIONS conversations for SECONDS
  saturation  every visitor sends its next message as soon as the previous one was
              delivered to its agent (one in flight per conversation)
  idle        IDLE widget connections after hello/welcome: server RSS per connection

Latency = visitor send -> agent receives the event (relay: the forwarded frame).
Prints one JSON object with messages/s, p50/p99 and the app/relay ratios.

    python bench/chat.py [--conversations 500] [--offered 1000] [--seconds 8] [--idle 10000]
        [--agents N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/ itself must not be on the path: bench/email.py would shadow the stdlib package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.measure import percentile_ms, pin_load_generator, proc_cpu_seconds  # noqa: E402

ORIGIN = "http://bench.example"
UNLIMITED = "1000000"


# -- the bare relay (runs as `python bench/chat.py --relay`) ----------------------------


async def relay_main() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    agents: dict[str, ServerConnection] = {}
    waiting: dict[str, asyncio.Event] = {}

    async def handler(conn: ServerConnection) -> None:
        path = conn.request.path if conn.request else "/"
        role, _, pair = path.strip("/").partition("/")
        if role == "a":
            agents[pair] = conn
            waiting.setdefault(pair, asyncio.Event()).set()
            await conn.wait_closed()
            agents.pop(pair, None)
            return
        await waiting.setdefault(pair, asyncio.Event()).wait()
        async for frame in conn:
            agent = agents.get(pair)
            if agent is not None:
                await agent.send(frame)

    async with serve(handler, "127.0.0.1", 0, max_size=64 * 1024) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"relay serving on http://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


# -- servers ---------------------------------------------------------------------------


async def start(
    cmd: list[str], env: dict[str, str], cpu: int
) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    os.sched_setaffinity(proc.pid, {cpu})
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    match = re.search(r":(\d+)\s*$", line.strip())
    if not match:
        raise SystemExit(f"server did not start: {line!r}")
    port = int(match.group(1))
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return proc, port


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def seed_app(env: dict[str, str], agents: int, per_agent: int) -> tuple[str, list[str]]:
    os.environ.update(env)
    from app.context import AppContext
    from app.migrate import upgrade
    from app.models import InboxKind, Role
    from app.services import workspaces
    from app.services.actors import Actor
    from app.services.agent_auth import password_fingerprint
    from app.settings import load_settings
    from app.web.sessions import COOKIE, _serializer

    settings = load_settings()
    await asyncio.to_thread(upgrade, settings.database_url)
    ctx = AppContext(settings)
    try:
        async with ctx.uow() as uow:
            ws = await workspaces.do_create_workspace(uow, "bench", "Bench")
            assert ws.id is not None
            system = Actor.system(ws.id)
            team = await workspaces.do_create_team(uow, system, "Support")
            made = [
                await workspaces.do_create_agent(
                    uow,
                    system,
                    email=f"a{i}@bench.test",
                    name=f"Agent {i}",
                    password=None,
                    role=Role.agent,
                    team_ids=[team.id or 0],
                    capacity={"chat": per_agent},
                )
                for i in range(agents)
            ]
            inbox = await workspaces.do_create_inbox(
                uow,
                system,
                kind=InboxKind.widget,
                name="Chat",
                team_id=team.id,
                allowed_origins=[ORIGIN],
            )
            await uow.commit()
        cookies = [
            f"{COOKIE}="
            + _serializer(settings).dumps({"a": a.id, "w": ws.id, "f": password_fingerprint(a)})
            for a in made
        ]
        return inbox.public_key or "", cookies
    finally:
        await ctx.engine.dispose()


# -- load ------------------------------------------------------------------------------


class Pair:
    """One conversation: a visitor socket and the socket its messages arrive on."""

    def __init__(self, visitor: Any, ticket: int | None = None) -> None:
        self.visitor = visitor
        self.ticket = ticket
        self.delivered = asyncio.Event()
        self.sent = 0


class Load:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.recording = False
        self.pairs: dict[str, Pair] = {}
        self.sent_total = 0
        self.delivered_total = 0
        self.caught_up = asyncio.Event()

    async def drained(self, limit: float = 120.0) -> bool:
        """Wait until every message sent so far has arrived (False after `limit` s)."""
        if self.delivered_total < self.sent_total:
            self.caught_up.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.caught_up.wait(), limit)
        return self.delivered_total >= self.sent_total

    def on_delivery(self, body: str) -> None:
        pair_id, _, stamp = body.partition("|")
        self.delivered_total += 1
        if self.delivered_total >= self.sent_total:
            self.caught_up.set()
        if self.recording:
            self.latencies.append(time.perf_counter() - float(stamp))
            self.received += 1
        pair = self.pairs.get(pair_id)
        if pair is not None:
            pair.delivered.set()


async def app_setup(port: int, key: str, cookies: list[str], n: int, load: Load) -> list[Any]:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    agents = []
    for cookie in cookies:
        conn = await connect(
            f"ws://127.0.0.1:{port}/console/ws",
            additional_headers={"Cookie": cookie},
            max_size=2**20,
        )
        await conn.send(json.dumps({"type": "hello", "presence": "available"}))
        await conn.send(json.dumps({"type": "subscribe", "stream": "assigned"}))
        agents.append(conn)

    async def agent_reader(conn: Any) -> None:
        async for raw in conn:
            frame = json.loads(raw)
            if frame["type"] == "event" and frame["author"]["type"] == "contact":
                load.on_delivery(frame["body"])

    tasks = [asyncio.create_task(agent_reader(c)) for c in agents]

    async def open_visitor(i: int) -> None:
        conn = await connect(f"ws://127.0.0.1:{port}/widget/ws?inbox={key}", origin=Origin(ORIGIN))
        await conn.send(json.dumps({"type": "hello", "token": None, "after_seq": None}))
        pair = load.pairs[str(i)] = Pair(conn)

        async def drain() -> None:
            async for _ in conn:
                pass

        json.loads(await conn.recv())  # welcome
        await send(load, pair, str(i))
        await pair.delivered.wait()  # routed to an agent and delivered
        tasks.append(asyncio.create_task(drain()))

    for start in range(0, n, 50):
        await asyncio.gather(*(open_visitor(i) for i in range(start, min(n, start + 50))))
    return [*agents, *tasks]


async def relay_setup(port: int, n: int, load: Load) -> list[Any]:
    from websockets.asyncio.client import connect

    keep: list[Any] = []

    async def agent_reader(conn: Any) -> None:
        async for raw in conn:
            frame = json.loads(raw)
            load.on_delivery(frame["body"])

    for i in range(n):
        agent = await connect(f"ws://127.0.0.1:{port}/a/{i}")
        keep += [agent, asyncio.create_task(agent_reader(agent))]
        visitor = await connect(f"ws://127.0.0.1:{port}/v/{i}")
        load.pairs[str(i)] = Pair(visitor)
        keep.append(visitor)
    return keep


async def send(load: Load, pair: Pair, pair_id: str) -> None:
    load.sent_total += 1
    pair.sent += 1
    pair.delivered.clear()
    body = f"{pair_id}|{time.perf_counter()!r}"
    frame = {
        "type": "message",
        "client_id": f"{pair_id}-{pair.sent}-{time.time_ns()}",
        "body": body,
    }
    await pair.visitor.send(json.dumps(frame))


def summary(
    load: Load, seconds: float, server_cpu_s: float, generator_cpu_s: float
) -> dict[str, Any]:
    def pct(q: float) -> float | None:
        return percentile_ms(load.latencies, q)

    return {
        "messages_per_s": round(load.received / seconds, 1),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "delivered": load.received,
        # Robust to a busy machine, unlike the rate: what one message costs the server.
        "server_cpu_ms_per_msg": round(server_cpu_s * 1000 / max(load.received, 1), 3),
        "server_cpu_util": round(server_cpu_s / seconds, 2),
        # Near 1.0 the load generator, not the server, sets the pace: the app's
        # protocol sends it three frames per message (ack, the visitor's copy of the
        # event, the agent's), the relay one.
        "load_generator_cpu_util": round(generator_cpu_s / seconds, 2),
    }


async def fixed_rate(load: Load, offered: int, seconds: float, server_pid: int) -> dict[str, Any]:
    load.latencies.clear()
    load.received = 0
    load.recording = True
    cpu_before = proc_cpu_seconds(server_pid)
    own_before = time.process_time()
    ids = list(load.pairs)
    interval = 1.0 / offered
    begin = time.perf_counter()
    sent = 0
    while time.perf_counter() - begin < seconds:
        due = begin + sent * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pid = ids[sent % len(ids)]
        await send(load, load.pairs[pid], pid)
        sent += 1
    await asyncio.sleep(2.0)  # let in-flight messages land
    load.recording = False
    result = summary(
        load,
        seconds,
        proc_cpu_seconds(server_pid) - cpu_before,
        time.process_time() - own_before,
    )
    result["offered_per_s"] = offered
    result["sent"] = sent
    # Past saturation a backlog remains: let it drain, or it would be measured as the
    # next phase's latency.
    started = time.perf_counter()
    result["backlog_drained"] = await load.drained()
    result["backlog_drain_s"] = round(time.perf_counter() - started, 2)
    return result


async def saturation(load: Load, seconds: float, server_pid: int) -> dict[str, Any]:
    load.latencies.clear()
    load.received = 0
    load.recording = True
    cpu_before = proc_cpu_seconds(server_pid)
    own_before = time.process_time()
    stop = time.perf_counter() + seconds

    async def loop(pair_id: str) -> None:
        pair = load.pairs[pair_id]
        while time.perf_counter() < stop:
            await send(load, pair, pair_id)
            try:
                await asyncio.wait_for(pair.delivered.wait(), 10)
            except TimeoutError:
                return

    await asyncio.gather(*(loop(pair) for pair in load.pairs))
    load.recording = False
    return summary(
        load,
        seconds,
        proc_cpu_seconds(server_pid) - cpu_before,
        time.process_time() - own_before,
    )


async def idle_memory(port: int, key: str, pid: int, count: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    await asyncio.sleep(1.0)
    before = rss_kb(pid)
    conns: list[Any] = []

    async def one() -> None:
        conn = await connect(
            f"ws://127.0.0.1:{port}/widget/ws?inbox={key}", origin=Origin(ORIGIN), open_timeout=60
        )
        await conn.send(json.dumps({"type": "hello", "token": None, "after_seq": None}))
        await conn.recv()
        conns.append(conn)

    for start in range(0, count, 200):
        await asyncio.gather(*(one() for _ in range(start, min(count, start + 200))))
    await asyncio.sleep(2.0)
    after = rss_kb(pid)
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return {
        "connections": len(conns),
        "server_rss_before_kb": before,
        "server_rss_after_kb": after,
        "kb_per_connection": round((after - before) / max(1, len(conns)), 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.idle * 2 + 4096))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    server_cpu, load_cpu = pin_load_generator()
    tmp = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        {
            "HELPDESK_ENV": "test",
            "HELPDESK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/app.db",
            "HELPDESK_SECRET_KEY": "bench-secret-" + "x" * 40,
            "HELPDESK_DATA_DIR": str(tmp / "data"),
            "HELPDESK_SMTP_ENABLED": "false",
            "HELPDESK_WEBHOOK_WORKER": "false",
            "HELPDESK_LOG_LEVEL": "WARNING",
            "HELPDESK_CHAT_RATE_BURST": UNLIMITED,
            "HELPDESK_CHAT_RATE_PER_SECOND": UNLIMITED,
            "HELPDESK_CHAT_AGENT_RATE_BURST": UNLIMITED,
            "HELPDESK_CHAT_AGENT_RATE_PER_SECOND": UNLIMITED,
            "HELPDESK_CHAT_ROUTE_INTERVAL_SECONDS": "0.2",
        }
    )
    # Each agent takes up to `per_agent` chats: every conversation is routed.
    agents = args.agents or max(1, args.conversations // 10)
    per_agent = -(-args.conversations // agents)
    key, cookies = await seed_app(env, agents, per_agent=per_agent)
    py = sys.executable
    result: dict[str, Any] = {
        "conversations": args.conversations,
        "agents": agents,
        "seconds": args.seconds,
        "server_cpu": server_cpu,
        "load_generator_cpu": load_cpu,
    }
    try:
        relay, relay_port = await start([py, __file__, "--relay"], env, server_cpu)
        try:
            load = Load()
            keep = await relay_setup(relay_port, args.conversations, load)
            result["relay"] = {
                "fixed": await fixed_rate(load, args.offered, args.seconds, relay.pid),
                "saturation": await saturation(load, args.seconds, relay.pid),
            }
            for item in keep:
                if isinstance(item, asyncio.Task):
                    item.cancel()
                else:
                    await item.close()
        finally:
            relay.terminate()
            await relay.wait()
        app, app_port = await start(
            [py, os.environ["BENCH_NODE_SCRIPT"]]
            if os.environ.get("BENCH_NODE_SCRIPT")
            else [py, "-m", "app.cli", "serve", "--port", "0"],
            env,
            server_cpu,
        )
        try:
            load = Load()
            progress(f"app (pid {app.pid}): opening conversations")
            cpu_before, began = proc_cpu_seconds(app.pid), time.perf_counter()
            keep = await app_setup(app_port, key, cookies, args.conversations, load)
            # Each opening is a first message (a contact, a ticket, routing to an agent)
            # until the agent receives it, 50 at a time: what a burst of new chats costs.
            opening = {
                "conversations": args.conversations,
                "seconds": round(time.perf_counter() - began, 2),
                "server_cpu_ms_per_conversation": round(
                    (proc_cpu_seconds(app.pid) - cpu_before) * 1000 / args.conversations, 2
                ),
            }
            progress(f"app (pid {app.pid}): fixed load")
            fixed = await fixed_rate(load, args.offered, args.seconds, app.pid)
            progress(f"app (pid {app.pid}): saturation")
            result["app"] = {
                "opening": opening,
                "fixed": fixed,
                "saturation": await saturation(load, args.seconds, app.pid),
            }
            progress(f"app (pid {app.pid}): done")
            for item in keep:
                if isinstance(item, asyncio.Task):
                    item.cancel()
                else:
                    await item.close()
            if args.idle:
                result["app"]["idle"] = await idle_memory(app_port, key, app.pid, args.idle)
        finally:
            app.send_signal(2)
            await app.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a, r = result["app"], result["relay"]
    result["ratios"] = {
        "throughput_app_over_relay": round(
            a["saturation"]["messages_per_s"] / max(1e-9, r["saturation"]["messages_per_s"]), 3
        ),
        "server_cpu_per_msg_relay_over_app": round(
            r["saturation"]["server_cpu_ms_per_msg"]
            / max(1e-9, a["saturation"]["server_cpu_ms_per_msg"]),
            3,
        ),
        "p99_fixed_app_over_relay": round(
            (a["fixed"]["p99_ms"] or 0) / max(1e-9, r["fixed"]["p99_ms"] or 1e-9), 3
        ),
    }
    from app.web.widget_assets import build_bundle

    js, css = build_bundle()
    result["widget_bundle"] = {
        "js_gzip_bytes": len(js.gzipped),
        "css_gzip_bytes": len(css.gzipped),
        "total_gzip_kb": round((len(js.gzipped) + len(css.gzipped)) / 1024, 2),
    }
    result["goals"] = {
        "throughput_ratio_min": 0.6,
        "p99_ratio_max": 2.0,
        "kb_per_idle_max": 30,
        "widget_bundle_gzip_kb_max": 20,
    }
    return result


def progress(what: str) -> None:
    """Phases on stderr (the JSON goes to stdout), e.g. to point a profiler at one."""
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--offered", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument(
        "--agents",
        type=int,
        default=0,
        help="agent consoles, all in one workspace (default: one per 10 conversations)",
    )
    ns = parser.parse_args()
    if ns.relay:
        asyncio.run(relay_main())
    else:
        print(json.dumps(asyncio.run(main(ns)), indent=2))
