"""Email benchmark: the app's SMTP listener vs a bare aiosmtpd sink, one SMTP client.

Both servers run as subprocesses pinned to CPU 0; the client (aiosmtplib, N
concurrent sessions, each sending one transaction after the other on its own
connection) runs pinned to CPU 1.

  app   `helpdesk serve` (the real lifespan: listener, workers, channels): every
        message parsed, threaded (Message-ID / References lookups), stored with its
        raw bytes and attachments, committed, then answered 250.
  sink  aiosmtpd's SMTP protocol on a plain asyncio server whose DATA handler
        discards the message and answers 250.

The mail mix: small plain-text mails (a third of them replies that reference an
earlier message of the run, so threading finds a ticket) and, every
`--attachment-every`-th message, a mail with a PDF-like attachment. Every
Message-ID is unique, so nothing is deduplicated away.

Prints one JSON object: messages/s, p50/p99 per message (MAIL..DATA reply), server
CPU per message (from /proc/<pid>/stat, all threads), and the ratio app/sink.

    python bench/email.py [--seconds 20] [--sessions 8]
"""

# ruff: noqa: E402  (the stdlib imports must come after the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/email.py`, this file's folder comes first on sys.path and the
# file itself would shadow the standard library's `email` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from email.message import EmailMessage
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import percentile_ms, pin_load_generator, proc_cpu_seconds

ADDRESS = "support@demo.localhost"
WARMUP_SECONDS = 2.0


# --------------------------------------------------------------------------- sink


