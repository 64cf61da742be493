"""Structured logs: one JSON object per line with HELPDESK_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.logging import configure_logging
from tests.conftest import make_settings


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_json_lines_with_context_and_exceptions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///x.db", log_format="json")
    configure_logging(settings)
    log = logging.getLogger("helpdesk.test")
    log.info("ticket %s reopened", 42, extra={"workspace_id": 7, "ticket_id": 42})
    try:
        raise ValueError("multi\nline")
    except ValueError:
        log.exception("it broke")
    log.debug("not shown at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "helpdesk.test"
    assert first["msg"] == "ticket 42 reopened"
    assert first["workspace_id"] == 7 and first["ticket_id"] == 42
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: multi\nline" in second["exc"]


def test_text_format_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///x.db", log_level="debug")
    configure_logging(settings)
    logging.getLogger("helpdesk.test").debug("plain words")
    err = capsys.readouterr().err
    assert "DEBUG helpdesk.test: plain words" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[-1])
