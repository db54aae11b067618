"""Escape attempts: every one is rejected with an NQLError before anything reaches DuckDB.

`compile_nql` only ever hands DuckDB the SQL it generated, after both gates; these tests also
call `check_duckdb_sql` directly with SQL that sqlglot might let through.
"""

from __future__ import annotations

import duckdb
import pytest

from shared.errors import DatasetNotFound, ForbiddenConstruct, NQLError
from shared.nql import StaticCatalog, check_duckdb_sql, compile_nql, parse_nql, sandbox, validate_nql

from .datasets import FOREIGN

SEED = 'company_data."6402"'

# (id, NQL, the error class it must raise)
ESCAPES: list[tuple[str, str, type[NQLError]]] = [
    # files and network
    ("read_csv", "SELECT * FROM read_csv('/etc/passwd')", ForbiddenConstruct),
    ("read_csv_explicit", "SELECT a FROM read_csv('/etc/passwd') AS t(a)", ForbiddenConstruct),
    ("read_parquet", "SELECT a FROM read_parquet('/data/other/*.parquet')", ForbiddenConstruct),
    ("read_json", "SELECT a FROM read_json('http://evil.example/x.json')", ForbiddenConstruct),
    ("read_text", "SELECT content FROM read_text('/etc/shadow')", ForbiddenConstruct),
    ("read_blob_join", f"SELECT x.content FROM {SEED} JOIN read_blob('/etc/hosts') x ON true", ForbiddenConstruct),
    ("glob", "SELECT file FROM glob('/home/*')", ForbiddenConstruct),
    ("string_literal_table", "SELECT a FROM '/etc/passwd'", ForbiddenConstruct),
    ("string_literal_csv", "SELECT a FROM 'data.csv'", ForbiddenConstruct),
    ("string_literal_url", "SELECT a FROM 'https://evil.example/data.parquet'", ForbiddenConstruct),
    (
        "read_csv_in_subquery",
        f"SELECT (SELECT count(*) FROM read_csv('/etc/passwd')) AS n FROM {SEED}",
        ForbiddenConstruct,
    ),
    ("read_csv_in_cte", "WITH t AS (SELECT a FROM read_csv_auto('/etc/passwd')) SELECT a FROM t", ForbiddenConstruct),
    # table functions reading SQL, ranges and the catalog
    ("query_function", "SELECT a FROM query('SELECT 1 AS a')", ForbiddenConstruct),
    ("query_table", "SELECT a FROM query_table('ds_9')", ForbiddenConstruct),
    ("range_table", "SELECT range FROM range(10)", ForbiddenConstruct),
    ("generate_series", "SELECT generate_series FROM generate_series(1, 10)", ForbiddenConstruct),
    ("duckdb_settings", "SELECT name, value FROM duckdb_settings()", ForbiddenConstruct),
    ("duckdb_tables_view", "SELECT table_name FROM duckdb_tables", ForbiddenConstruct),
    ("information_schema", "SELECT table_name FROM information_schema.tables", ForbiddenConstruct),
    ("pg_catalog", "SELECT relname FROM pg_catalog.pg_class", ForbiddenConstruct),
    ("pg_class_bare", "SELECT relname FROM pg_class", ForbiddenConstruct),
    ("sqlite_master", "SELECT sql FROM sqlite_master", ForbiddenConstruct),
    ("pragma_function", "SELECT name FROM pragma_table_info('ds_6402')", ForbiddenConstruct),
    ("internal_relation", "SELECT secret FROM ds_9", ForbiddenConstruct),
    ("catalog_qualified", "SELECT secret FROM memory.main.ds_9", ForbiddenConstruct),
    ("system_schema", "SELECT secret FROM main.ds_9", ForbiddenConstruct),
    # functions reaching outside the query
    ("getenv", f"SELECT getenv('HOME') AS h FROM {SEED}", ForbiddenConstruct),
    ("current_setting", "SELECT current_setting('enable_external_access') AS s", ForbiddenConstruct),
    ("version", "SELECT version() AS v", ForbiddenConstruct),
    ("list_aggregate_by_name", "SELECT list_aggregate([1], 'getenv') AS x", ForbiddenConstruct),
    ("schema_qualified_function", "SELECT main.lower('a') AS x", ForbiddenConstruct),
    ("nested_forbidden_function", f"SELECT lower(upper(getenv('PATH'))) AS x FROM {SEED}", ForbiddenConstruct),
    (
        "forbidden_in_where",
        f"SELECT \"event_timestamp\" FROM {SEED} WHERE current_setting('threads') IS NOT NULL",
        ForbiddenConstruct,
    ),
    ("forbidden_in_window", f"SELECT sum(1) OVER (PARTITION BY getenv('X')) AS s FROM {SEED}", ForbiddenConstruct),
    # statements other than one SELECT
    ("attach", "ATTACH '/tmp/other.duckdb' AS other", ForbiddenConstruct),
    ("copy_out", "COPY (SELECT 1) TO '/tmp/leak.csv'", ForbiddenConstruct),
    ("pragma", "PRAGMA database_list", ForbiddenConstruct),
    ("set", "SET enable_external_access = true", ForbiddenConstruct),
    ("reset", "RESET lock_configuration", ForbiddenConstruct),
    ("install", "INSTALL httpfs", ForbiddenConstruct),
    ("load", "LOAD httpfs", ForbiddenConstruct),
    ("call", "CALL duckdb_settings()", ForbiddenConstruct),
    ("export", "EXPORT DATABASE '/tmp/dump'", NQLError),
    ("import", "IMPORT DATABASE '/tmp/dump'", NQLError),
    ("create_table", "CREATE TABLE t AS SELECT 1 AS a", ForbiddenConstruct),
    ("create_secret", "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')", ForbiddenConstruct),
    ("insert", "INSERT INTO company_data.audit_log VALUES (1)", ForbiddenConstruct),
    ("update", "UPDATE company_data.users SET plan = 'pro'", ForbiddenConstruct),
    ("delete", "DELETE FROM company_data.users", ForbiddenConstruct),
    ("drop", "DROP TABLE ds_7", ForbiddenConstruct),
    ("describe", "DESCRIBE company_data.users", ForbiddenConstruct),
    ("summarize", "SUMMARIZE company_data.users", ForbiddenConstruct),
    ("multi_statement", "SELECT 1 AS a; SELECT 2 AS b", ForbiddenConstruct),
    ("multi_statement_attach", "SELECT plan FROM company_data.users; ATTACH 'x.db'", ForbiddenConstruct),
    ("explain_of_attach", "EXPLAIN ATTACH 'x.db'", ForbiddenConstruct),
    ("view_of_copy", "CREATE MATERIALIZED VIEW \"v\" AS COPY (SELECT 1) TO 'x'", NQLError),
    # comment and quoting tricks
    ("comment_hides_statement", "SELECT 1 AS a /* ; */; ATTACH 'x.db'", ForbiddenConstruct),
    ("line_comment_then_statement", "SELECT 1 AS a -- harmless\n; PRAGMA version", ForbiddenConstruct),
    ("quoted_function_name", "SELECT \"getenv\"('HOME') AS h", ForbiddenConstruct),
    ("quoted_table_function", "SELECT a FROM \"read_csv\"('/etc/passwd')", ForbiddenConstruct),
    ("mixed_case_function", "SELECT GetEnv('HOME') AS h", ForbiddenConstruct),
    ("quoted_system_table", 'SELECT "name" FROM "duckdb_settings"', ForbiddenConstruct),
    ("escaped_string_path", "SELECT a FROM e'\\x2fetc\\x2fpasswd'", NQLError),
    ("dollar_quoted_table", "SELECT a FROM $$/etc/passwd$$", NQLError),
    ("unicode_lookalike_function", "SELECT g\u0435tenv('HOME') AS h", ForbiddenConstruct),  # Cyrillic e
    # CTE shadowing
    (
        "cte_named_system_table",
        "WITH duckdb_settings AS (SELECT 1 AS name) SELECT name FROM duckdb_settings",
        ForbiddenConstruct,
    ),
    ("cte_named_other_dataset", "WITH ds_9 AS (SELECT 1 AS secret) SELECT secret FROM ds_9", ForbiddenConstruct),
    ("cte_named_company_data", "WITH company_data AS (SELECT 1 AS a) SELECT a FROM company_data", ForbiddenConstruct),
    ("cte_named_pg_table", "WITH pg_settings AS (SELECT 1 AS a) SELECT a FROM pg_settings", ForbiddenConstruct),
    (
        "cte_named_sqlite_master",
        "WITH sqlite_master AS (SELECT 1 AS sql) SELECT sql FROM sqlite_master",
        ForbiddenConstruct,
    ),
    ("recursive_cte", "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT n FROM r", NQLError),
    # other companies and unknown datasets
    ("foreign_dataset_by_id", 'SELECT secret FROM company_data."9"', DatasetNotFound),
    ("foreign_dataset_by_name", "SELECT secret FROM company_data.their_events", DatasetNotFound),
    ("other_namespace", "SELECT secret FROM acme.their_events", DatasetNotFound),
    # NQL rules
    ("select_star", f"SELECT * FROM {SEED}", NQLError),
    ("qualified_star", f"SELECT t.* FROM {SEED} AS t", NQLError),
    ("star_exclude", f"SELECT * EXCLUDE (event_timestamp) FROM {SEED}", NQLError),
    ("columns_star", f"SELECT COLUMNS('.*') FROM {SEED}", NQLError),
    # misc DuckDB syntax that opens doors
    ("values_list", "SELECT a FROM (VALUES (1), (2)) AS t(a)", ForbiddenConstruct),
    ("unnest_table", "SELECT x FROM unnest([1, 2]) AS t(x)", ForbiddenConstruct),
    ("prepared_parameter", f'SELECT "event_timestamp" FROM {SEED} WHERE 1 = ?', ForbiddenConstruct),
    ("pivot", f"PIVOT {SEED} ON event_timestamp USING count(*)", NQLError),
]


