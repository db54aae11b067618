"""PARTITIONED_BY: Hive-partitioned output within the snapshot; a query over the view that
filters on the partition column reads only the matching files (statistics say how many),
and returns what DuckDB computes over all of the rows."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pytest

from shared.config import Settings
from shared.storage import partition_of_key
from shared.store import Store
from shared.store.datasets import current_snapshot, find_dataset_by_name, get_dataset, publish_snapshot
from tests.worker.conftest import submit
from worker.execute import run_job
from worker.lifecycle import Outcome

from .helpers import COMPANY, INPUT, view_rows
from .test_delta_views import refresh

pytestmark = pytest.mark.postgres

ROWS = ("SELECT 'u' || (i % 5)::VARCHAR AS u, DATE '2024-01-01' + (i % 40)::INTEGER AS d, "
        "i::BIGINT AS n FROM range(0, 400) t(i)")


@pytest.fixture
def days(wsettings: Settings, pg_store: Store, tmp_path: Path) -> None:
    from shared.storage import Storage, import_key
    from shared.store.datasets import create_dataset
    path = tmp_path / "rows.parquet"
    duckdb.execute(f"COPY ({ROWS}) TO '{path}' (FORMAT parquet)")
    key = import_key(INPUT, uuid.uuid4().hex)
    size = Storage.from_settings(wsettings).put_file(key, path, move=True)
    with pg_store.unit_of_work() as session:
        dataset = create_dataset(session, company_id=COMPANY, name="days", dataset_id=INPUT,
                                 schema=(("u", "VARCHAR"), ("d", "DATE"), ("n", "BIGINT")))
        publish_snapshot(session, dataset=get_dataset(session, dataset.id), job_id=None, write_mode="append",
                         added_files=[key], added_rows=400, added_bytes=size)


def _files(store: Store, name: str) -> list[str]:
    with store.unit_of_work() as session:
        dataset = find_dataset_by_name(session, company_id=COMPANY, name=name)
        assert dataset is not None
        snapshot = current_snapshot(session, dataset)
        return list(snapshot.files) if snapshot else []


def test_partitioned_view_is_hive_partitioned_and_queries_over_it_prune(
        days: None, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    refresh(pg_store, wsettings, f'CREATE MATERIALIZED VIEW "by_day" PARTITIONED_BY d MONTH '
                                 f'AS SELECT u, d, n FROM company_data."{INPUT}"')
    files = _files(pg_store, "by_day")
    assert sorted(partition_of_key(k)["d_month"] for k in files) == ["2024-01", "2024-02"]
    assert all(k.split("/")[1].startswith("d_month=") for k in files)
    everything = duckdb.sql(f"SELECT * FROM ({ROWS}) ORDER BY ALL").fetchall()
    assert view_rows(wsettings, pg_store, "by_day", tmp_path) == everything  # partition column kept

    refresh(pg_store, wsettings, 'CREATE MATERIALIZED VIEW "daily" PARTITIONED_BY d DAY '
                                 'AS SELECT u, d, n FROM company_data.by_day')
    assert len(_files(pg_store, "daily")) == 40
    with pg_store.unit_of_work() as session:
        daily = find_dataset_by_name(session, company_id=COMPANY, name="daily")
        assert daily is not None
        daily_id = daily.id
    cases = [
        ("e.d = DATE '2024-01-07'", 1),
        ("e.d >= DATE '2024-02-05' AND e.u <> 'u1'", 5),
        ("e.d BETWEEN DATE '2024-01-10' AND DATE '2024-01-12'", 3),
        ("e.d IN (DATE '2024-01-02', DATE '2024-02-01')", 2),
        ("DATE '2024-01-03' > e.d", 2),
        ("e.n > 5", 40),  # not a partition column: every file
    ]
    for where, expected_files in cases:
        name = f"q{uuid.uuid4().hex[:8]}"
        job = refresh(pg_store, wsettings, f'CREATE MATERIALIZED VIEW "{name}" AS SELECT e.u, e.d, e.n '
                                           f'FROM company_data."{daily_id}" AS e WHERE {where}')
        assert job.statistics["files_read"] == expected_files, where
        truth = duckdb.sql(f"SELECT * FROM ({ROWS}) AS e WHERE {where} ORDER BY ALL").fetchall()
        assert view_rows(wsettings, pg_store, name, tmp_path) == truth, where


def test_a_partition_column_that_is_not_a_date_fails_readably(
        days: None, pg_store: Store, wsettings: Settings) -> None:
    job_id = submit(pg_store, f'CREATE MATERIALIZED VIEW "bad" PARTITIONED_BY n DAY '
                              f'AS SELECT u, n FROM company_data."{INPUT}"')
    assert run_job(pg_store, wsettings, job_id, executor="t") == Outcome.FAILED


def test_merge_into_a_partitioned_view_rewrites_only_the_touched_partitions(
        days: None, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    from shared.storage import Storage, import_key
    nql = (f'CREATE MATERIALIZED VIEW "per_day" PARTITIONED_BY d DAY AS SELECT d, u, SUM(n) AS total '
           f'FROM DELTA(TABLE company_data."{INPUT}") GROUP BY d, u '
           "MERGE ON target.d = source.d AND target.u = source.u "
           "WHEN MATCHED THEN UPDATE SET total = target.total + source.total "
           "WHEN NOT MATCHED THEN INSERT (d, u, total) VALUES (source.d, source.u, source.total)")
    refresh(pg_store, wsettings, nql)
    before = set(_files(pg_store, "per_day"))
    assert len(before) == 40
    more = ("SELECT 'u' || (i % 7)::VARCHAR AS u, DATE '2024-01-07' + (i % 2)::INTEGER AS d, "
            "(1000 + i)::BIGINT AS n FROM range(0, 50) t(i)")
    path = tmp_path / "more.parquet"
    duckdb.execute(f"COPY ({more}) TO '{path}' (FORMAT parquet)")
    key = import_key(INPUT, uuid.uuid4().hex)
    size = Storage.from_settings(wsettings).put_file(key, path, move=True)
    with pg_store.unit_of_work() as session:
        publish_snapshot(session, dataset=get_dataset(session, INPUT), job_id=None, write_mode="append",
                         added_files=[key], added_rows=50, added_bytes=size)
    job = refresh(pg_store, wsettings, nql)
    assert job.statistics["refresh"] == "incremental"
    after = set(_files(pg_store, "per_day"))
    assert len(before & after) == 38  # every other day's file carried over untouched
    assert sorted(partition_of_key(k)["d_day"] for k in after - before) == ["2024-01-07", "2024-01-08"]
    truth = duckdb.sql(f"SELECT d, u, SUM(n) FROM (({ROWS}) UNION ALL ({more})) GROUP BY d, u ORDER BY ALL").fetchall()
    assert view_rows(wsettings, pg_store, "per_day", tmp_path) == truth
    with pg_store.unit_of_work() as session:
        dataset = find_dataset_by_name(session, company_id=COMPANY, name="per_day")
        assert dataset is not None
        snapshot = current_snapshot(session, dataset)
        assert snapshot is not None and snapshot.row_count == len(truth)
