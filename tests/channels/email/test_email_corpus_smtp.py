"""Every file of ../shared/corpus/email ingests through the app's SMTP listener."""

from __future__ import annotations

from pathlib import Path

import pytest
from mailtools import create_email_inbox, mails, send

from app.context import AppContext
from tests.conftest import SeededWorkspace

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus" / "email"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus/email is not present")
async def test_corpus_ingests_through_smtp(
    ctx: AppContext, workspace: SeededWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    await create_email_inbox(ctx, workspace.id)
    port = ctx.extras["smtp_port"]
    files = sorted(CORPUS.glob("*.eml"))
    codes: dict[str, int] = {}
    for path in files:
        raw = path.read_bytes()
        code, _ = await send(port, raw, mail_from="corpus@example.org")  # type: ignore[misc]
        codes[path.name] = code
    failed = {name: code for name, code in codes.items() if code != 250}
    assert failed == {}
    stored = await mails(ctx)
    with capsys.disabled():
        print(
            f"\nemail corpus via SMTP: sent={len(codes)} accepted={len(codes) - len(failed)} "
            f"stored={len(stored)}"
        )
    # Every accepted file is stored, except exact Message-ID duplicates of another file.
    assert len(stored) == len({m.message_id for m in stored})
    assert len(stored) >= len(codes) - 3
