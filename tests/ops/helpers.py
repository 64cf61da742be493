"""Running the real `helpdesk` command in a subprocess with an isolated environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def helpdesk_argv() -> list[str]:
    script = Path(sys.executable).with_name("helpdesk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def isolated_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The parent's environment minus every HELPDESK_* setting, pointed at tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        {
            "HELPDESK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'helpdesk.db'}",
            "HELPDESK_DATA_DIR": str(tmp_path / "var" / "data"),
            "HELPDESK_SECRET_KEY": "cli-test-secret-" + "y" * 32,
            "HELPDESK_SMTP_LISTEN": "127.0.0.1:0",
            "HELPDESK_PUBLIC_URL": "http://127.0.0.1:8000",
        }
    )
    env.update(overrides)
    return env


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*helpdesk_argv(), *args],
        cwd=tmp_path,
        env=env or isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
