"""Every legal and illegal transition, table-driven, through the real store operations."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from shared.states import TERMINAL_STATES, TRANSITIONS, JobState, is_allowed, sources_of
from shared.store import Store
from shared.store import jobs as ops
from shared.store.models import Job
from tests.store.helpers import force_state, new_job, state_of

S = JobState
FAILURE = ops.failure_entry("boom")

# operation -> (callable, {source state: expected state after}); absent source = no-op.
Operation = Callable[[Session, uuid.UUID], Any]
OPERATIONS: dict[str, tuple[Operation, dict[JobState, JobState]]] = {
    "claim": (lambda s, j: ops.claim(s, j, executor="w", lease_seconds=30),
              {S.PENDING: S.RUNNING}),
    "complete": (lambda s, j: ops.complete(s, j, attempt=1, executor="w", result={}, statistics={}),
                 {S.RUNNING: S.COMPLETED, S.PENDING_CANCELLATION: S.COMPLETED}),
    "fail": (lambda s, j: ops.fail(s, j, attempt=1, actor="w", failure=FAILURE),
             {S.RUNNING: S.FAILED}),
    "requeue": (lambda s, j: ops.requeue(s, j, attempt=1, actor="reaper", failure=FAILURE),
                {S.RUNNING: S.PENDING}),
    "request_cancellation": (lambda s, j: ops.request_cancellation(s, j, actor="u"),
                             {S.PENDING: S.PENDING_CANCELLATION,
                              S.RUNNING: S.PENDING_CANCELLATION}),
    "finalize_cancel": (lambda s, j: ops.finalize_cancel(s, j, actor="w"),
                        {S.PENDING_CANCELLATION: S.CANCELLED}),
    "cancel": (lambda s, j: ops.cancel(s, j, actor="u"),
               {S.PENDING: S.CANCELLED, S.RUNNING: S.CANCELLED,
                S.PENDING_CANCELLATION: S.CANCELLED}),
}

CASES = [(name, source) for name in OPERATIONS for source in JobState]


def test_table_matches_design() -> None:
    assert TRANSITIONS[S.PENDING] == {S.RUNNING, S.PENDING_CANCELLATION}
    assert TRANSITIONS[S.RUNNING] == {S.COMPLETED, S.FAILED, S.PENDING_CANCELLATION, S.PENDING}
    assert TRANSITIONS[S.PENDING_CANCELLATION] == {S.CANCELLED, S.COMPLETED}
    for terminal in TERMINAL_STATES:
        assert TRANSITIONS[terminal] == frozenset()
    assert sources_of(S.CANCELLED) == (S.PENDING_CANCELLATION,)


@pytest.mark.parametrize(("operation", "source"), CASES)
def test_operation_from_every_state(store: Store, operation: str, source: JobState) -> None:
    run, moves = OPERATIONS[operation]
    job_id = new_job(store)
    force_state(store, job_id, source, attempts=0 if source is S.PENDING else 1)
    with store.unit_of_work() as session:
        run(session, job_id)
    expected = moves.get(source, source)
    assert state_of(store, job_id) is expected
    with store.unit_of_work() as session:
        log = ops.transitions_of(session, job_id)
        job = session.get_one(Job, job_id)
        # Every logged step is legal, and the log ends where the row is.
        for step in log[1:]:
            assert is_allowed(S(step.from_state), S(step.to_state))
        if expected is not source:
            assert log[-1].to_state == expected.value
            assert len(log) >= 2
        else:
            assert len(log) == 1  # only the submission
        assert (job.ended_at is not None) == (expected in TERMINAL_STATES and expected is not source)


def test_illegal_transition_is_refused_before_sql(store: Store) -> None:
    job_id = new_job(store)
    with store.unit_of_work() as session, pytest.raises(ValueError, match="illegal"):
        ops._transition(session, job_id, S.COMPLETED, S.RUNNING, actor="x")


def test_fencing_stale_attempt_cannot_write(store: Store) -> None:
    job_id = new_job(store)
    with store.unit_of_work() as session:
        first = ops.claim(session, job_id, executor="a", lease_seconds=30)
        assert first == 1
        assert ops.requeue(session, job_id, attempt=1, actor="reaper", failure=FAILURE)
        second = ops.claim(session, job_id, executor="b", lease_seconds=30)
        assert second == 2
    with store.unit_of_work() as session:
        # The zombie first run: every write misses.
        assert ops.heartbeat(session, job_id, attempt=1, lease_seconds=30) is None
        assert not ops.complete(session, job_id, attempt=1, executor="a", result={"x": 1}, statistics={})
        assert not ops.fail(session, job_id, attempt=1, actor="a", failure=FAILURE)
        assert ops.heartbeat(session, job_id, attempt=2, lease_seconds=30) is S.RUNNING
        assert ops.complete(session, job_id, attempt=2, executor="b", result={"x": 2}, statistics={})
    with store.unit_of_work() as session:
        job = session.get_one(Job, job_id)
        assert job.result == {"x": 2}
        assert job.attempts == 2
        assert [f["message"] for f in job.failures] == ["boom"]


def test_failures_accumulate_in_order(store: Store) -> None:
    job_id = new_job(store)
    for attempt in (1, 2):
        with store.unit_of_work() as session:
            assert ops.claim(session, job_id, executor="w", lease_seconds=30) == attempt
            assert ops.requeue(session, job_id, attempt=attempt, actor="reaper",
                               failure=ops.failure_entry(f"lost {attempt}", {"attempt": attempt}))
    with store.unit_of_work() as session:
        assert ops.claim(session, job_id, executor="w", lease_seconds=30) == 3
        assert ops.fail(session, job_id, attempt=3, actor="w", failure=ops.failure_entry("final"))
        job = session.get_one(Job, job_id)
        assert [f["message"] for f in job.failures] == ["lost 1", "lost 2", "final"]
        assert job.failures[0]["value"] == {"attempt": 1}
        assert job.state == "failed" and job.ended_at is not None


def test_heartbeat_reports_pending_cancellation(store: Store) -> None:
    job_id = new_job(store)
    with store.unit_of_work() as session:
        attempt = ops.claim(session, job_id, executor="w", lease_seconds=30)
        assert attempt == 1
        assert ops.request_cancellation(session, job_id, actor="user")
        assert ops.heartbeat(session, job_id, attempt=1, lease_seconds=30) is S.PENDING_CANCELLATION
        # A second request is a no-op (seed 002).
        assert not ops.request_cancellation(session, job_id, actor="user")
