"""The job state machine on the store.

Every operation is one conditional UPDATE (compare-and-set) whose rowcount says
who won, plus its transition-log row in the same transaction. Writes of a run are
fenced by its attempt number: a zombie run whose lease was taken over matches no row.
Functions take a Session and never commit: the caller's unit of work does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.errors import JobNotFound
from shared.states import TERMINAL_STATES, JobState, is_allowed
from shared.store.db import execute_dml
from shared.store.models import Job, JobTag, JobTransition
from shared.store.sqlfuncs import json_array_append
from shared.store.types import utcnow
from shared.store.webhooks import enqueue_deliveries


@dataclass(frozen=True, kw_only=True)
class NewJob:
    company_id: int
    user_id: int
    type: str
    nql: str
    request_source_type: str = "api_user"
    idempotency_key: str | None = None
    data_plane_id: uuid.UUID | None = None
    dataset_id: int | None = None
    stats_enabled: bool = True
    tags: tuple[str, ...] = ()
    compute_pool_id: uuid.UUID | None = None
    execution_cluster: str = "shared"
    priority: int = 0
    retry_limit: int = 0
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)


# Built once: these run for every job, and SQLAlchemy's per-call statement construction
# and ORM bulk path cost more CPU than the statements themselves (bench/PROFILE.md).
_INSERT_JOB = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(Job)
    .on_conflict_do_nothing(index_elements=["company_id", "idempotency_key"])
    .returning(Job.id)
    for dialect in (postgresql, sqlite)
}
_INSERT_TRANSITION = insert(JobTransition).returning(JobTransition.id)


def failure_entry(message: str, value: dict[str, Any] | None = None,
                  at: datetime | None = None) -> dict[str, Any]:
    """A `failures[]` element as the wire format has it."""
    return {"message": message, "timestamp": (at or utcnow()).isoformat(), "value": value or {}}


def create_job(session: Session, new: NewJob, *, actor: str = "api") -> tuple[Job, bool]:
    """Insert a pending job; idempotent on (company, idempotency_key). Returns (job, created)."""
    key = new.idempotency_key or str(new.job_id)
    now = utcnow()
    row = {
        "id": new.job_id, "company_id": new.company_id, "user_id": new.user_id,
        "request_source_type": new.request_source_type, "data_plane_id": new.data_plane_id,
        "state": JobState.PENDING.value, "type": new.type, "nql": new.nql,
        "dataset_id": new.dataset_id, "stats_enabled": new.stats_enabled,
        "idempotency_key": key, "failures": [], "tags": list(dict.fromkeys(new.tags)),
        "compute_pool_id": new.compute_pool_id, "execution_cluster": new.execution_cluster,
        "priority": new.priority, "retry_limit": new.retry_limit, "attempts": 0,
        "infra_retries": 0, "statistics": {}, "created_at": now, "updated_at": now,
    }
    connection = session.connection()
    inserted = connection.execute(_INSERT_JOB[connection.dialect.name], row).scalar_one_or_none()
    if inserted is None:
        existing = session.scalars(
            select(Job).where(Job.company_id == new.company_id, Job.idempotency_key == key)
        ).one()
        return existing, False
    tags = list(dict.fromkeys(new.tags))
    if tags:
        session.execute(insert(JobTag), [{"company_id": new.company_id, "job_id": new.job_id, "tag": tag}
                                         for tag in tags])
    _log(session, new.job_id, None, JobState.PENDING, actor=actor, reason="submitted", attempt=0)
    return session.get_one(Job, new.job_id), True


def get_job(session: Session, job_id: uuid.UUID, *, company_id: int | None = None) -> Job:
    """The job, or JobNotFound (also when it belongs to another company)."""
    stmt = select(Job).where(Job.id == job_id)
    if company_id is not None:
        stmt = stmt.where(Job.company_id == company_id)
    job = session.scalars(stmt).one_or_none()
    if job is None:
        raise JobNotFound(f"Job {job_id} not found")
    return job


def _log(session: Session, job_id: uuid.UUID, source: JobState | None, target: JobState, *,
         actor: str, reason: str | None, attempt: int) -> None:
    # A Core INSERT built once, not session.add + flush: the ORM unit of work (and building
    # the statement per call) costs more CPU than the round trip on a job's hot path.
    at = utcnow()
    transition_id = session.connection().execute(_INSERT_TRANSITION, {
        "job_id": job_id, "from_state": source.value if source else None, "to_state": target.value,
        "attempt": attempt, "at": at, "actor": actor, "reason": reason,
    }).scalar_one()
    # The webhooks outbox, in this same transaction (see shared/store/webhooks.py).
    enqueue_deliveries(session, job_id=job_id, transition_id=transition_id, previous=source,
                       target=target, at=at)


def _transition(session: Session, job_id: uuid.UUID, source: JobState, target: JobState, *,
                actor: str, reason: str | None = None, attempt: int | None = None,
                values: dict[str, Any] | None = None,
                where: tuple[ColumnElement[bool], ...] = ()) -> bool:
    """The one compare-and-set every state change goes through."""
    if not is_allowed(source, target):
        raise ValueError(f"illegal transition {source} -> {target}")
    now = utcnow()
    changes: dict[str, Any] = {**(values or {}), "state": target.value, "updated_at": now}
    if target in TERMINAL_STATES:
        changes["ended_at"] = now
    stmt = update(Job).where(Job.id == job_id, Job.state == source.value, *where)
    if attempt is not None:
        stmt = stmt.where(Job.attempts == attempt)
    stmt = stmt.values(**changes).returning(Job.attempts)
    won = session.execute(stmt, execution_options={"synchronize_session": False}).scalar_one_or_none()
    if won is None:
        return False
    _log(session, job_id, source, target, actor=actor, reason=reason, attempt=won)
    session.expire_all()
    return True


@dataclass(frozen=True, kw_only=True)
class ClaimedRow:
    """What a run needs of its job, returned by the claim itself (no read before or after)."""

    attempt: int
    company_id: int
    type: str
    nql: str
    dataset_id: int | None
    stats_enabled: bool
    retry_limit: int
    infra_retries: int
    created_at: datetime
    started_at: datetime


def claim_row(session: Session, job_id: uuid.UUID, *, executor: str, lease_seconds: float,
              due: bool = False) -> ClaimedRow | None:
    """pending -> running for one executor, returning the claimed row; None when someone
    else has it or it is no longer pending (or, with `due`, its retry backoff is not over)."""
    now = utcnow()
    stmt = update(Job).where(Job.id == job_id, Job.state == JobState.PENDING.value)
    if due:
        stmt = stmt.where(or_(Job.run_after.is_(None), Job.run_after <= now))
    stmt = stmt.values(
        state=JobState.RUNNING.value, attempts=Job.attempts + 1, executor=executor,
        started_at=now, updated_at=now, heartbeat_at=now,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    ).returning(Job.attempts, Job.company_id, Job.type, Job.nql, Job.dataset_id, Job.stats_enabled,
                Job.retry_limit, Job.infra_retries, Job.created_at)
    row = session.execute(stmt, execution_options={"synchronize_session": False}).one_or_none()
    if row is None:
        return None
    attempt = int(row.attempts)
    _log(session, job_id, JobState.PENDING, JobState.RUNNING, actor=executor,
         reason="claimed", attempt=attempt)
    return ClaimedRow(attempt=attempt, company_id=row.company_id, type=row.type, nql=row.nql,
                      dataset_id=row.dataset_id, stats_enabled=row.stats_enabled,
                      retry_limit=row.retry_limit, infra_retries=row.infra_retries,
                      created_at=row.created_at, started_at=now)


def claim(session: Session, job_id: uuid.UUID, *, executor: str, lease_seconds: float) -> int | None:
    """pending -> running for one executor. Returns the attempt number (the fencing
    token) or None when someone else has it or it is no longer pending."""
    row = claim_row(session, job_id, executor=executor, lease_seconds=lease_seconds)
    return row.attempt if row is not None else None


def heartbeat(session: Session, job_id: uuid.UUID, *, attempt: int,
              lease_seconds: float, progress: int | None = None) -> JobState | None:
    """Extend this run's lease. Returns the job's state (running or pending_cancellation),
    or None when this run has been fenced off (lease taken over, job ended). `progress`
    (0-100) is kept as the running job's statistics; completion overwrites them."""
    now = utcnow()
    values: dict[str, Any] = {"heartbeat_at": now,
                              "lease_expires_at": now + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values["statistics"] = {"progress": progress}
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt,
               Job.state.in_([JobState.RUNNING.value, JobState.PENDING_CANCELLATION.value]))
        .values(**values)
        .returning(Job.state)
    )
    state = session.execute(stmt, execution_options={"synchronize_session": False}).scalar_one_or_none()
    return JobState(state) if state is not None else None


