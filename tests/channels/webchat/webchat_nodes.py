"""Real app processes (`python -m app.cli serve`) on ephemeral ports (chaos, multi-node)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from app.settings import Settings

REPO = Path(__file__).resolve().parents[3]


def node_env(settings: Settings, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    values: dict[str, Any] = {
        "env": "test",
        "database_url": settings.database_url,
        "secret_key": settings.secret_key,
        "data_dir": str(settings.data_dir),
        "public_url": settings.public_url,
        "smtp_enabled": "false",
        "webhook_worker": "false",
        "log_level": "WARNING",
        **extra,
    }
    for key, value in values.items():
        if value is not None:
            env["HELPDESK_" + key.upper()] = str(value)
    return env


class Node:
    """One `helpdesk serve` process; its port is read from its first output line."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.ws_url = f"ws://127.0.0.1:{port}"
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, env: dict[str, str], log: Path) -> Node:
        out = log.open("wb")
        profile = os.environ.get("WEBCHAT_NODE_PROFILE")  # debugging aid: cProfile output path
        wrap = ["-m", "cProfile", "-o", profile] if profile else []
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *wrap,
            "-m",
            "app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=out,
        )
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r":(\d+)\s*$", line.strip())
        if not match:
            proc.kill()
            raise RuntimeError(f"node did not start: {line!r}; see {log}")
        node = cls(proc, int(match.group(1)))
        # Serving starts right after the banner; wait until the socket answers.
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", node.port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        return node

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