def serve_sink(port: int) -> None:
    """The baseline: aiosmtpd's protocol, nothing stored."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Discard:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = Discard()
        server = await loop.create_server(
            lambda: SMTP(handler, data_size_limit=25 * 1024 * 1024, enable_SMTPUTF8=True),
            "127.0.0.1",
            port,
        )
        print(f"listening 127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- mail mix


def templates(seed: int) -> tuple[bytes, bytes, bytes]:
    """(new, reply, with attachment) with `MSGIDXX` / `REFIDXX` placeholders."""
    rng = random.Random(seed)
    text = (
        "Hello,\n\nmy router stopped working after the update yesterday. The light is "
        "orange and the web page does not load. I tried turning it off and on again.\n\n"
        "Order number 4711-0815, bought in March.\n\nBest regards\nAnna Kunde\n"
    )

    def base(subject: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = "Anna Kunde <anna@example.com>"
        msg["To"] = ADDRESS
        msg["Subject"] = subject
        msg["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
        msg["Message-ID"] = "<MSGIDXX>"
        return msg

    new = base("Router does not start")
    new.set_content(text)
    reply = base("Re: Router does not start")
    reply["In-Reply-To"] = "<REFIDXX>"
    reply["References"] = "<REFIDXX>"
    reply.set_content("Thanks, it works now.\n\n> " + text.replace("\n", "\n> "))
    attached = base("Invoice attached")
    attached.set_content(text)
    attached.add_attachment(
        rng.randbytes(100 * 1024), maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    out = []
    for msg in (new, reply, attached):
        out.append(msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return out[0], out[1], out[2]


class Mix:
    def __init__(self, run: str, attachment_every: int) -> None:
        self.new, self.reply, self.attached = templates(7)
        self.run = run
        self.attachment_every = attachment_every
        self.count = 0
        self.sent_ids: list[str] = []

    def next(self) -> tuple[bytes, bool]:
        self.count += 1
        n = self.count
        message_id = f"bench-{self.run}-{n}@client.example".encode()
        if n % self.attachment_every == 0:
            return self.attached.replace(b"MSGIDXX", message_id), True
        if n % 3 == 0 and self.sent_ids:
            ref = self.sent_ids[n % len(self.sent_ids)].encode()
            raw = self.reply.replace(b"MSGIDXX", message_id).replace(b"REFIDXX", ref)
            return raw, False
        self.sent_ids.append(message_id.decode())
        return self.new.replace(b"MSGIDXX", message_id), False


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cpu: int, smtp_port: int
    ) -> None:
        self.name = name
        self.port = smtp_port
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        os.sched_setaffinity(self.proc.pid, {cpu})
        self.log: list[str] = []
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()
        self._wait_greeting()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line)

    def _wait_greeting(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                    if sock.recv(64).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
                    raise OSError("no SMTP greeting")
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} is not serving: {''.join(self.log)}") from exc
                time.sleep(0.05)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- client


async def measure(server: Server, seconds: float, sessions: int, attachment_every: int) -> Any:
    import aiosmtplib

    mix = Mix(server.name, attachment_every)
    latencies: list[tuple[float, bool]] = []
    errors: list[str] = []
    state = {"measuring": False, "stop": False}

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=60)
        await client.connect()
        try:
            while not state["stop"]:
                raw, attached = mix.next()
                started = time.perf_counter()
                try:
                    await client.sendmail("anna@example.com", [ADDRESS], raw)
                except aiosmtplib.SMTPException as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                if state["measuring"]:
                    latencies.append((time.perf_counter() - started, attached))
        finally:
            client.close()

    tasks = [asyncio.create_task(worker()) for _ in range(sessions)]
    await asyncio.sleep(WARMUP_SECONDS)
    cpu0, t0, own0 = server.cpu_seconds(), time.perf_counter(), time.process_time()
    state["measuring"] = True
    await asyncio.sleep(seconds)
    state["measuring"] = False
    cpu1, t1, own1 = server.cpu_seconds(), time.perf_counter(), time.process_time()
    state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)

    pct = percentile_ms

    count = len(latencies)
    every = [lat for lat, _ in latencies]
    attached = [lat for lat, a in latencies if a]
    return {
        "messages": count,
        "with_attachment": len(attached),
        "messages_per_s": round(count / (t1 - t0), 1),
        "p50_ms": pct(every, 0.50),
        "p99_ms": pct(every, 0.99),
        "p50_ms_attachment": pct(attached, 0.50),
        "p99_ms_attachment": pct(attached, 0.99),
        "server_cpu_ms_per_message": round((cpu1 - cpu0) * 1000 / max(count, 1), 3),
        "server_cpu_busy": round((cpu1 - cpu0) / (t1 - t0), 3),
        "client_cpu_busy": round((own1 - own0) / (t1 - t0), 3),
        "errors": len(errors),
        "first_errors": errors[:3],
    }


async def seed(database_url: str, data_dir: Path) -> None:
    from app.context import AppContext
    from app.models import InboxKind
    from app.services import workspaces
    from app.services.actors import Actor
    from app.settings import load_settings

    settings = load_settings(
        env="test",
        database_url=database_url,
        secret_key="bench-secret-" + "x" * 32,
        data_dir=data_dir,
    )
    ctx = AppContext(settings)
    async with ctx.uow() as uow:
        ws = await workspaces.do_create_workspace(uow, "demo", "Demo")
        assert ws.id is not None
        await workspaces.do_create_inbox(
            uow, Actor.system(ws.id), kind=InboxKind.email, name="Support", address=ADDRESS
        )
        await uow.commit()
    await ctx.engine.dispose()


async def stored(database_url: str) -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from app.db import create_engine, session_factory
    from app.models import MailMessage

    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        count = (await session.exec(select(func.count()).select_from(MailMessage))).one()
    await engine.dispose()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent SMTP sessions")
    parser.add_argument("--attachment-every", type=int, default=4)
    parser.add_argument("--sink-serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink_serve:
        serve_sink(args.sink_serve)
        return

    server_cpu, load_cpu = pin_load_generator()

    from app.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        database = Path(tmp) / "app.db"
        database_url = f"sqlite+aiosqlite:///{database}"
        upgrade(database_url)
        asyncio.run(seed(database_url, Path(tmp) / "data"))
        smtp_port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "HELPDESK_ENV": "test",
                "HELPDESK_DATABASE_URL": database_url,
                "HELPDESK_SECRET_KEY": "bench-secret-" + "x" * 32,
                "HELPDESK_DATA_DIR": str(Path(tmp) / "data"),
                "HELPDESK_SMTP_LISTEN": f"127.0.0.1:{smtp_port}",
                "HELPDESK_LOG_LEVEL": "WARNING",
            }
        )
        python = sys.executable
        helpdesk = [python, "-c", "import sys; from app.cli import main; sys.exit(main())"]
        argv = [*helpdesk, "serve", "--host", "127.0.0.1", "--port", "0"]
        app_server = Server("app", argv, env, server_cpu, smtp_port)
        try:
            app = asyncio.run(
                measure(app_server, args.seconds, args.sessions, args.attachment_every)
            )
        finally:
            app_server.stop()
        app["stored_rows"] = asyncio.run(stored(database_url))
        shutil.rmtree(Path(tmp) / "data", ignore_errors=True)

        sink_port = free_port()
        sink_argv = [python, __file__, "--sink-serve", str(sink_port)]
        sink_server = Server("sink", sink_argv, env, server_cpu, sink_port)
        try:
            sink = asyncio.run(
                measure(sink_server, args.seconds, args.sessions, args.attachment_every)
            )
        finally:
            sink_server.stop()

    ratio = round(app["messages_per_s"] / max(sink["messages_per_s"], 1e-9), 3)
    print(
        json.dumps(
            {
                "benchmark": "email",
                "database": "sqlite (WAL, BEGIN IMMEDIATE)",
                "seconds_per_server": args.seconds,
                "sessions": args.sessions,
                "mix": f"plain (1/3 replies) + 100 KiB PDF every {args.attachment_every}th",
                "server_cpu": server_cpu,
                "client_cpu": load_cpu,
                "app": app,
                "sink": sink,
                "ratio_app_over_sink": {
                    "messages_per_s": ratio,
                    "cpu_per_message": round(
                        app["server_cpu_ms_per_message"]
                        / max(sink["server_cpu_ms_per_message"], 1e-9),
                        3,
                    ),
                },
                "goal_app_at_least_half_of_sink": ratio >= 0.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