def run_state(session: Session, job_id: uuid.UUID, *, attempt: int) -> JobState | None:
    """The state as this run sees it; None when the run is fenced (another attempt owns it)."""
    row = session.execute(
        select(Job.state, Job.attempts).where(Job.id == job_id)
    ).one_or_none()
    if row is None or row.attempts != attempt:
        return None
    return JobState(row.state)


def complete(session: Session, job_id: uuid.UUID, *, attempt: int, executor: str,
             result: dict[str, Any], statistics: dict[str, Any],
             compiled_sql: str | None = None) -> bool:
    """running (or pending_cancellation: the work finished first) -> completed."""
    values: dict[str, Any] = {"result": result, "statistics": statistics, "lease_expires_at": None}
    if compiled_sql is not None:
        values["compiled_sql"] = compiled_sql
    return any(
        _transition(session, job_id, source, JobState.COMPLETED, actor=executor,
                    reason="completed", attempt=attempt, values=values)
        for source in (JobState.RUNNING, JobState.PENDING_CANCELLATION)
    )


def fail(session: Session, job_id: uuid.UUID, *, attempt: int | None, actor: str,
         failure: dict[str, Any], statistics: dict[str, Any] | None = None,
         compiled_sql: str | None = None, where: tuple[ColumnElement[bool], ...] = ()) -> bool:
    """running -> failed, appending `failure` to failures[]."""
    values: dict[str, Any] = {
        "failures": json_array_append(Job.failures, failure), "lease_expires_at": None,
    }
    if statistics is not None:
        values["statistics"] = statistics
    if compiled_sql is not None:
        values["compiled_sql"] = compiled_sql
    return _transition(session, job_id, JobState.RUNNING, JobState.FAILED, actor=actor,
                       reason=failure["message"], attempt=attempt, values=values, where=where)


