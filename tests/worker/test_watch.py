"""The watcher thread on its own: what each state means, heartbeats, the deadline."""

from __future__ import annotations

import threading
import time
from typing import Any

import duckdb
import pytest

from shared.config import Settings
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import claim, request_cancellation
from worker.watch import RunStopped, StopReason, Watcher, reason_for

from .conftest import job_row, submit

SLOW = "SELECT count(*) FROM range(100000000) a, range(1000) b WHERE a.range + b.range < 0"


@pytest.mark.parametrize(("state", "reason"), [
    (JobState.RUNNING, None),
    (JobState.PENDING_CANCELLATION, StopReason.CANCELLED),
    (JobState.CANCELLED, StopReason.CANCELLED),
    (JobState.PENDING, StopReason.FENCED),  # the reaper requeued it
    (JobState.FAILED, StopReason.FENCED),
    (None, StopReason.FENCED),  # another attempt owns it
])
def test_reason_for(state: JobState | None, reason: StopReason | None) -> None:
    assert reason_for(state) == reason


def _claimed(store: Store) -> Any:
    job_id = submit(store, 'CREATE MATERIALIZED VIEW "w" AS SELECT 1 AS n')
    with store.unit_of_work() as session:
        assert claim(session, job_id, executor="t", lease_seconds=2) == 1
    return job_id


@pytest.mark.postgres
def test_heartbeats_extend_the_lease(pg_store: Store, wsettings: Settings) -> None:
    job_id = _claimed(pg_store)
    before = job_row(pg_store, job_id).lease_expires_at
    with Watcher(pg_store, job_id, 1, deadline=time.monotonic() + 60, poll_seconds=0.05,
                 heartbeat_seconds=0.2, lease_seconds=30):
        time.sleep(0.5)
    after = job_row(pg_store, job_id).lease_expires_at
    assert before and after and (after - before).total_seconds() > 25


@pytest.mark.postgres
def test_a_cancellation_interrupts_the_attached_query(pg_store: Store, wsettings: Settings) -> None:
    job_id = _claimed(pg_store)
    con = duckdb.connect()
    with Watcher(pg_store, job_id, 1, deadline=time.monotonic() + 60, poll_seconds=0.05,
                 heartbeat_seconds=1, lease_seconds=30) as watcher:
        watcher.attach(con)
        threading.Timer(0.3, lambda: _cancel(pg_store, job_id)).start()
        started = time.monotonic()
        with pytest.raises(duckdb.InterruptException):
            con.execute(SLOW).fetchall()
        assert time.monotonic() - started < 2
        assert watcher.reason == StopReason.CANCELLED
        with pytest.raises(RunStopped):
            watcher.check()


def _cancel(store: Store, job_id: Any) -> None:
    with store.unit_of_work() as session:
        request_cancellation(session, job_id, actor="user")


@pytest.mark.postgres
def test_the_deadline_interrupts_and_a_stuck_run_is_recorded(pg_store: Store, wsettings: Settings) -> None:
    job_id = _claimed(pg_store)
    stuck = threading.Event()
    con = duckdb.connect()
    with Watcher(pg_store, job_id, 1, deadline=time.monotonic() + 0.3, poll_seconds=0.05,
                 heartbeat_seconds=1, lease_seconds=30, on_stuck=stuck.set,
                 stuck_grace=0.2) as watcher:
        watcher.attach(con)
        with pytest.raises(duckdb.InterruptException):
            con.execute(SLOW).fetchall()
        assert watcher.reason == StopReason.TIMED_OUT
        assert stuck.wait(2)  # nobody ended the run: the watcher records the timeout itself
