"""The FTS5 query builder: user text becomes quoted phrases, never syntax."""

from __future__ import annotations

import pytest

from app.services.errors import Invalid
from app.services.search import MAX_QUERY_CHARS, clean_query, fts5_query


def test_every_chunk_is_a_quoted_phrase() -> None:
    assert fts5_query('say "hi" NEAR(x)') == '"say" """hi""" "NEAR(x)"'
    assert fts5_query("a*b OR c") == '"a*b" "OR" "c"'


def test_chunks_without_words_are_dropped() -> None:
    assert fts5_query("*** ((( ))) -- ^") is None
    assert fts5_query('" printer "') == '"printer"'


def test_term_count_is_capped() -> None:
    assert fts5_query(" ".join(["w"] * 100)) == " ".join(['"w"'] * 32)


def test_clean_query_drops_what_databases_reject() -> None:
    assert clean_query(" \x00printer\ud800 ") == "printer"
    with pytest.raises(Invalid):
        clean_query("x" * (MAX_QUERY_CHARS + 1))
