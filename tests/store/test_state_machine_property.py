"""Random sequences of store operations never leave a job in a state the table forbids,
never move a terminal job, and the transition log always agrees with the row."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shared.states import TERMINAL_STATES, JobState, is_allowed
from shared.store import Store
from shared.store import jobs as ops
from shared.store.models import Job
from tests.store.helpers import new_job


def make_machine(store: Store) -> type[RuleBasedStateMachine]:
    class JobMachine(RuleBasedStateMachine):
        job_id: uuid.UUID
        terminal_seen: JobState | None

        @initialize()
        def submit(self) -> None:
            self.job_id = new_job(store, idempotency_key=str(uuid.uuid4()))
            self.terminal_seen = None

        def _attempt(self, stale: bool) -> int:
            with store.unit_of_work() as session:
                attempts = session.get_one(Job, self.job_id).attempts
            return max(attempts - 1, 0) if stale else attempts

        @rule()
        def claim(self) -> None:
            with store.unit_of_work() as session:
                ops.claim(session, self.job_id, executor="w", lease_seconds=30)

        @rule(stale=st.booleans())
        def heartbeat(self, stale: bool) -> None:
            attempt = self._attempt(stale)
            with store.unit_of_work() as session:
                ops.heartbeat(session, self.job_id, attempt=attempt, lease_seconds=30)

        @rule(stale=st.booleans())
        def complete(self, stale: bool) -> None:
            attempt = self._attempt(stale)
            with store.unit_of_work() as session:
                ops.complete(session, self.job_id, attempt=attempt, executor="w",
                             result={"ok": True}, statistics={})

        @rule(stale=st.booleans())
        def fail(self, stale: bool) -> None:
            attempt = self._attempt(stale)
            with store.unit_of_work() as session:
                ops.fail(session, self.job_id, attempt=attempt, actor="w",
                         failure=ops.failure_entry("x"))

        @rule(stale=st.booleans())
        def requeue(self, stale: bool) -> None:
            attempt = self._attempt(stale)
            with store.unit_of_work() as session:
                ops.requeue(session, self.job_id, attempt=attempt, actor="reaper",
                            failure=ops.failure_entry("lost"))

        @rule()
        def request_cancellation(self) -> None:
            with store.unit_of_work() as session:
                ops.request_cancellation(session, self.job_id, actor="user")

        @rule()
        def finalize_cancel(self) -> None:
            with store.unit_of_work() as session:
                ops.finalize_cancel(session, self.job_id, actor="w")

        @rule()
        def cancel(self) -> None:
            with store.unit_of_work() as session:
                ops.cancel(session, self.job_id, actor="user")

        @invariant()
        def consistent(self) -> None:
            with store.unit_of_work() as session:
                job = session.get_one(Job, self.job_id)
                log = ops.transitions_of(session, self.job_id)
            state = JobState(job.state)
            assert log[0].from_state is None and log[0].to_state == "pending"
            for previous, step in itertools.pairwise(log):
                assert step.from_state == previous.to_state
                assert is_allowed(JobState(step.from_state), JobState(step.to_state))
            assert log[-1].to_state == state.value
            if self.terminal_seen is not None:
                assert state is self.terminal_seen, "a terminal job moved"
            if state in TERMINAL_STATES:
                self.terminal_seen = state
                assert job.ended_at is not None
            else:
                assert job.ended_at is None

    return JobMachine


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_random_operation_sequences(store: Store) -> None:
    machine = make_machine(store)
    machine.TestCase.settings = settings(
        max_examples=40, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    machine.TestCase().runTest()
