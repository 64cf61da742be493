"""How the app opens SQLite connections: the settings reach every pooled connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import engine_from_settings
from tests.conftest import make_settings


@pytest.mark.parametrize("mmap_bytes", [0, 64 * 1024 * 1024])
async def test_each_connection_gets_the_pragmas_of_the_settings(
    tmp_path: Path, mmap_bytes: int
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", sqlite_mmap_bytes=mmap_bytes
    )
    engine = engine_from_settings(settings)
    try:
        # Two connections at once: both opened by the pool, both configured.
        async with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                seen = {
                    name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                    for name in ("journal_mode", "foreign_keys", "synchronous", "mmap_size")
                }
                # Each write transaction holds the lock; end it, keep the connection.
                await connection.rollback()
                assert seen == {
                    "journal_mode": "wal",
                    "foreign_keys": 1,
                    "synchronous": 1,  # NORMAL
                    "mmap_size": mmap_bytes,
                }
    finally:
        await engine.dispose()
