"""The invariant checks of the fault runs (bench/_faults/invariants.py): each check on
hand-made records, then `check_jobs` on a real store built with the real state-machine
operations, and a tampered store whose every kind of damage must be reported."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from bench._faults.invariants import (
    CheckReport,
    JobRecord,
    SnapshotRef,
    Step,
    check_jobs,
    check_record,
    check_records,
    orphan_outputs,
    snapshot_files_missing,
)
from shared.storage import Storage
from shared.store import Store
from shared.store.datasets import create_dataset, publish_snapshot
from shared.store.jobs import (
    NewJob,
    claim,
    complete,
    create_job,
    fail,
    failure_entry,
    finalize_cancel,
    request_cancellation,
    requeue,
)
from shared.store.migrate import upgrade
from shared.store.models import Job, JobTransition, Snapshot

MV, FORECAST = "materialize-view", "nql-forecast"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def steps(*moves: tuple[str | None, str, int]) -> tuple[Step, ...]:
    return tuple(Step(source, target, attempt, T0) for source, target, attempt in moves)


SUBMIT = (None, "pending", 0)
CLAIM1, CLAIM2 = ("pending", "running", 1), ("pending", "running", 2)


def record(*moves: tuple[str | None, str, int], state: str | None = None, type: str = MV,
           attempts: int | None = None, snapshots: tuple[SnapshotRef, ...] = (),
           result: dict | None = None) -> JobRecord:
    log = steps(*moves)
    claims = sum(1 for s in log if (s.from_state, s.to_state) == ("pending", "running"))
    return JobRecord(id=uuid.uuid4(), type=type, state=state or log[-1].to_state,
                     attempts=claims if attempts is None else attempts, result=result,
                     steps=log, snapshots=snapshots)


SNAP = SnapshotRef(id=42, dataset_id=9, files=("9/a.parquet",))


def completed_view(**overrides: object) -> JobRecord:
    fields = dict(snapshots=(SNAP,), result={"dataset_id": 9, "snapshot_id": 42, "recalculation_id": "r"})
    fields.update(overrides)
    return record(SUBMIT, CLAIM1, ("running", "completed", 1), **fields)  # type: ignore[arg-type]


# --- legal histories --------------------------------------------------------------------


@pytest.mark.parametrize("job", [
    pytest.param(completed_view(), id="completed view"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "completed", 1), type=FORECAST,
                        result={"rows": 1, "cost": 0}), id="completed forecast, no snapshot"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "pending", 1), CLAIM2, ("running", "completed", 2),
                        snapshots=(SNAP,), result={"dataset_id": 9, "snapshot_id": 42}), id="requeued once"),
    pytest.param(record(SUBMIT, ("pending", "pending_cancellation", 0),
                        ("pending_cancellation", "cancelled", 0)), id="cancelled while pending"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "pending_cancellation", 1),
                        ("pending_cancellation", "cancelled", 1)), id="cancelled while running"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "pending_cancellation", 1),
                        ("pending_cancellation", "completed", 1), snapshots=(SNAP,),
                        result={"dataset_id": 9, "snapshot_id": 42}), id="finished before the cancel"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "pending", 1), CLAIM2, ("running", "pending", 2),
                        ("pending", "running", 3), ("running", "failed", 3)), id="failed after 3 lost runs"),
])
def test_legal_histories_pass(job: JobRecord) -> None:
    assert check_record(job) == []


# --- each violation -----------------------------------------------------------------------


@pytest.mark.parametrize(("job", "expected"), [
    pytest.param(record(SUBMIT, CLAIM1), "not_terminal: state 'running' is not terminal", id="running"),
    pytest.param(record(SUBMIT), "not_terminal: state 'pending' is not terminal", id="pending"),
    pytest.param(record(SUBMIT, ("pending", "pending_cancellation", 0)), "not_terminal:", id="cancelling"),
    pytest.param(completed_view(snapshots=(SNAP, SnapshotRef(43, 9))), "snapshots: 2 snapshots",
                 id="two snapshots"),
    pytest.param(completed_view(snapshots=()), "snapshots: completed materialize-view without a snapshot",
                 id="completed view without snapshot"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "failed", 1), snapshots=(SNAP,)),
                 "snapshots: failed materialize-view job has 1 snapshot", id="failed with snapshot"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "completed", 1), type=FORECAST, snapshots=(SNAP,)),
                 "snapshots: completed nql-forecast job has 1 snapshot", id="forecast with snapshot"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "pending_cancellation", 1),
                        ("pending_cancellation", "cancelled", 1), snapshots=(SNAP,)),
                 "result: cancelled job has snapshot(s) [42]", id="cancelled with snapshot"),
    pytest.param(record(SUBMIT, ("pending", "completed", 0)), "log: step 1: illegal transition pending -> completed",
                 id="illegal step"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "completed", 1), ("completed", "pending", 1)),
                 "log: step 3: illegal transition completed -> pending", id="leaves a terminal state"),
    pytest.param(record(("pending", "running", 1), ("running", "failed", 1)),
                 "log: log starts pending -> running, not None -> pending", id="no submit step"),
    pytest.param(record(SUBMIT, CLAIM1, ("pending_cancellation", "cancelled", 1)),
                 "log: step 2: pending_cancellation -> cancelled does not follow the previous step's running",
                 id="gap in the log"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "failed", 1), state="completed"),
                 "log: log ends in failed, the row is completed", id="row disagrees with log"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "failed", 1), attempts=2),
                 "attempts: attempts = 2 but 1 pending -> running transition(s)", id="attempts too high"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "pending", 1), ("pending", "running", 3),
                        ("running", "failed", 3)), "attempts: claims carry attempts [1, 3], not 1..2",
                 id="claims skip an attempt"),
    pytest.param(record(SUBMIT, CLAIM1, ("running", "failed", 2)),
                 "attempts: step 2 (running -> failed) carries attempt 2 after 1 claim(s)", id="stale attempt stamp"),
    pytest.param(record(SUBMIT, ("pending", "bogus", 0), state="bogus"), "log: step 1: unknown state",
                 id="unknown state"),
    pytest.param(completed_view(result={"dataset_id": 9, "snapshot_id": 41}),
                 "result: result.snapshot_id 41 is not its snapshot 42", id="result names another snapshot"),
    pytest.param(completed_view(result={"dataset_id": 8, "snapshot_id": 42}),
                 "result: result.dataset_id 8 is not its snapshot's dataset 9", id="result names another dataset"),
    pytest.param(completed_view(result=None), "result: result.snapshot_id None", id="no result"),
])
def test_each_violation_is_reported(job: JobRecord, expected: str) -> None:
    problems = check_record(job)
    assert any(p.startswith(expected) for p in problems), problems


def test_an_empty_log_is_a_violation() -> None:
    job = JobRecord(id=uuid.uuid4(), type=MV, state="failed", attempts=0, result=None, steps=(), snapshots=())
    assert "log: empty transition log" in check_record(job)


def test_the_report_sums_up_lost_jobs_states_attempts_and_mismatches() -> None:
    good, requeued = completed_view(), record(SUBMIT, CLAIM1, ("running", "pending", 1), CLAIM2,
                                              ("running", "failed", 2))
    mismatch = record(SUBMIT, CLAIM1, ("running", "failed", 1), state="completed", snapshots=(SNAP,),
                      result={"dataset_id": 9, "snapshot_id": 42})
    twice = completed_view(snapshots=(SNAP, SnapshotRef(43, 9)))
    lost = uuid.uuid4()
    report = check_records({good.id: good, requeued.id: requeued, mismatch.id: mismatch, twice.id: twice,
                            lost: None})

    assert not report.ok
    assert report.lost == [lost]
    assert report.by_state() == {"completed": 3, "failed": 1}
    assert report.attempts() == {1: 3, 2: 1}
    assert report.max_snapshots() == 2 and report.with_two_snapshots() == [twice.id]
    assert report.log_mismatches() == [mismatch.id]
    assert set(report.violations) == {mismatch.id, twice.id}
    assert report.violation_kinds() == {"log": 1, "snapshots": 1}
    described = "\n".join(report.describe())
    assert f"lost (no row): {lost}" in described and str(mismatch.id) in described
    assert check_records({good.id: good, requeued.id: requeued}).ok


# --- on a real store ----------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    upgrade(url)
    store = Store.from_url(url)
    yield store
    store.dispose()


def _submit(store: Store, job_type: str = MV) -> uuid.UUID:
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=1, user_id=1, type=job_type, nql="CREATE ..."))
        return job.id


def _complete_view(store: Store, job_id: uuid.UUID, attempt: int, dataset: int) -> int:
    with store.unit_of_work() as session:
        target = create_dataset(session, company_id=1, name=f"d{dataset}", schema=[["x", "BIGINT"]],
                                dataset_id=dataset)
        snapshot = publish_snapshot(session, dataset=target, job_id=job_id, write_mode="overwrite",
                                    added_files=[f"{dataset}/{job_id}-{attempt}-0.parquet"], added_rows=1,
                                    added_bytes=1)
        assert complete(session, job_id, attempt=attempt, executor="w",
                        result={"dataset_id": dataset, "snapshot_id": snapshot.id}, statistics={})
        return int(snapshot.id)


def _history(store: Store) -> dict[str, uuid.UUID]:
    """One job per kind of history, made with the real state-machine operations."""
    ids = {name: _submit(store) for name in ("done", "requeued", "cancel_pending", "cancel_running",
                                            "failed", "raced")}
    ids["forecast"] = _submit(store, FORECAST)
    with store.unit_of_work() as session:
        for name in ("done", "requeued", "cancel_running", "failed", "raced", "forecast"):
            assert claim(session, ids[name], executor="w", lease_seconds=5) == 1
        assert requeue(session, ids["requeued"], attempt=1, actor="reaper", failure=failure_entry("lost"))
        assert claim(session, ids["requeued"], executor="w2", lease_seconds=5) == 2
        assert request_cancellation(session, ids["cancel_pending"], actor="api")
        assert finalize_cancel(session, ids["cancel_pending"], actor="dispatcher")
        assert request_cancellation(session, ids["cancel_running"], actor="api")
        assert finalize_cancel(session, ids["cancel_running"], actor="w", attempt=1)
        assert fail(session, ids["failed"], attempt=1, actor="w", failure=failure_entry("boom"))
        assert request_cancellation(session, ids["raced"], actor="api")
        assert complete(session, ids["forecast"], attempt=1, executor="w", result={"rows": 1}, statistics={})
    _complete_view(store, ids["done"], 1, 101)
    _complete_view(store, ids["requeued"], 2, 102)
    _complete_view(store, ids["raced"], 1, 103)  # the work finished before the cancel took effect
    return ids


def test_a_store_built_by_the_state_machine_passes(sqlite_store: Store) -> None:
    ids = _history(sqlite_store)
    report = check_jobs(sqlite_store, list(ids.values()))
    assert report.ok, report.describe()
    assert report.by_state() == {"completed": 4, "cancelled": 2, "failed": 1}
    assert report.attempts() == {0: 1, 1: 5, 2: 1}
    assert report.max_snapshots() == 1
    assert [s.to_state for s in report.records[ids["raced"]].steps] == [
        "pending", "running", "pending_cancellation", "completed"]


def test_damage_to_a_store_is_reported(sqlite_store: Store) -> None:
    ids = _history(sqlite_store)
    unfinished, lost = _submit(sqlite_store), uuid.uuid4()
    with sqlite_store.unit_of_work() as session:
        # a row that disagrees with its log, attempts that disagree with the claims
        session.execute(update(Job).where(Job.id == ids["failed"]).values(state="completed"))
        session.execute(update(Job).where(Job.id == ids["requeued"]).values(attempts=3))
        # a log row nobody wrote through the state machine
        session.add(JobTransition(job_id=ids["cancel_pending"], from_state="cancelled", to_state="running",
                                  attempt=1, at=T0, actor="x"))
        # a snapshot for a cancelled job, and a completed view whose result names another snapshot
        session.add(Snapshot(id=999, dataset_id=101, job_id=ids["cancel_running"], operation="append",
                             files=[], added_files=[]))
        session.execute(update(Job).where(Job.id == ids["done"]).values(
            result={"dataset_id": 101, "snapshot_id": 1}))
    report = check_jobs(sqlite_store, [*ids.values(), unfinished, lost])

    assert report.lost == [lost]
    assert report.not_terminal() == [unfinished]
    assert set(report.log_mismatches()) == {ids["failed"], ids["requeued"], ids["cancel_pending"]}
    problems = {name: " | ".join(report.violations.get(job_id, [])) for name, job_id in ids.items()}
    assert "log ends in failed, the row is completed" in problems["failed"]
    assert "attempts = 3 but 2 pending -> running" in problems["requeued"]
    assert "illegal transition cancelled -> running" in problems["cancel_pending"]
    assert "cancelled job has snapshot(s) [999]" in problems["cancel_running"]
    assert "result.snapshot_id 1 is not its snapshot" in problems["done"]
    assert problems["raced"] == problems["forecast"] == ""


def test_snapshot_objects_in_storage(tmp_path: Path) -> None:
    storage = Storage.local(tmp_path / "datasets")
    job, fenced = completed_view(), uuid.uuid4()
    report = CheckReport({job.id: job})
    assert snapshot_files_missing(storage, report) == ["9/a.parquet"]
    storage.put_bytes("9/a.parquet", b"x")
    assert snapshot_files_missing(storage, report) == []

    # an uploaded object of the job's that no snapshot lists: a run killed between upload and publish
    storage.put_bytes(f"9/{job.id}-1-0.parquet", b"x")
    storage.put_bytes(f"9/{fenced}-1-0.parquet", b"x")  # not one of ours: not counted
    assert orphan_outputs(storage, report) == [f"9/{job.id}-1-0.parquet"]
    assert orphan_outputs(Storage.local(tmp_path / "none"), report) == []