@pytest.mark.parametrize(("nql", "error"), [(n, e) for _, n, e in ESCAPES], ids=[i for i, _, _ in ESCAPES])
def test_escape_is_rejected(nql: str, error: type[NQLError], nql_catalog: StaticCatalog) -> None:
    with pytest.raises(error):
        compile_nql(nql, nql_catalog)
    if error is DatasetNotFound and "company_data" in nql:
        return  # only the catalog can tell that company_data.x is not readable
    with pytest.raises(NQLError):
        parse_nql(nql)
    problems = validate_nql(nql).problems
    assert len(problems) == 1 and isinstance(problems[0], NQLError)


def test_corpus_is_large() -> None:
    assert len(ESCAPES) >= 40


def test_foreign_dataset_message_is_the_same_as_missing(nql_catalog: StaticCatalog) -> None:
    # The other company's dataset exists, but the message must not say so.
    assert FOREIGN.dataset_id == 9
    with pytest.raises(DatasetNotFound) as foreign:
        compile_nql('SELECT secret FROM company_data."9"', nql_catalog)
    with pytest.raises(DatasetNotFound) as missing:
        compile_nql('SELECT secret FROM company_data."99999"', nql_catalog)
    assert str(foreign.value).replace("9", "#") == str(missing.value).replace("99999", "#")


