"""Every message of the shared real-world corpus parses without an exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.email.parse import parse_email
from channels.email.quoting import split_reply

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus" / "email"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus/email is not present")
def test_corpus_parses(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(CORPUS.glob("*.eml"))
    assert files
    counts = {"files": 0, "with_errors": 0, "automated": 0, "bounces": 0, "attachments": 0}
    for path in files:
        raw = path.read_bytes()
        mail = parse_email(raw)  # must not raise
        assert mail.raw == raw
        for value in (mail.text, mail.subject, mail.html or ""):
            value.encode("utf-8")  # storable as-is
            assert "\x00" not in value
        split_reply(mail.text)
        counts["files"] += 1
        counts["with_errors"] += bool(mail.errors)
        counts["automated"] += mail.auto.automated
        counts["bounces"] += mail.bounce is not None
        counts["attachments"] += len(mail.attachments)
    with capsys.disabled():
        print(f"\nemail corpus parse: {counts}")
    assert counts["files"] == len(files)
