"""The state-machine side of a run: claim it, and settle how it ended.

Every write here is a compare-and-set in `shared.store.jobs`; after the claim each one is
fenced by the attempt number the claim returned, so a stale run cannot change the job.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import OutputTooLarge
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import claim_row, fail, failure_entry, finalize_cancel, requeue, run_state
from shared.store.models import Job
from shared.store.types import utcnow
from worker.failures import Failure, Kind, classify
from worker.watch import RunStopped, StopReason

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    REQUEUED = "requeued"
    CANCELLED = "cancelled"
    FENCED = "fenced"  # another attempt (or the reaper) owns the job: this run wrote nothing
    SKIPPED = "skipped"  # the message found nothing to run (duplicate, cancelled, backoff)


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """What a run needs of its job row, read once at claim time."""

    job_id: uuid.UUID
    attempt: int
    company_id: int
    type: str
    nql: str
    stats_enabled: bool
    retry_limit: int
    infra_retries: int
    created_at: datetime
    started_at: datetime
    dataset_id: int | None = None  # the dataset a refresh (or a view re-run) writes

    def statistics(self, *, rows: int = 0, size: int = 0) -> dict[str, Any]:
        now = utcnow()
        return {
            "records_inserted": rows,
            "result_size": size,
            "duration_ms": int((now - self.started_at).total_seconds() * 1000),
            "queued_ms": int((self.started_at - self.created_at).total_seconds() * 1000),
        }


def claim_job(store: Store, settings: Settings, job_id: uuid.UUID, *, executor: str,
              read: Callable[[Session, Claimed], T]) -> tuple[Claimed, T] | None:
    """Claim the job for this run, or None when the message has nothing to run.

    One transaction: the claim (a compare-and-set returning the row the run needs), its log
    row, and `read(session, claimed)`, the run's own reads (its datasets and snapshots), so a
    healthy claim costs no read before or after the write. `read` must not raise: a claim
    that rolled back would leave the message to be retried."""
    with store.unit_of_work() as session:
        row = claim_row(session, job_id, executor=executor, lease_seconds=settings.lease_seconds,
                        due=True)
        if row is None:
            _not_claimed(session, job_id, executor)
            return None
        claimed = Claimed(job_id=job_id, attempt=row.attempt, company_id=row.company_id,
                          type=row.type, nql=row.nql, stats_enabled=row.stats_enabled,
                          retry_limit=row.retry_limit, infra_retries=row.infra_retries,
                          created_at=row.created_at, started_at=row.started_at,
                          dataset_id=row.dataset_id)
        return claimed, read(session, claimed)


def _not_claimed(session: Session, job_id: uuid.UUID, executor: str) -> None:
    """Why the claim matched nothing (the rare path: only now is the row read)."""
    job = session.get(Job, job_id)
    if job is None:
        log.warning("job %s: no such job, message dropped", job_id)
    elif job.state == JobState.PENDING and job.run_after and job.run_after > utcnow():
        # A stale message: the dispatcher publishes the retry itself once run_after is due.
        log.info("job %s: backing off until %s, message dropped", job_id, job.run_after)
    elif job.state == JobState.PENDING_CANCELLATION and job.executor is None:
        # Cancelled while queued: it never starts; finalize it (dispatcher may race us).
        finalize_cancel(session, job_id, actor=executor, attempt=job.attempts,
                        reason="cancelled before it started", where=(Job.executor.is_(None),))
    else:
        log.info("job %s is %s: duplicate or stale message, nothing to do", job_id, job.state)


def _cancel(store: Store, run: Claimed, executor: str) -> Outcome:
    with store.unit_of_work() as session:
        finalize_cancel(session, run.job_id, actor=executor, attempt=run.attempt)
        state = run_state(session, run.job_id, attempt=run.attempt)
    return Outcome.CANCELLED if state == JobState.CANCELLED else Outcome.FENCED


def backoff(settings: Settings, infra_retries: int) -> timedelta:
    return timedelta(seconds=settings.retry_backoff_seconds * (2 ** infra_retries))


def settle(store: Store, settings: Settings, run: Claimed, error: BaseException,
           reason: StopReason | None, *, executor: str, compiled_sql: str | None = None) -> Outcome:
    """Record how a run that raised ended. A cancellation wins over the error it caused."""
    if reason is None and isinstance(error, RunStopped):
        reason = error.reason
    if reason == StopReason.CANCELLED:
        return _cancel(store, run, executor)
    if reason == StopReason.FENCED:
        log.info("job %s attempt %s: fenced off, output discarded", run.job_id, run.attempt)
        return Outcome.FENCED
    if reason == StopReason.OUTPUT_LIMIT:
        error = OutputTooLarge(settings.max_output_bytes)
    failure = classify(error, timeout_seconds=settings.job_timeout_seconds)
    if reason == StopReason.TIMED_OUT and failure.kind != Kind.TIMEOUT:
        failure = Failure(Kind.TIMEOUT, f"timed out after {settings.job_timeout_seconds} s",
                          {"type": "JobTimedOut", "timeout_seconds": settings.job_timeout_seconds})
    log.log(logging.WARNING if failure.kind in (Kind.INFRA, Kind.OUTAGE) else logging.INFO,
            "job %s attempt %s: %s error: %s", run.job_id, run.attempt, failure.kind,
            failure.message, exc_info=failure.kind == Kind.INFRA)
    outage = failure.kind == Kind.OUTAGE
    retry = (failure.kind == Kind.INFRA and run.infra_retries < run.retry_limit) or (
        outage and run.attempt < settings.max_attempts)
    message = failure.message
    if failure.kind == Kind.INFRA and run.retry_limit and not retry:
        message += f" (failed after {run.retry_limit} retries)"
    if outage:
        message += "; the job was queued again" if retry else f" on all {run.attempt} runs"
    entry = failure_entry(message, {**failure.value, "attempt": run.attempt, "kind": failure.kind})
    with store.unit_of_work() as session:
        if retry:
            done = requeue(session, run.job_id, attempt=run.attempt, actor=executor, failure=entry,
                           run_after=utcnow() + backoff(settings, run.infra_retries),
                           infra_retry=not outage)
        else:
            done = fail(session, run.job_id, attempt=run.attempt, actor=executor, failure=entry,
                        statistics=run.statistics(), compiled_sql=compiled_sql)
    if done:
        return Outcome.REQUEUED if retry else Outcome.FAILED
    with store.unit_of_work() as session:
        state = run_state(session, run.job_id, attempt=run.attempt)
    if state == JobState.PENDING_CANCELLATION:
        return _cancel(store, run, executor)
    return Outcome.FENCED


def hand_back(store: Store, run: Claimed, *, executor: str) -> Outcome:
    """The worker is shutting down mid-run: the job goes back to `pending` at once (no
    infrastructure retry counted: the job did nothing wrong), or to `cancelled` if that
    was asked meanwhile."""
    entry = failure_entry("The worker shut down during the run; the job was queued again",
                          {"type": "WorkerShutdown", "attempt": run.attempt, "kind": "shutdown"})
    with store.unit_of_work() as session:
        done = requeue(session, run.job_id, attempt=run.attempt, actor=executor, failure=entry)
        state = run_state(session, run.job_id, attempt=run.attempt)
    if done:
        return Outcome.REQUEUED
    if state == JobState.PENDING_CANCELLATION:
        return _cancel(store, run, executor)
    return Outcome.FENCED


def record_timeout(store: Store, settings: Settings, run: Claimed, *, executor: str) -> None:
    """From the watcher, when DuckDB ignores the interrupt: end the job as timed out."""
    entry = failure_entry(f"timed out after {settings.job_timeout_seconds} s",
                          {"type": "JobTimedOut", "timeout_seconds": settings.job_timeout_seconds,
                           "attempt": run.attempt, "kind": Kind.TIMEOUT})
    with store.unit_of_work() as session:
        fail(session, run.job_id, attempt=run.attempt, actor=executor, failure=entry,
             statistics=run.statistics())
