"""The short path of a job: spare databases made in advance, closed off the path, and
`compiled_sql` written with the outcome instead of in a transaction of its own."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID
from shared.store import Store
from worker import sandbox
from worker.execute import run_job
from worker.lifecycle import Outcome

from .conftest import job_row, run


def _settings_of(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    names = ("threads", "memory_limit", "max_temp_directory_size", "temp_directory", "enable_external_access",
             "lock_configuration", "allow_community_extensions", "python_enable_replacements",
             "autoload_known_extensions", "max_execution_time")
    rows = con.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                       f"({', '.join(repr(n) for n in names)})").fetchall()
    return dict(rows)


def _open(settings: Settings, tmp: Path) -> duckdb.DuckDBPyConnection:
    limits = sandbox.Limits.from_settings(settings, temp_directory=tmp / "t", max_execution_ms=5000)
    return sandbox.open_sandbox(limits, allowed_directories=[tmp])


@pytest.mark.parametrize("spare", ["none", "same settings", "other settings"])
def test_a_spare_database_ends_up_exactly_as_a_fresh_one(tmp_path: Path, spare: str) -> None:
    settings = Settings(data_dir=tmp_path, duckdb_threads=3, duckdb_memory_limit="300MB",
                        duckdb_max_temp_directory_size="1GB")
    fresh = _open(settings, tmp_path)
    expected = _settings_of(fresh)
    fresh.close()
    if spare == "same settings":
        sandbox.make_spare(settings)
    elif spare == "other settings":
        sandbox.make_spare(Settings(data_dir=tmp_path, duckdb_threads=1, duckdb_memory_limit="100MB"))
    con = _open(settings, tmp_path)
    try:
        got = _settings_of(con)
        assert got == expected
        assert got["threads"] == "3" and got["lock_configuration"] == "true"
        assert got["enable_external_access"] == "false" and got["autoload_known_extensions"] == "false"
        with pytest.raises(duckdb.Error):
            con.execute("SET threads = 1")
    finally:
        con.close()


def test_a_spare_is_never_handed_out_twice(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    sandbox.make_spare(settings)
    first = _open(settings, tmp_path)
    second = _open(settings, tmp_path)  # no spare left: a new database, not the same one
    try:
        first.execute("CREATE TABLE mine AS SELECT 1 AS x")
        with pytest.raises(duckdb.CatalogException):
            second.execute("SELECT x FROM mine")
    finally:
        first.close()
        second.close()


def test_retire_closes_the_database_off_the_caller(tmp_path: Path) -> None:
    con = _open(Settings(data_dir=tmp_path), tmp_path)
    sandbox.retire(con)
    sandbox._executor().submit(lambda: None).result(timeout=30)  # the close ran before this
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


def test_compiled_sql_comes_with_completion(pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    outcome, job = run(pg_store, wsettings, f'EXPLAIN SELECT "event_timestamp" FROM company_data."{SEED_DATASET_ID}"',
                       type="nql-forecast")
    assert outcome == Outcome.COMPLETED and job.result and job.result["rows"] == 20_000
    assert job.compiled_sql and f'"ds_{SEED_DATASET_ID}"' in job.compiled_sql


def test_compiled_sql_comes_with_a_failure_too(pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    # Compiles (the cast is valid SQL) but fails while running: the row still shows the SQL.
    outcome, job = run(pg_store, wsettings, 'CREATE MATERIALIZED VIEW "bad" AS SELECT CAST('
                       f'"mobile_id_unique_identifier"."value" AS INTEGER) AS n FROM company_data."{SEED_DATASET_ID}"')
    assert outcome == Outcome.FAILED and job.failures
    assert job.compiled_sql and "CAST(" in job.compiled_sql


def test_a_statement_that_does_not_compile_fails_the_job_not_the_claim(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    outcome, job = run(pg_store, wsettings, 'CREATE MATERIALIZED VIEW "x" AS SELECT FROM WHERE')
    assert outcome == Outcome.FAILED and job.attempts == 1 and job.compiled_sql is None
    assert "Syntax error" in job.failures[-1]["message"]


def test_a_message_for_no_job_is_skipped(pg_store: Store, wsettings: Settings) -> None:
    assert run_job(pg_store, wsettings, uuid.uuid4(), executor="test") == Outcome.SKIPPED


def test_a_duplicate_message_finds_the_job_taken(pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    outcome, job = run(pg_store, wsettings, f'EXPLAIN SELECT "event_timestamp" FROM company_data."{SEED_DATASET_ID}"',
                       type="nql-forecast")
    assert outcome == Outcome.COMPLETED
    assert run_job(pg_store, wsettings, job.id, executor="again") == Outcome.SKIPPED
    assert job_row(pg_store, job.id).attempts == 1
