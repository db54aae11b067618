"""DELTA(TABLE ...), the MERGE clause and its rules, ROLLUP/CUBE/GROUPING SETS, and
line/column on errors that are not syntax errors."""

from __future__ import annotations

import pytest

from shared.errors import ColumnNotFound, ForbiddenConstruct, NQLError, UnsupportedConstruct
from shared.nql import StaticCatalog, compile_nql, parse_nql, validate_nql

MERGE = ("MERGE ON target.user_id IS NOT DISTINCT FROM source.user_id "
         "WHEN MATCHED THEN UPDATE SET total = target.total + source.total "
         "WHEN NOT MATCHED THEN INSERT (user_id, total) VALUES (source.user_id, source.total)")
VIEW = ('CREATE MATERIALIZED VIEW "spend" {options} AS SELECT user_id, SUM(amount) AS total '
        'FROM DELTA(TABLE company_data."7") AS e GROUP BY user_id {budget} {merge}')


def test_delta_marks_the_dataset_and_compiles_to_the_plain_relation(nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql(VIEW.format(options="", budget="", merge=MERGE), nql_catalog)
    assert compiled.delta_dataset_ids == (7,)
    assert 'FROM "ds_7" AS "e"' in compiled.select_sql and "DELTA" not in compiled.select_sql
    assert compiled.view is not None and compiled.view.merge is not None
    assert compiled.view.merge.sql.startswith("ON target.user_id IS NOT DISTINCT FROM source.user_id")
    assert compiled.view.merge.columns == ("total", "user_id")


def test_delta_by_name_and_joined_with_a_whole_dataset(nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql("SELECT e.user_id, u.plan FROM DELTA(TABLE company_data.web_events) AS e "
                           "JOIN company_data.users AS u ON e.user_id = u.user_id", nql_catalog)
    assert compiled.delta_dataset_ids == (7,)
    plain = compile_nql('SELECT user_id FROM company_data."7"', nql_catalog)
    assert plain.delta_dataset_ids == ()


def test_budget_then_merge_both_parse() -> None:
    statement = parse_nql(VIEW.format(options="", budget="BUDGET 5 USD", merge=MERGE))
    assert statement.view is not None and statement.view.budget is not None
    assert statement.view.merge is not None


def test_merge_requires_append_naming_the_rule() -> None:
    verdict = validate_nql(VIEW.format(options="WRITE_MODE='overwrite'", budget="", merge=MERGE))
    assert not verdict.ok
    problem = verdict.problems[0]
    assert "WRITE_MODE = 'append'" in problem.message and problem.detail["rule"] == "merge-requires-append"


@pytest.mark.parametrize(("merge", "error", "words"), [
    ("MERGE ON user_id = source.user_id WHEN MATCHED THEN DELETE", NQLError, "qualified by target."),
    ("MERGE ON target.user_id = source.user_id WHEN MATCHED THEN UPDATE SET total = "
     "(SELECT 1 FROM company_data.\"8\")", ForbiddenConstruct, "subquery"),
    ("MERGE ON target.user_id = source.user_id WHEN MATCHED THEN UPDATE SET total = "
     "read_csv('/etc/passwd')", ForbiddenConstruct, "not allowed"),
    ("MERGE ON target.user_id = source.user_id WHEN NOT MATCHED THEN DELETE", UnsupportedConstruct,
     "WHEN NOT MATCHED takes INSERT"),
    ("MERGE ON target.user_id = source.user_id WHEN NOT MATCHED BY SOURCE THEN DELETE",
     UnsupportedConstruct, "BY SOURCE"),
])
def test_merge_clause_is_checked(merge: str, error: type[NQLError], words: str) -> None:
    with pytest.raises(error) as raised:
        parse_nql(VIEW.format(options="", budget="", merge=merge))
    assert words in raised.value.message


def test_merge_columns_must_be_output_columns(nql_catalog: StaticCatalog) -> None:
    merge = ("MERGE ON target.user_id = source.user_id WHEN MATCHED THEN UPDATE SET "
             "nope = source.total")
    with pytest.raises(ColumnNotFound, match="nope"):
        compile_nql(VIEW.format(options="", budget="", merge=merge), nql_catalog)


def test_one_dataset_is_read_either_as_delta_or_whole() -> None:
    with pytest.raises(UnsupportedConstruct, match="both as DELTA"):
        parse_nql('SELECT a.user_id FROM DELTA(TABLE company_data."7") AS a '
                  'JOIN company_data."7" AS b ON a.user_id = b.user_id')


def test_delta_of_a_cte_is_rejected_with_its_position() -> None:
    with pytest.raises(UnsupportedConstruct) as raised:
        parse_nql("WITH c AS (SELECT 1 AS x)\nSELECT x FROM DELTA(TABLE c)")
    assert (raised.value.line, raised.value.column) == (2, 27)


@pytest.mark.parametrize(("nql", "line", "column"), [
    ('SELECT user_id\nFROM company_data."7"\nPIVOT (SUM(amount) FOR country IN (\'US\'))', 3, 8),
    ('SELECT user_id,\n  read_csv(\'x\') AS r FROM company_data."7"', 2, 3),
    ('SELECT user_id FROM company_data."7" WHERE user_id IN (SELECT x FROM pg_catalog.pg_user)', 1, 70),
    ('SELECT\n  t.* FROM company_data."7" AS t', 2, 3),
])
def test_errors_carry_line_and_column(nql: str, line: int, column: int) -> None:
    verdict = validate_nql(nql)
    assert not verdict.ok
    problem = verdict.problems[0]
    assert (problem.line, problem.column) == (line, column), problem.message


def test_unknown_column_error_points_at_it(nql_catalog: StaticCatalog) -> None:
    with pytest.raises(ColumnNotFound) as raised:
        compile_nql('SELECT user_id,\n    "no_such" FROM company_data."7"', nql_catalog)
    assert (raised.value.line, raised.value.column) == (2, 5)


@pytest.mark.parametrize("group", ["ROLLUP (country, quantity)", "CUBE (country, quantity)",
                                   "GROUPING SETS ((country), (quantity), ())"])
def test_grouping_constructs_are_accepted(group: str, nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql(f'SELECT country, quantity, GROUPING(country) AS g, COUNT(1) AS n '
                           f'FROM company_data."7" GROUP BY {group}', nql_catalog)
    assert [c.name for c in compiled.output_columns] == ["country", "quantity", "g", "n"]


def test_a_duplicate_output_column_points_at_the_duplicate() -> None:
    problem = validate_nql('SELECT user_id AS x,\n   amount AS x FROM company_data."7"').problems[0]
    assert (problem.line, problem.column) == (2, 4) and "Duplicate output column 'x'" in problem.message
