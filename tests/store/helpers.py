"""Small builders for store tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update

from shared.states import JobState
from shared.store import Store
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job


def new_job(store: Store, *, company_id: int = 1, **overrides: Any) -> uuid.UUID:
    fields: dict[str, Any] = {"company_id": company_id, "user_id": 7, "type": "nql-forecast",
                              "nql": "EXPLAIN SELECT 1"}
    fields.update(overrides)
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(**fields))
        return job.id


def force_state(store: Store, job_id: uuid.UUID, state: JobState, *, attempts: int = 1) -> None:
    """Put a job in `state` directly (test setup only: bypasses the state machine)."""
    with store.unit_of_work() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=state.value, attempts=attempts))


def state_of(store: Store, job_id: uuid.UUID) -> JobState:
    with store.unit_of_work() as session:
        return JobState(session.get_one(Job, job_id).state)