# SQL that sqlglot might produce or let through, checked by DuckDB's parser alone.
NASTY_DUCKDB_SQL = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM glob('*')",
    "SELECT * FROM range(3)",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM main.ds_7",
    "SELECT * FROM memory.main.ds_7",
    "SELECT a FROM ds_9",
    "SELECT 1; SELECT 2",
    "SELECT 1; ATTACH 'x.db'",
    "ATTACH 'x.db'",
    "PRAGMA version",
    "SET threads = 1",
    "CALL duckdb_settings()",
    "COPY ds_7 TO '/tmp/x.csv'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT getenv('HOME')",
    "SELECT current_setting('threads')",
    "SELECT main.lower('a')",
    "WITH duckdb_settings AS (SELECT 1 AS a) SELECT a FROM duckdb_settings",
    "WITH ds_9 AS (SELECT 1 AS a) SELECT a FROM ds_9",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
    "SELECT a FROM (VALUES (1)) t(a)",
    "SELECT x FROM unnest([1, 2]) t(x)",
    "SELECT * FROM ds_7",
    "SELECT user_id FROM ds_7 /* unterminated",
    "SELECT user_id FROM ds_7 WHERE user_id IN (SELECT a FROM read_parquet('x'))",
    "SELECT (SELECT secret FROM ds_9) AS s FROM ds_7",
    "SELECT user_id FROM ds_7 JOIN LATERAL read_csv(user_id) AS f ON true",
    "SELECT user_id FROM ds_7 PIVOT (count(*) FOR user_id IN ('a'))",
]


@pytest.mark.parametrize("sql", NASTY_DUCKDB_SQL)
def test_duckdb_check_refuses(sql: str) -> None:
    with pytest.raises(ForbiddenConstruct):
        check_duckdb_sql(sql, ["ds_7", "ds_8"])


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "ds_7"."user_id" AS "user_id" FROM "ds_7" AS "ds_7"',
        "WITH c AS (SELECT user_id FROM ds_7) SELECT c.user_id FROM c JOIN ds_8 ON true",
        "SELECT count(*) AS n, lower(max(user_id)) AS m FROM ds_7",
        "SELECT user_id FROM ds_7 UNION ALL SELECT user_id FROM ds_8",
    ],
)
def test_duckdb_check_accepts_plain_reads(sql: str) -> None:
    check_duckdb_sql(sql, ["ds_7", "ds_8"])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT content FROM read_text('/etc/hostname')",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "INSTALL httpfs",
        "ATTACH '/tmp/nql-sandbox-test.duckdb' AS other",
        "COPY (SELECT 1) TO '/tmp/nql-sandbox-test.csv'",
    ],
)
def test_the_checking_database_itself_is_locked(sql: str) -> None:
    # Defense in depth: even SQL that skipped both gates cannot leave the sandbox.
    with pytest.raises(duckdb.Error):
        sandbox.connection().execute(sql)