def requeue(session: Session, job_id: uuid.UUID, *, attempt: int, actor: str,
            failure: dict[str, Any], run_after: datetime | None = None,
            infra_retry: bool = False, where: tuple[ColumnElement[bool], ...] = ()) -> bool:
    """running -> pending for another attempt (worker lost, or an infrastructure error
    within retry_limit). The dispatcher publishes it again once `run_after` has passed."""
    values: dict[str, Any] = {
        "failures": json_array_append(Job.failures, failure), "executor": None,
        "lease_expires_at": None, "published_at": None, "run_after": run_after,
    }
    if infra_retry:
        values["infra_retries"] = Job.infra_retries + 1
    return _transition(session, job_id, JobState.RUNNING, JobState.PENDING, actor=actor,
                       reason=failure["message"], attempt=attempt, values=values, where=where)


def request_cancellation(session: Session, job_id: uuid.UUID, *, actor: str) -> bool:
    """pending|running -> pending_cancellation; a no-op (False) for terminal jobs and for
    jobs already pending cancellation (seed 002)."""
    return any(
        _transition(session, job_id, source, JobState.PENDING_CANCELLATION, actor=actor,
                    reason="cancellation requested")
        for source in (JobState.PENDING, JobState.RUNNING)
    )


def finalize_cancel(session: Session, job_id: uuid.UUID, *, actor: str,
                    attempt: int | None = None, reason: str = "cancelled",
                    where: tuple[ColumnElement[bool], ...] = ()) -> bool:
    """pending_cancellation -> cancelled (a no-op for any other state)."""
    return _transition(session, job_id, JobState.PENDING_CANCELLATION, JobState.CANCELLED,
                       actor=actor, reason=reason, attempt=attempt,
                       values={"lease_expires_at": None}, where=where)


def cancel(session: Session, job_id: uuid.UUID, *, actor: str) -> bool:
    """The `cancel` endpoint (TD's kill): request cancellation if needed, then finalize.
    A run still going is fenced off by the state change and discards its output."""
    request_cancellation(session, job_id, actor=actor)
    return finalize_cancel(session, job_id, actor=actor, reason="cancelled by user")


def mark_published(session: Session, job_id: uuid.UUID) -> bool:
    """Record that a message for this pending job went to the broker."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.PENDING.value, Job.published_at.is_(None))
        .values(published_at=utcnow())
    )
    return execute_dml(session, stmt) == 1


def set_compiled_sql(session: Session, job_id: uuid.UUID, *, attempt: int, sql: str,
                     dataset_id: int | None = None) -> bool:
    values: dict[str, Any] = {"compiled_sql": sql, "updated_at": utcnow()}
    if dataset_id is not None:
        values["dataset_id"] = dataset_id
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt,
               Job.state.in_([JobState.RUNNING.value, JobState.PENDING_CANCELLATION.value]))
        .values(**values)
    )
    return execute_dml(session, stmt) == 1


def transitions_of(session: Session, job_id: uuid.UUID) -> list[JobTransition]:
    return list(session.scalars(
        select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id)
    ))
