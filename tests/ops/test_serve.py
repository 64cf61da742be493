"""The container's way of running: entrypoint -> migrate -> serve, JSON logs, SIGTERM.

No Docker engine runs here, so this drives the same entrypoint script and the
same HEALTHCHECK command the image uses, against a real server process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from tests.ops.helpers import REPO, isolated_env

DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def healthcheck_command() -> list[str]:
    match = re.search(r"^HEALTHCHECK .*?\bCMD (\[.*?\])$", DOCKERFILE.read_text(), re.S | re.M)
    assert match, "Dockerfile needs a HEALTHCHECK ... CMD [...]"
    argv: list[str] = json.loads(match.group(1))
    assert argv[0] == "python"  # the slim image has no curl
    return [sys.executable, *argv[1:]]


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert re.search(r"^VOLUME .*/data", text, re.M)
    assert "HELPDESK_DATA_DIR=/data" in text
    assert "sqlite+aiosqlite:////data/" in text
    assert "/healthz" in text and "curl" not in text
    assert re.search(r'^ENTRYPOINT \["/app/docker/entrypoint\.sh"\]', text, re.M)
    assert os.access(ENTRYPOINT, os.X_OK)
    script = ENTRYPOINT.read_text()
    assert script.index("helpdesk migrate") < script.index("exec helpdesk serve --host 0.0.0.0")


def run_healthcheck(port: int, env: dict[str, str]) -> int:
    return subprocess.run(
        healthcheck_command(),
        env={**env, "HELPDESK_HTTP_PORT": str(port)},
        capture_output=True,
        timeout=60,
        check=False,
    ).returncode


async def test_entrypoint_migrates_serves_logs_json_and_stops_gracefully(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, HELPDESK_LOG_FORMAT="json")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Extra arguments reach `helpdesk serve`; the later --host wins, keeping tests on loopback.
    proc = await asyncio.create_subprocess_exec(
        "sh",
        str(ENTRYPOINT),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        port = 0
        async with asyncio.timeout(120):
            while not port:
                line = (await proc.stdout.readline()).decode()
                assert line, "server exited before it was serving"
                found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
                port = int(found.group(1)) if found else 0
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            metrics = await client.get("/metrics")
            assert 'helpdesk_http_requests_total{method="GET",route="/readyz",status="200"}' in (
                metrics.text
            )
        assert await asyncio.to_thread(run_healthcheck, port, env) == 0
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            code = await proc.wait()
        stderr = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM so the process
    # reports how it was stopped (a container runtime sees 143, as for any server).
    assert code in (0, -signal.SIGTERM), stderr
    assert await asyncio.to_thread(run_healthcheck, port, env) != 0  # nobody answers now

    # Migrations ran before the server started.
    with sqlite3.connect(tmp_path / "var" / "helpdesk.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
    # Every log line is one JSON object; the lifespan started and stopped the worker.
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert entries, "expected log lines on stderr"
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= entry.keys()
    messages = [e["msg"] for e in entries]
    assert "started webhooks" in messages
    assert "stopped webhooks" in messages
    assert messages.index("started webhooks") < messages.index("stopped webhooks")
    assert messages.index("stopped webhooks") < messages.index("Application shutdown complete.")
