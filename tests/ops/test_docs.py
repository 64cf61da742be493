"""The operator docs keep up with the code: every setting documented, one verifier."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "operations.md"


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(HELPDESK_[A-Z0-9_]+)` \|", OPERATIONS.read_text(), re.M))
    expected = {f"HELPDESK_{name.upper()}" for name in Settings.model_fields}
    assert sorted(expected - documented) == [], "add these to docs/operations.md"
    assert sorted(documented - expected) == [], "these are documented but do not exist"


def test_readme_and_operations_show_the_same_verifier() -> None:
    def verifier(path: Path) -> str:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
        found = [b for b in blocks if "def verify(secret" in b]
        assert len(found) == 1, f"{path.name} should show the webhook verifier once"
        return found[0]

    assert verifier(REPO / "README.md") == verifier(OPERATIONS)
