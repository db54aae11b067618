"""The reaper on the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

from scheduler.reaper import Reaper
from shared.config import Settings
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import claim, failure_entry, heartbeat, request_cancellation, requeue, transitions_of
from tests.scheduler.helpers import Clock, get, new_job


def reaper(store: Store, clock: Clock, *, max_attempts: int = 3) -> Reaper:
    return Reaper(settings=Settings(max_attempts=max_attempts), store=store,
                  actor="reaper-test", clock=clock)


def start_run(store: Store, job_id: uuid.UUID, executor: str, lease: float = 5) -> int:
    with store.unit_of_work() as session:
        attempt = claim(session, job_id, executor=executor, lease_seconds=lease)
    assert attempt is not None
    return attempt


def test_expired_lease_is_requeued_with_a_failure_entry(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store)
    start_run(store, job_id, "worker-a")
    sweeper = reaper(store, clock)

    assert sweeper.reap().requeued == []              # lease still valid
    clock.advance(6)
    result = sweeper.reap()

    assert result.requeued == [job_id]
    job = get(store, job_id)
    assert job.state == JobState.PENDING and job.attempts == 1
    assert job.published_at is None and job.lease_expires_at is None and job.executor is None
    assert job.failures[-1]["message"] == "worker lost during attempt 1 (executor worker-a)"
    with store.unit_of_work() as session:
        last = transitions_of(session, job_id)[-1]
    assert (last.from_state, last.to_state, last.attempt, last.actor) == (
        "running", "pending", 1, "reaper-test")
    assert last.reason == "worker lost during attempt 1 (executor worker-a)"


def test_worker_lost_on_every_attempt_fails_after_the_cap(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store)
    sweeper = reaper(store, clock, max_attempts=3)
    outcomes = []
    for attempt in (1, 2, 3):
        assert start_run(store, job_id, f"w{attempt}") == attempt
        clock.advance(10)
        result = sweeper.reap()
        outcomes.append("requeued" if result.requeued else "failed" if result.failed else "-")
        clock = Clock()  # the next claim takes a fresh lease from the real now
        sweeper.clock = clock

    assert outcomes == ["requeued", "requeued", "failed"]
    job = get(store, job_id)
    assert job.state == JobState.FAILED and job.attempts == 3 and job.ended_at is not None
    assert [f["message"].split(";")[0] for f in job.failures] == [
        f"worker lost during attempt {n} (executor w{n})" for n in (1, 2, 3)]
    assert "lost on every attempt (3 of at most 3)" in job.failures[-1]["message"]
    with store.unit_of_work() as session:
        moves = [(t.from_state, t.to_state) for t in transitions_of(session, job_id)]
    assert moves.count(("running", "pending")) == 2 and moves[-1] == ("running", "failed")


def test_infrastructure_retries_do_not_count_as_lost_workers(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store, retry_limit=5)
    for attempt in (1, 2):  # two runs ended by an infrastructure error, retried
        start_run(store, job_id, "w")
        with store.unit_of_work() as session:
            requeue(session, job_id, attempt=attempt, actor="w", infra_retry=True,
                    failure=failure_entry("disk full"))
    start_run(store, job_id, "w")  # attempt 3: its worker dies
    clock = Clock()
    clock.advance(10)
    assert reaper(store, clock, max_attempts=3).reap().requeued == [job_id]


def test_heartbeat_between_read_and_write_keeps_the_job(store: Store) -> None:
    """The compare-and-set includes lease_expires_at < now: a worker that extends its
    lease after the reaper read the row keeps running its job."""
    clock = Clock()
    job_id = new_job(store)
    attempt = start_run(store, job_id, "slow-worker", lease=2)
    clock.advance(3)
    sweeper = reaper(store, clock)
    [expired] = sweeper.find_expired(clock.now)

    with store.unit_of_work() as session:  # the heartbeat lands in between
        assert heartbeat(session, job_id, attempt=attempt, lease_seconds=30) == JobState.RUNNING

    assert sweeper.reap_one(expired, clock.now) is None
    job = get(store, job_id)
    assert job.state == JobState.RUNNING and job.failures == []


def test_heartbeat_extended_lease_is_not_reaped(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store)
    attempt = start_run(store, job_id, "w", lease=2)
    with store.unit_of_work() as session:
        heartbeat(session, job_id, attempt=attempt, lease_seconds=30)
    clock.advance(3)  # past the first lease, within the extended one
    assert reaper(store, clock).reap().requeued == []
    assert get(store, job_id).state == JobState.RUNNING


def test_pending_cancellation_with_a_lost_worker_is_finalized(store: Store) -> None:
    clock = Clock()
    job_id = new_job(store)
    start_run(store, job_id, "w")
    with store.unit_of_work() as session:
        request_cancellation(session, job_id, actor="user")
    clock.advance(10)

    result = reaper(store, clock).reap()

    assert result.cancelled == [job_id]
    job = get(store, job_id)
    assert job.state == JobState.CANCELLED and job.lease_expires_at is None
    with store.unit_of_work() as session:
        last = transitions_of(session, job_id)[-1]
    assert last.to_state == "cancelled" and "worker lost" in (last.reason or "")


def test_finished_runs_are_left_alone(store: Store) -> None:
    from shared.store.jobs import complete

    clock = Clock()
    job_id = new_job(store)
    attempt = start_run(store, job_id, "w")
    with store.unit_of_work() as session:
        complete(session, job_id, attempt=attempt, executor="w", result={}, statistics={})
    clock.advance(60)
    result = reaper(store, clock).reap()
    assert (result.requeued, result.failed, result.cancelled) == ([], [], [])
    assert get(store, job_id).state == JobState.COMPLETED


def test_no_reaping_for_a_lease_after_a_store_outage(store: Store) -> None:
    """Leases that expired while nobody could reach the store are not taken as lost workers."""
    import pytest
    from sqlalchemy.exc import DBAPIError

    from shared.store.types import utcnow

    clock = Clock()
    job_id = new_job(store)
    start_run(store, job_id, "worker-a")  # lease 5 s
    sweeper = reaper(store, clock)
    sweeper.settings = Settings(max_attempts=3, lease_seconds=5)

    # The store goes away (a real connection to a closed port, not a mock)...
    unreachable = Store.from_url("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=1")
    sweeper.store = unreachable
    clock.advance(10)
    with pytest.raises(DBAPIError):
        sweeper.reap()
    unreachable.dispose()

    # ...and comes back: the lease has expired, but the worker had no chance to renew it.
    sweeper.store = store
    assert sweeper.reap().requeued == []
    clock.advance(3)
    assert sweeper.reap().requeued == []
    with store.unit_of_work() as session:  # the worker renews once the store is back
        # (a 5 s lease as seen from the reaper's clock, which runs ahead of the real one)
        ahead = (clock.now - utcnow()).total_seconds()
        assert heartbeat(session, job_id, attempt=1, lease_seconds=ahead + 5) is JobState.RUNNING
    clock.advance(2.5)  # a full lease after the outage: reaping resumes, the job is alive
    assert sweeper.reap().requeued == []
    clock.advance(10)  # and a lease that then really expires is reaped
    assert sweeper.reap().requeued == [job_id]
