"""DELTA views refreshed incrementally equal their full recompute after every step
(computed by DuckDB alone over all the input's rows); overwrites fall back to full and say
so; a run that dies before publishing leaves the progress where it was."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import request_cancellation
from shared.store.progress import FULL_REFRESH_TAG
from tests.worker.conftest import job_row, submit
from worker import execute
from worker.execute import run_job
from worker.lifecycle import Outcome

from .helpers import INPUT, Events, progress, truth, view_rows

pytestmark = pytest.mark.postgres

SRC = f'DELTA(TABLE company_data."{INPUT}")'
PROJECTION = (f'CREATE MATERIALIZED VIEW "proj" AS SELECT k, v * 2 AS v2 FROM {SRC}',
              "SELECT k, v * 2 AS v2 FROM {src}")
FILTER = (f'CREATE MATERIALIZED VIEW "filt" AS SELECT k, v FROM {SRC} AS e WHERE e.v % 3 = 0 AND k IS NOT NULL',
          "SELECT k, v FROM {src} WHERE v % 3 = 0 AND k IS NOT NULL")
AGGREGATE = (
    f'CREATE MATERIALIZED VIEW "agg" AS SELECT k, COUNT(1) AS n, SUM(v) AS total FROM {SRC} GROUP BY k '
    "MERGE ON target.k IS NOT DISTINCT FROM source.k "
    "WHEN MATCHED THEN UPDATE SET n = target.n + source.n, total = target.total + source.total "
    "WHEN NOT MATCHED THEN INSERT (k, n, total) VALUES (source.k, source.n, source.total)",
    "SELECT k, COUNT(*) AS n, SUM(v) AS total FROM {src} GROUP BY k")
VIEWS = {"proj": PROJECTION, "filt": FILTER, "agg": AGGREGATE}


@pytest.fixture
def events(wsettings: Settings, pg_store: Store, tmp_path: Path) -> Events:
    return Events(wsettings, pg_store, tmp_path)


def refresh(store: Store, settings: Settings, nql: str, *, full: bool = False) -> Any:
    job_id = submit(store, nql, tags=(FULL_REFRESH_TAG,) if full else ())
    outcome = run_job(store, settings, job_id, executor="test")
    job = job_row(store, job_id)
    assert outcome == Outcome.COMPLETED, job.failures
    return job


@pytest.mark.parametrize("name", list(VIEWS))
def test_appends_then_incremental_refreshes_equal_the_full_recompute(
        name: str, events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    nql, logic = VIEWS[name]
    events.write(300)
    job = refresh(pg_store, wsettings, nql)
    assert job.statistics["refresh"] == "full" and job.statistics["refresh_reason"] == "the view's first run"
    assert view_rows(wsettings, pg_store, name, tmp_path) == truth(events, logic)
    for size in (40, 0, 1, 250):
        if size:
            events.write(size)
        job = refresh(pg_store, wsettings, nql)
        stats = job.statistics
        assert stats["refresh"] == "incremental" and "refresh_reason" not in stats
        assert stats["rows_read"] == size and stats["files_read"] == (1 if size else 0)
        assert view_rows(wsettings, pg_store, name, tmp_path) == truth(events, logic)


@pytest.mark.parametrize("name", ["proj", "agg"])
def test_an_overwritten_input_falls_back_to_full_and_says_why(
        name: str, events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    nql, logic = VIEWS[name]
    events.write(100)
    refresh(pg_store, wsettings, nql)
    events.write(30)
    events.write(50, mode="overwrite")
    events.write(5)
    job = refresh(pg_store, wsettings, nql)
    assert job.statistics["refresh"] == "full"
    assert "was overwritten" in job.statistics["refresh_reason"]
    assert job.statistics["rows_read"] == 55
    assert view_rows(wsettings, pg_store, name, tmp_path) == truth(events, logic)
    events.write(7)  # and incremental again afterwards
    job = refresh(pg_store, wsettings, nql)
    assert job.statistics["refresh"] == "incremental" and job.statistics["rows_read"] == 7
    assert view_rows(wsettings, pg_store, name, tmp_path) == truth(events, logic)


@pytest.mark.parametrize("name", ["proj", "agg"])
def test_a_requested_full_refresh_rebuilds_from_all_inputs(
        name: str, events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    nql, logic = VIEWS[name]
    events.write(100)
    refresh(pg_store, wsettings, nql)
    events.write(20)
    job = refresh(pg_store, wsettings, nql, full=True)
    assert job.statistics["refresh"] == "full"
    assert job.statistics["refresh_reason"] == "a full refresh was requested"
    assert job.statistics["rows_read"] == 120
    assert view_rows(wsettings, pg_store, name, tmp_path) == truth(events, logic)


def test_a_run_dying_in_its_publish_leaves_progress_and_reads_the_same_delta_again(
        events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    nql, logic = PROJECTION
    events.write(100)
    refresh(pg_store, wsettings, nql)
    before = progress(pg_store, "proj")
    events.write(60)

    def die(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed in the publish transaction")  # the process dies before COMMIT

    monkeypatch.setattr(execute, "record_progress", die)
    job_id = submit(pg_store, nql)
    with pytest.raises(SystemExit):
        run_job(pg_store, wsettings, job_id, executor="test")
    monkeypatch.undo()
    assert progress(pg_store, "proj") == before
    assert job_row(pg_store, job_id).state == JobState.PENDING  # handed back, runs again
    assert run_job(pg_store, wsettings, job_id, executor="test") == Outcome.COMPLETED
    job = job_row(pg_store, job_id)
    assert job.statistics["refresh"] == "incremental" and job.statistics["rows_read"] == 60
    assert view_rows(wsettings, pg_store, "proj", tmp_path) == truth(events, logic)
    assert progress(pg_store, "proj") != before


# Over a large delta this is minutes of work (a three-way cross join DuckDB cannot prune);
# over a small one, milliseconds. Same output column as COUNT_FAST.
COUNT_SLOW = (f'CREATE MATERIALIZED VIEW "cnt" AS SELECT count(*) AS n FROM {SRC} AS a '
              f'CROSS JOIN {SRC} AS b CROSS JOIN {SRC} AS c '
              "WHERE (a.v * 7 + b.v * 13 + c.v) % 1000 = 999")
COUNT_FAST = f'CREATE MATERIALIZED VIEW "cnt" AS SELECT count(*) AS n FROM {SRC} AS a'


def test_a_cancelled_incremental_refresh_moves_no_progress(
        events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    events.write(100)
    refresh(pg_store, wsettings, COUNT_FAST)
    before = progress(pg_store, "cnt")
    events.write(4000)
    job_id = submit(pg_store, COUNT_SLOW)
    thread = threading.Thread(target=lambda: run_job(pg_store, wsettings, job_id, executor="t"))
    thread.start()
    deadline = time.monotonic() + 20
    while job_row(pg_store, job_id).state != JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    with pg_store.unit_of_work() as session:
        request_cancellation(session, job_id, actor="user")
    thread.join(timeout=20)
    assert not thread.is_alive() and job_row(pg_store, job_id).state == JobState.CANCELLED
    assert progress(pg_store, "cnt") == before
    # The next run reads the same delta again: every input row counted exactly once.
    job = refresh(pg_store, wsettings, COUNT_FAST)
    assert job.statistics["rows_read"] == 4000
    assert sum(row[0] for row in view_rows(wsettings, pg_store, "cnt", tmp_path)) == 4100


def test_progress_is_per_view(events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    events.write(10)
    refresh(pg_store, wsettings, PROJECTION[0])
    events.write(5)
    job = refresh(pg_store, wsettings, FILTER[0])  # a second view starts from the beginning
    assert job.statistics["refresh"] == "full" and job.statistics["rows_read"] == 15
    assert uuid.UUID(str(job.id))


def test_a_merge_with_duplicate_matches_fails_readably_and_publishes_nothing(
        events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    # Not grouped: the first run inserts several rows per key (nothing to match yet); the
    # next run's rows then each match several view rows.
    nql = (f'CREATE MATERIALIZED VIEW "dup" AS SELECT k, v FROM {SRC} WHERE k IS NOT NULL '
           "MERGE ON target.k = source.k WHEN MATCHED THEN UPDATE SET v = source.v "
           "WHEN NOT MATCHED THEN INSERT (k, v) VALUES (source.k, source.v)")
    events.write(30)
    refresh(pg_store, wsettings, nql)
    rows, before = view_rows(wsettings, pg_store, "dup", tmp_path), progress(pg_store, "dup")
    assert len(rows) > 7
    events.write(5)
    job_id = submit(pg_store, nql)
    assert run_job(pg_store, wsettings, job_id, executor="test") == Outcome.FAILED
    job = job_row(pg_store, job_id)
    assert job.state == JobState.FAILED and job.result is None
    message = job.failures[0]["message"]
    assert message.startswith("MERGE: a row of the query (source) matches") and "Nothing was written" in message
    assert view_rows(wsettings, pg_store, "dup", tmp_path) == rows and progress(pg_store, "dup") == before


def test_a_run_records_the_views_expire_for_the_retention_duty(
        events: Events, pg_store: Store, wsettings: Settings) -> None:
    from shared.store.datasets import find_dataset_by_name
    events.write(3)
    refresh(pg_store, wsettings, PROJECTION[0].replace('"proj" AS', "\"proj\" EXPIRE='P30D' AS"))
    with pg_store.unit_of_work() as session:
        dataset = find_dataset_by_name(session, company_id=1, name="proj")
        assert dataset is not None and dataset.expire == "P30D"


def test_incremental_column_stats_equal_the_full_computation(
        events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    from shared.store.datasets import current_snapshot, find_dataset_by_name
    from tests.s3 import local_copies
    from worker.stats import compute_column_stats
    nql = PROJECTION[0]
    events.write(200)
    refresh(pg_store, wsettings, nql)
    for size in (30, 70):
        events.write(size)
        refresh(pg_store, wsettings, nql)
    with pg_store.unit_of_work() as session:
        dataset = find_dataset_by_name(session, company_id=1, name="proj")
        assert dataset is not None
        snapshot = current_snapshot(session, dataset)
        assert snapshot is not None and snapshot.column_stats
        stats, keys = snapshot.column_stats, list(snapshot.files)
    files = local_copies(wsettings, keys, tmp_path / "stats")
    import duckdb
    full = compute_column_stats(duckdb.connect(), files, [("k", "VARCHAR"), ("v2", "BIGINT")])
    for column in ("k", "v2"):
        for key in ("count", "nulls", "completeness", "min", "max"):
            assert stats[column][key] == full[column][key], (column, key)
    assert stats["v2"]["mean"] == pytest.approx(full["v2"]["mean"])
    assert stats["v2"]["standard_deviation"] == pytest.approx(full["v2"]["standard_deviation"])
    assert 0 < stats["k"]["approx_count_distinct"] <= full["k"]["approx_count_distinct"] + 1


def test_an_expired_input_falls_back_to_full_and_says_why(
        events: Events, pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    from datetime import timedelta

    from shared.store.datasets import get_dataset
    from shared.store.retention import expire_files
    from shared.store.types import utcnow
    nql, logic = PROJECTION
    events.write(40)
    refresh(pg_store, wsettings, nql)
    events.write(10)
    with pg_store.unit_of_work() as session:  # every file is older than "now + 1 day"
        assert expire_files(session, get_dataset(session, 500), cutoff=utcnow() + timedelta(days=1)) is not None
    events.batches = []
    events.write(3)
    job = refresh(pg_store, wsettings, nql)
    assert job.statistics["refresh"] == "full" and "was expired" in job.statistics["refresh_reason"]
    assert view_rows(wsettings, pg_store, "proj", tmp_path) == truth(events, logic)
