"""Fuzzing: whatever the input, the compiler answers with a CompiledQuery or an NQLError.

Two generators: soups of NQL/DuckDB tokens (including forbidden ones) and mutations of the
golden statements. Properties: only NQLError subclasses escape `compile_nql`/`parse_nql`,
`validate_nql` never raises, and anything that compiles reads only catalog relations.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import NQLError
from shared.nql import check_duckdb_sql, compile_nql, parse_nql, validate_nql

from .datasets import catalog
from .golden import load_cases

CATALOG = catalog()
VALID = [case["nql"] for case in load_cases()]
TOKENS = [
    "SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "QUALIFY", "ORDER BY", "LIMIT", "OFFSET",
    "ROWS", "WITH", "AS", "JOIN", "LEFT JOIN", "ON", "UNION ALL", "EXCEPT", "INTERSECT", "CASE",
    "WHEN", "THEN", "ELSE", "END", "AND", "OR", "NOT", "IS", "NULL", "DISTINCT", "FROM", "OVER",
    "PARTITION BY", "IN", "EXISTS", "BETWEEN", "INTERVAL", "DAY", "DAYS", "ASC", "DESC",
    "NULLS FIRST", "CREATE MATERIALIZED VIEW", "EXPLAIN", "BUDGET", "USD", "PER",
    "CALENDAR_MONTH", "TAGS", "WRITE_MODE", "PARTITIONED_BY", "RECURSIVE", "ATTACH", "COPY",
    "PRAGMA", "SET", "INSTALL", "LOAD", "CALL", "EXPORT", "DESCRIBE", "PIVOT", "UNNEST",
    "company_data", '"company_data"', 'company_data."7"', "company_data.users",
    'company_data."6402"', 'company_data."9"', "ds_7", "duckdb_settings()", "read_csv('x')",
    "query('SELECT 1')", "getenv('HOME')", "'/etc/passwd'", "user_id", "amount", "plan", "age",
    '"attrs"."os"."name"', "attrs['device']", "tags[1]", "count(*)", "sum(amount)", "*",
    "lag(amount)", "row_number()", "1", "42", "3.5", "'text'", "$$x$$", "e'\\x41'", "?", "$1",
    "(", ")", ",", ";", ".", "=", "<>", "<", ">", "+", "-", "/", "||", "::", "->", "[", "]",
    "{", "}", ":", "--", "/*", "*/", "\n", '"', "'", "\\", "\u0000", "é", "\u202e",
]  # fmt: skip

token_soups = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=30).map(" ".join)


@st.composite
def mutations(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        size = len(text)
        at = draw(st.integers(0, size))
        end = draw(st.integers(at, min(size, at + 12)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate", "replace"]))
        if action == "delete":
            text = text[:at] + text[end:]
        elif action == "insert":
            text = text[:at] + " " + draw(st.sampled_from(TOKENS)) + " " + text[at:]
        elif action == "duplicate":
            text = text[:end] + text[at:end] + text[end:]
        else:
            text = text[:at] + draw(st.text(max_size=4)) + text[end:]
    return text


FUZZ = settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,  # no .hypothesis/ example database left in the working tree
)


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    # The first compile derives the function allow-lists; keep that out of the deadlines.
    compile_nql(VALID[0], CATALOG)


def _only_nql_errors(nql: str) -> None:
    try:
        compiled = compile_nql(nql, CATALOG)
    except NQLError:
        pass
    else:
        relations = [d.relation for d in compiled.datasets]
        assert set(relations) <= {"ds_6402", "ds_7", "ds_8"}
        check_duckdb_sql(compiled.select_sql, relations)
    with contextlib.suppress(NQLError):
        parse_nql(nql)
    validation = validate_nql(nql)
    assert all(isinstance(p, NQLError) for p in validation.problems)


@FUZZ
@given(token_soups)
def test_token_soup(nql: str) -> None:
    _only_nql_errors(nql)


@FUZZ
@given(mutations())
def test_mutated_valid_nql(nql: str) -> None:
    _only_nql_errors(nql)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(nql: str) -> None:
    _only_nql_errors(nql)
