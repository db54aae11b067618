"""NQL rules: explicit columns, COUNT(*), unique output names, NULL ordering, kinds."""

from __future__ import annotations

import pytest

from shared.errors import NQLError
from shared.nql import StatementKind, StaticCatalog, compile_nql, parse_nql, validate_nql


@pytest.mark.parametrize(
    "nql",
    [
        "SELECT * FROM company_data.users",
        "SELECT u.* FROM company_data.users u",
        "SELECT plan FROM (SELECT * FROM company_data.users) t",
        "WITH t AS (SELECT * FROM company_data.users) SELECT plan FROM t",
        "SELECT count(u.*) AS n FROM company_data.users u",
        "SELECT plan FROM company_data.users WHERE plan IN (SELECT * FROM company_data.users)",
        "SELECT plan FROM company_data.users u WHERE EXISTS (SELECT *, plan FROM company_data.users)",
        "SELECT (SELECT * FROM company_data.users) AS x",
    ],
)
def test_star_needs_explicit_columns(nql: str) -> None:
    with pytest.raises(NQLError) as raised:
        parse_nql(nql)
    assert "explicit columns" in raised.value.message


def test_count_star_is_allowed(nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql("SELECT plan, COUNT(*) AS n FROM company_data.users GROUP BY plan", nql_catalog)
    assert "COUNT(*)" in compiled.select_sql
    assert [c.duckdb_type for c in compiled.output_columns] == ["VARCHAR", "BIGINT"]


@pytest.mark.parametrize("negate", ["", "NOT "])
def test_exists_star_reads_no_column(negate: str, nql_catalog: StaticCatalog) -> None:
    # TPC-H Q4/Q21/Q22 style: EXISTS never reads its select list; DuckDB gets SELECT 1.
    compiled = compile_nql(
        f"SELECT u.plan FROM company_data.users u WHERE {negate}EXISTS "
        "(SELECT * FROM company_data.users v WHERE v.age > u.age)", nql_catalog)
    flat = " ".join(compiled.select_sql.split())
    assert "*" not in flat and f"{negate}EXISTS( SELECT 1 AS" in flat
    assert [c.name for c in compiled.output_columns] == ["plan"]


@pytest.mark.parametrize(
    ("nql", "duplicate"),
    [
        ("SELECT plan, plan FROM company_data.users", "plan"),
        ("SELECT plan AS x, age AS X FROM company_data.users", "X"),
        ("SELECT a.user_id, b.user_id FROM company_data.users a JOIN company_data.users b "
         "ON a.user_id = b.user_id", "user_id"),
    ],
)  # fmt: skip
def test_duplicate_output_names_are_rejected(nql: str, duplicate: str, nql_catalog: StaticCatalog) -> None:
    with pytest.raises(NQLError) as raised:
        compile_nql(nql, nql_catalog)
    assert repr(duplicate) in raised.value.message


def test_duplicates_inside_a_subquery_do_not_matter(nql_catalog: StaticCatalog) -> None:
    compile_nql("SELECT x FROM (SELECT plan AS x, age AS y FROM company_data.users) t", nql_catalog)


def test_nulls_sort_highest_and_explicitly(nql_catalog: StaticCatalog) -> None:
    sql = compile_nql(
        "SELECT plan, age, rank() OVER (ORDER BY age DESC) AS r FROM company_data.users ORDER BY plan, age DESC",
        nql_catalog,
    ).select_sql
    assert '"users"."age" DESC NULLS FIRST' in sql  # window ORDER BY
    assert '"plan" ASC NULLS LAST' in sql
    assert '"age" DESC NULLS FIRST' in sql


def test_null_ordering_on_data(nql_catalog: StaticCatalog, bound_db) -> None:  # type: ignore[no-untyped-def]
    asc = compile_nql("SELECT plan FROM company_data.users ORDER BY plan", nql_catalog)
    desc = compile_nql("SELECT plan FROM company_data.users ORDER BY plan DESC", nql_catalog)
    asc_rows = [r[0] for r in bound_db.execute(asc.select_sql).fetchall()]
    desc_rows = [r[0] for r in bound_db.execute(desc.select_sql).fetchall()]
    assert asc_rows[-1] is None and asc_rows[0] is not None
    assert desc_rows[0] is None and desc_rows[-1] is not None


@pytest.mark.parametrize(
    ("nql", "kind"),
    [
        ("SELECT plan FROM company_data.users", StatementKind.SELECT),
        ("explain SELECT plan FROM company_data.users", StatementKind.FORECAST),
        ('CREATE MATERIALIZED VIEW "v" AS SELECT plan FROM company_data.users',
         StatementKind.MATERIALIZE_VIEW),
    ],
)  # fmt: skip
def test_kinds(nql: str, kind: StatementKind) -> None:
    validation = validate_nql(nql)
    assert validation.ok and validation.kind is kind
    assert validation.output_columns == ("plan",)


def test_validate_needs_no_catalog_and_names_outputs() -> None:
    validation = validate_nql('SELECT "attrs"."device", amount AS "Total", amount + 1 FROM company_data."7"')
    assert validation.output_columns == ("device", "Total", "_col_2")


def test_output_name_case_is_kept(nql_catalog: StaticCatalog) -> None:
    compiled = compile_nql('SELECT plan AS "PlanName", age AS Age FROM company_data.users', nql_catalog)
    assert [c.name for c in compiled.output_columns] == ["PlanName", "Age"]
