"""`run_job` in-process on real PostgreSQL: materialize, snapshots, fencing, failures,
cancellation and time limits, without Celery."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.config import Settings
from shared.sample_data import SEED_VIEW_NQL, hand_written_seed_query
from shared.states import JobState
from shared.storage import Storage
from shared.store import Store
from shared.store.datasets import get_dataset, snapshot_of_job
from shared.store.jobs import cancel, claim, complete, heartbeat, request_cancellation, requeue
from shared.store.models import Dataset, Snapshot
from shared.store.schedules import get_schedule
from shared.store.types import utcnow
from tests.s3 import local_copies, object_keys
from worker.execute import run_job
from worker.lifecycle import Outcome
from worker.materialize import Staged, Target, publish
from worker.watch import RunStopped

from .conftest import job_row, run, submit
from .queries import BAD_COLUMN_VIEW, CONVERSION_VIEW, HOURS_OVERWRITE_VIEW, HOURS_VIEW, SLOW_VIEW

pytestmark = pytest.mark.postgres


def _snapshot(store: Store, job_id: uuid.UUID) -> Snapshot | None:
    with store.unit_of_work() as session:
        snapshot = snapshot_of_job(session, job_id)
        if snapshot is not None:
            session.expunge(snapshot)
        return snapshot


def _dataset(store: Store, dataset_id: int) -> Dataset:
    with store.unit_of_work() as session:
        dataset = get_dataset(session, dataset_id)
        session.expunge(dataset)
        return dataset


def _rows(files: list[Path], order: str) -> list[tuple[Any, ...]]:
    listed = ", ".join(f"'{f}'" for f in files)
    return duckdb.sql(f"SELECT * FROM read_parquet([{listed}]) ORDER BY {order}").fetchall()


def test_seed_view_matches_the_hand_written_query(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], seed_file: Path,
        no_leftovers: None, tmp_path: Path) -> None:
    outcome, job = run(pg_store, wsettings, SEED_VIEW_NQL)
    assert outcome == Outcome.COMPLETED, job.failures
    assert job.state == JobState.COMPLETED and job.attempts == 1
    snapshot = _snapshot(pg_store, job.id)
    assert snapshot is not None
    assert job.result == {"dataset_id": snapshot.dataset_id, "snapshot_id": snapshot.id,
                          "recalculation_id": str(snapshot.recalculation_id)}
    assert job.dataset_id == snapshot.dataset_id and job.compiled_sql
    files = local_copies(wsettings, snapshot.files, tmp_path)
    got = _rows(files, "ALL")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW seed AS SELECT * FROM '{seed_file}'")
    expected = con.execute(f"SELECT * FROM ({hand_written_seed_query('seed')}) ORDER BY ALL").fetchall()
    assert got == expected and len(got) > 100
    stats = job.statistics
    assert stats["records_inserted"] == len(got) == snapshot.row_count
    assert stats["result_size"] == snapshot.bytes == files[0].stat().st_size
    assert stats["duration_ms"] >= 0 and stats["queued_ms"] >= 0
    assert snapshot.column_stats is not None
    mobile = snapshot.column_stats["mobile_id"]
    assert mobile["count"] == len(got) and mobile["nulls"] == 0 and mobile["position"] == 0
    assert mobile["approx_count_distinct"] > 0 and mobile["min"] <= mobile["max"]
    hour = snapshot.column_stats["hour"]
    assert 0 <= hour["min"] <= hour["mean"] <= hour["max"] <= 23 and hour["standard_deviation"] > 0
    target = _dataset(pg_store, snapshot.dataset_id)
    assert target.name == "sampleNQL" and target.view_nql == SEED_VIEW_NQL
    with pg_store.unit_of_work() as session:  # stored with the completion: @once is "pending"
        schedule = get_schedule(session, target.id)
        assert schedule is not None and schedule.status == "pending" and schedule.nql == SEED_VIEW_NQL
    assert target.schema == [["mobile_id", "VARCHAR"], ["day", "DATE"], ["hour", "INTEGER"],
                             ["latitude", "DOUBLE"], ["longitude", "DOUBLE"]]


def test_append_adds_files_and_overwrite_replaces_them(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], no_leftovers: None) -> None:
    _, first = run(pg_store, wsettings, HOURS_VIEW, stats_enabled=False)
    _, second = run(pg_store, wsettings, HOURS_VIEW, stats_enabled=False)
    one, two = _snapshot(pg_store, first.id), _snapshot(pg_store, second.id)
    assert one and two and one.column_stats is None
    assert two.parent_snapshot_id == one.id and two.operation == "append"
    assert two.files == [*one.files, *two.added_files] and len(two.files) == 2
    assert two.row_count == 2 * one.row_count and two.added_rows == one.row_count > 0
    _, third = run(pg_store, wsettings, HOURS_OVERWRITE_VIEW)
    three = _snapshot(pg_store, third.id)
    assert three and three.operation == "overwrite" and three.files == three.added_files
    assert three.row_count == one.row_count and three.column_stats is not None
    assert _dataset(pg_store, three.dataset_id).current_snapshot_id == three.id


def test_append_with_other_columns_is_a_user_error(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    run(pg_store, wsettings, HOURS_VIEW)
    other = HOURS_VIEW.replace('AS h,', 'AS hour_of_day,')
    outcome, job = run(pg_store, wsettings, other)
    assert outcome == Outcome.FAILED
    assert "do not match" in job.failures[0]["message"]
    assert job.failures[0]["value"]["type"] == "SchemaMismatch"


def test_a_stale_attempt_cannot_complete_or_publish(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], tmp_path: Path) -> None:
    job_id = submit(pg_store, HOURS_VIEW)
    with pg_store.unit_of_work() as session:
        stale = claim(session, job_id, executor="zombie", lease_seconds=1)
        assert stale == 1
        requeue(session, job_id, attempt=1, actor="reaper",
                failure={"message": "lease expired", "timestamp": "", "value": {}})
        assert claim(session, job_id, executor="new", lease_seconds=30) == 2
    with pg_store.unit_of_work() as session:
        assert heartbeat(session, job_id, attempt=1, lease_seconds=30) is None
        assert not complete(session, job_id, attempt=1, executor="zombie", result={}, statistics={})
    staged_file = tmp_path / "zombie.parquet"
    staged_file.write_bytes(b"not really parquet")
    storage = Storage.from_settings(wsettings)
    storage.put_file("6402/zombie.parquet", staged_file)
    with pytest.raises(RunStopped):
        publish(pg_store, job_id=job_id, attempt=1, executor="zombie",
                target=Target(dataset_id=6402, write_mode="append", columns=()),
                files=["6402/zombie.parquet"], staged=Staged((staged_file,), 1, 1),
                storage=storage, compiled_sql="SELECT 1", stats=None, statistics=dict)
    assert _snapshot(pg_store, job_id) is None
    assert "6402/zombie.parquet" not in object_keys(wsettings)
    assert job_row(pg_store, job_id).state == JobState.RUNNING  # attempt 2 still owns it


def test_concurrent_deliveries_run_the_job_once(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    job_id = submit(pg_store, HOURS_VIEW)
    outcomes: list[Outcome] = []
    threads = [threading.Thread(target=lambda: outcomes.append(
        run_job(pg_store, wsettings, job_id, executor="t"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted([Outcome.COMPLETED, Outcome.SKIPPED, Outcome.SKIPPED])
    job = job_row(pg_store, job_id)
    assert job.attempts == 1 and job.state == JobState.COMPLETED
    assert _snapshot(pg_store, job_id) is not None


@pytest.mark.parametrize(("nql", "message", "kind"), [
    (BAD_COLUMN_VIEW, "nope", "ColumnNotFound"),
    (CONVERSION_VIEW, "Could not convert string", "ConversionException"),
    ('CREATE MATERIALIZED VIEW "x" AS SELECT "a" FROM company_data."999"', "does not exist",
     "DatasetNotFound"),
])
def test_user_errors_fail_at_once_with_a_readable_message(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], nql: str, message: str,
        kind: str, no_leftovers: None) -> None:
    outcome, job = run(pg_store, wsettings, nql, retry_limit=3)
    assert outcome == Outcome.FAILED and job.state == JobState.FAILED and job.attempts == 1
    [failure] = job.failures
    assert message in failure["message"] and "Error:" not in failure["message"]
    assert failure["value"]["type"] == kind and failure["value"]["kind"] == "user"
    assert _snapshot(pg_store, job.id) is None


def test_a_missing_file_is_retried_within_retry_limit_then_fails(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    Storage.from_settings(wsettings).delete(seed["files"])
    outcome, job = run(pg_store, wsettings, HOURS_VIEW, retry_limit=1)
    assert outcome == Outcome.REQUEUED
    assert job.state == JobState.PENDING and job.infra_retries == 1
    assert job.run_after is not None and job.failures[0]["value"]["kind"] == "infra"
    assert "no such object" in job.failures[0]["message"]
    assert str(wsettings.data_dir) not in job.failures[0]["message"]  # no host paths shown
    while job_row(pg_store, job.id).run_after > utcnow():  # type: ignore[operator]
        time.sleep(0.01)
    assert run_job(pg_store, wsettings, job.id, executor="t") == Outcome.FAILED
    job = job_row(pg_store, job.id)
    assert job.state == JobState.FAILED and job.attempts == 2 and len(job.failures) == 2
    assert job.failures[1]["message"].endswith("(failed after 1 retries)")


def test_a_retry_that_is_not_due_yet_is_not_started(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    Storage.from_settings(wsettings).delete(seed["files"])
    wsettings = wsettings.model_copy(update={"retry_backoff_seconds": 60})
    _, job = run(pg_store, wsettings, HOURS_VIEW, retry_limit=2)
    assert run_job(pg_store, wsettings, job.id, executor="t") == Outcome.SKIPPED
    assert job_row(pg_store, job.id).attempts == 1


def test_time_limit_fails_the_job(pg_store: Store, wsettings: Settings, seed: dict[str, Any],
                                  no_leftovers: None) -> None:
    wsettings = wsettings.model_copy(update={"job_timeout_seconds": 1})
    started = time.monotonic()
    outcome, job = run(pg_store, wsettings, SLOW_VIEW, retry_limit=2)
    assert time.monotonic() - started < 4
    assert outcome == Outcome.FAILED and job.failures[0]["message"] == "timed out after 1 s"
    assert _snapshot(pg_store, job.id) is None


def _run_in_thread(store: Store, settings: Settings, job_id: uuid.UUID) -> tuple[threading.Thread, list[Outcome]]:
    outcomes: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(
        run_job(store, settings, job_id, executor="t")))
    thread.start()
    return thread, outcomes


@pytest.mark.parametrize("how", ["request", "kill"])
def test_cancelling_a_running_job_interrupts_it(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], how: str,
        no_leftovers: None) -> None:
    job_id = submit(pg_store, SLOW_VIEW)
    thread, outcomes = _run_in_thread(pg_store, wsettings, job_id)
    time.sleep(1.0)
    assert job_row(pg_store, job_id).state == JobState.RUNNING
    with pg_store.unit_of_work() as session:
        (request_cancellation if how == "request" else cancel)(session, job_id, actor="user")
    asked = time.monotonic()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - asked < 1.0
    assert outcomes == [Outcome.CANCELLED]
    job = job_row(pg_store, job_id)
    assert job.state == JobState.CANCELLED and job.failures == []
    assert _snapshot(pg_store, job_id) is None


def test_a_job_cancelled_while_queued_never_starts(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    job_id = submit(pg_store, HOURS_VIEW)
    with pg_store.unit_of_work() as session:
        request_cancellation(session, job_id, actor="user")
    assert run_job(pg_store, wsettings, job_id, executor="t") == Outcome.SKIPPED
    job = job_row(pg_store, job_id)
    assert job.state == JobState.CANCELLED and job.attempts == 0 and job.started_at is None


def test_budget_exceeded_fails_before_writing(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    with pg_store.unit_of_work() as session:
        get_dataset(session, 6402).price_micro_cents_per_row = 10_000_000  # 0.10 USD a row
    outcome, job = run(pg_store, wsettings, HOURS_VIEW + " BUDGET 5 USD")
    assert outcome == Outcome.FAILED and job.failures[0]["value"]["type"] == "BudgetExceeded"
    assert "budget of 5 USD" in job.failures[0]["message"]
    assert _snapshot(pg_store, job.id) is None
    assert not object_keys(wsettings, f"{job.dataset_id}/{job.id}")
    outcome, job = run(pg_store, wsettings, HOURS_VIEW + " BUDGET 1000000 USD")
    assert outcome == Outcome.COMPLETED


def test_statistics_of_a_snapshot_without_parent_come_from_the_jobs_own_database(
        pg_store: Store, wsettings: Settings, seed: dict[str, Any], no_leftovers: None,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.execute
    from worker.stats import compute_column_stats

    def second_database(*_: Any, **__: Any) -> None:
        raise AssertionError("a second DuckDB database was opened for the statistics")

    def expected_stats(job_id: uuid.UUID) -> tuple[Snapshot, dict[str, Any]]:
        snapshot = _snapshot(pg_store, job_id)
        assert snapshot is not None
        files = local_copies(wsettings, snapshot.files, tmp_path / str(job_id))
        columns = [(str(n), str(t)) for n, t in _dataset(pg_store, snapshot.dataset_id).schema]
        return snapshot, compute_column_stats(duckdb.connect(), files, columns)

    with monkeypatch.context() as patched:
        patched.setattr(worker.execute, "trusted_connection", second_database)
        _, first = run(pg_store, wsettings, HOURS_VIEW)  # append mode, but the first snapshot
        _, second = run(pg_store, wsettings, HOURS_OVERWRITE_VIEW)
    for job in (first, second):
        assert job.state == JobState.COMPLETED, job.failures
        snapshot, expected = expected_stats(job.id)
        assert snapshot.column_stats == expected and expected["h"]["count"] == snapshot.row_count > 0
    # An append on top of a parent still describes the whole snapshot, old files and new.
    _, third = run(pg_store, wsettings, HOURS_VIEW)
    snapshot, expected = expected_stats(third.id)
    assert len(snapshot.files) == 2 and snapshot.column_stats == expected
    assert expected["h"]["count"] == snapshot.row_count == 2 * _snapshot(pg_store, second.id).row_count  # type: ignore[union-attr]
