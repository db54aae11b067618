"""The job connection stays locked even for SQL the compiler would never let through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from worker.inputs import Input, bind_inputs
from worker.sandbox import Limits, open_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    data = tmp_path / "datasets" / "1"
    data.mkdir(parents=True)
    other = tmp_path / "datasets" / "12"  # a sibling whose name extends the allowed one
    other.mkdir()
    setup = duckdb.connect()
    setup.execute(f"COPY (SELECT range AS x FROM range(10)) TO '{data}/a.parquet' (FORMAT parquet)")
    setup.execute(f"COPY (SELECT 42 AS secret) TO '{other}/b.parquet' (FORMAT parquet)")
    setup.close()
    staging = tmp_path / "staging" / "job-1"
    item = Input(dataset_id=1, relation="ds_1", columns=(("x", "BIGINT"),),
                 files=(data / "a.parquet",), row_count=10, price_micro_cents_per_row=0,
                 snapshot_id=1)
    empty = Input(dataset_id=2, relation="ds_2", columns=(("s", "STRUCT(a INTEGER)"),),
                  files=(), row_count=0, price_micro_cents_per_row=0, snapshot_id=None)
    limits = Limits(threads=1, memory_limit="256MB", temp_directory=staging / "tmp",
                    max_temp_directory_size="100MB", max_execution_ms=2000)
    con = open_sandbox(limits, allowed_directories=[data, staging],
                       bind=lambda c: bind_inputs(c, [item, empty]))
    yield con, tmp_path
    con.close()


def test_bound_datasets_are_readable(sandbox: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    con, _ = sandbox
    assert con.execute("SELECT sum(x) FROM ds_1").fetchone() == (45,)
    assert con.execute("SELECT count(*) FROM ds_2").fetchone() == (0,)
    assert con.execute("DESCRIBE ds_2").fetchone()[1] == "STRUCT(a INTEGER)"


def test_copy_into_staging_works(sandbox: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    con, root = sandbox
    target = root / "staging" / "job-1" / "out.parquet"
    assert con.execute(f"COPY (SELECT x FROM ds_1) TO '{target}' (FORMAT parquet)").fetchone() == (10,)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{root}/datasets/12/b.parquet')",  # prefix trick: 1 -> 12
    "SELECT * FROM read_parquet('{root}/datasets/1/../12/b.parquet')",
    "COPY (SELECT 1) TO '{root}/outside.csv'",
    "COPY (SELECT 1) TO '/tmp/dataplane-escape.csv'",
    "ATTACH '{root}/attached.db'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 8",
    "SET enable_external_access = true",
    "RESET memory_limit",
    "PRAGMA threads = 4",
    "SET allowed_directories = ['/']",
    "SELECT getenv('HOME')",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "EXPORT DATABASE '{root}/export'",
])
def test_escapes_fail(sandbox: tuple[duckdb.DuckDBPyConnection, Path], sql: str) -> None:
    con, root = sandbox
    with pytest.raises(duckdb.Error):
        con.execute(sql.format(root=root)).fetchall()
    assert not (root / "outside.csv").exists()
    assert not (root / "attached.db").exists()


def test_settings_are_locked_as_configured(sandbox: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    con, root = sandbox
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'lock_configuration', 'autoload_known_extensions', 'autoinstall_known_extensions', "
        "'allow_community_extensions', 'python_enable_replacements', 'threads', "
        "'max_execution_time', 'temp_directory', 'enable_progress_bar', "
        "'enable_progress_bar_print')").fetchall())
    assert settings == {
        "enable_external_access": "false", "lock_configuration": "true",
        "autoload_known_extensions": "false", "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false", "python_enable_replacements": "false",
        "threads": "1", "max_execution_time": "2000",
        "temp_directory": str(root / "staging" / "job-1" / "tmp"), "enable_progress_bar": "true",
        "enable_progress_bar_print": "false",  # tracked for query_progress(), never printed
    }


def test_python_variables_are_not_tables(sandbox: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    con, _ = sandbox
    secret_rows = [(1,)]  # noqa: F841 - what a replacement scan would find
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM secret_rows").fetchall()


def test_max_execution_time_stops_a_query(sandbox: tuple[duckdb.DuckDBPyConnection, Path]) -> None:
    con, _ = sandbox
    with pytest.raises(duckdb.InterruptException, match="maximum execution time"):
        con.execute("SELECT count(*) FROM range(1000000000) a, range(1000) b WHERE a.range + b.range < 0").fetchall()
