"""Syntax errors point at the right 1-based line and column; no raw library error escapes."""

from __future__ import annotations

import pytest
import sqlglot.errors

from shared.errors import ColumnNotFound, NQLError, NQLSyntaxError
from shared.nql import StaticCatalog, compile_nql, parse_nql, validate_nql

POSITIONS = [
    # (NQL, line, column) of the offending token's first character
    ("SELECT a,\n  b FROM t WHERE\n  x = = 1", 3, 7),
    ("SELECT\n  a,\n  b\nFROM company_data.x\nWHERE a IN (1,", 5, 14),
    ("SELECT a\nFROM t\nWHERE x = 'abc", 3, 11),
    ('SELECT a FROM t WHERE b = "unterminated', 1, 27),
    ("SELECT a\n  FROM t /* never closed", 2, 10),
    ("SELECT a FROM company_data.x LIMIT 10 USD", 1, 39),
    ("CREATE MATERIALIZED VIEW \"v\"\n  WRITE_MODE='append'\n  COLOR='red'\nAS SELECT 1", 3, 3),
    ("SELECT\n\tuser_id\n\tFROM company_data.x\n\tWHERE user_id = 1 1", 4, 20),
    ("\n\n    SELECT FROM WHERE", 3, 17),
]


@pytest.mark.parametrize(("nql", "line", "column"), POSITIONS)
def test_syntax_error_position(nql: str, line: int, column: int) -> None:
    with pytest.raises(NQLSyntaxError) as raised:
        parse_nql(nql)
    assert (raised.value.line, raised.value.column) == (line, column), raised.value.message
    assert f"line {line}, column {column}" in raised.value.message
    assert isinstance(raised.value.__cause__, sqlglot.errors.SqlglotError)


def test_validate_collects_the_syntax_error() -> None:
    validation = validate_nql("SELECT a FROM\n  company_data.x WHERE")
    assert validation.kind is None and not validation.ok
    (problem,) = validation.problems
    assert isinstance(problem, NQLSyntaxError) and problem.line == 2


@pytest.mark.parametrize("nql", ["", "   ", ";", "-- only a comment"])
def test_empty_statement(nql: str) -> None:
    with pytest.raises(NQLSyntaxError):
        parse_nql(nql)


def test_unknown_column_names_it(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(ColumnNotFound) as raised:
        compile_nql('SELECT "no_such_column" FROM company_data."7"', nql_catalog)
    assert "no_such_column" in raised.value.message


def test_unknown_struct_field(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(NQLError) as raised:
        compile_nql('SELECT "attrs"."nope" AS x FROM company_data."7"', nql_catalog)
    assert "nope" in raised.value.message


def test_binder_errors_become_nql_errors(nql_catalog: StaticCatalog) -> None:
    # A type mismatch only DuckDB's binder sees: wrapped, readable, without the SQL excerpt.
    with pytest.raises(NQLError) as raised:
        compile_nql("SELECT event_date + 'x' AS y FROM company_data.web_events", nql_catalog)
    assert "LINE 1" not in raised.value.message
    assert raised.value.__cause__ is not None


def test_ambiguous_self_join_without_aliases(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(NQLError):
        compile_nql(
            "SELECT user_id FROM company_data.web_events JOIN company_data.web_events ON true",
            nql_catalog,
        )


def test_too_long_statement_is_rejected() -> None:
    with pytest.raises(NQLError):
        parse_nql("SELECT " + " + ".join(["1"] * 40_000) + " AS x")


def test_deep_nesting_is_an_nql_error() -> None:
    with pytest.raises(NQLError):
        parse_nql("SELECT " + "(" * 3000 + "1" + ")" * 3000 + " AS x")
