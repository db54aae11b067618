"""The `td_jobs` rows: what the Treasure Data surface keeps of a job beyond `jobs`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.errors import ResultExpired
from shared.states import JobState
from shared.store.db import execute_dml
from shared.store.models import Job, TdJob
from shared.store.types import utcnow

INTERACTIVE_TAG = "interactive"
# An interactive query's result dataset is named f"{RESULT_DATASET_PREFIX}{job_id.hex}".
RESULT_DATASET_PREFIX = "td_result_"
# A job's msgpack.gz result object (shared/td_results.py): no dataset prefix, so the orphan
# sweep leaves it alone.
RESULT_PREFIX = "td-results/"


def gz_key(job_id: uuid.UUID) -> str:
    return f"{RESULT_PREFIX}{job_id}.msgpack.gz"


def add_td_job(session: Session, *, job_id: uuid.UUID, company_id: int, td_type: str,
               query: str, database: str, interactive: bool) -> TdJob:
    row = TdJob(job_id=job_id, company_id=company_id, td_type=td_type, query=query,
                database=database, interactive=interactive, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def td_job(session: Session, job_id: uuid.UUID) -> TdJob | None:
    return session.get(TdJob, job_id)


def td_jobs(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, TdJob]:
    ids = list(job_ids)
    if not ids:
        return {}
    return {row.job_id: row for row in session.scalars(select(TdJob).where(TdJob.job_id.in_(ids)))}


def set_result_size(session: Session, job_id: uuid.UUID, size: int) -> None:
    execute_dml(session, update(TdJob).where(TdJob.job_id == job_id).values(result_size=size))


def expiry_cutoff(ttl_seconds: int, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=ttl_seconds)


def is_expired(job: Job, td: TdJob | None, ttl_seconds: int) -> bool:
    """An interactive result is gone once the retention duty deleted it, and already
    from the moment its TTL ran out (the duty may not have passed yet)."""
    if td is None or not td.interactive:
        return False
    if td.result_expired_at is not None:
        return True
    return job.ended_at is not None and job.ended_at < expiry_cutoff(ttl_seconds)


def check_not_expired(session: Session, job: Job, ttl_seconds: int) -> None:
    """ResultExpired (410) for an interactive query's expired result."""
    if is_expired(job, td_job(session, job.id), ttl_seconds):
        raise ResultExpired(f"The result of job {job.id} expired: interactive query results "
                            f"are kept {ttl_seconds} seconds")


@dataclass(frozen=True)
class ExpiredResult:
    job_id: uuid.UUID
    dataset_id: int | None


def due_for_expiry(session: Session, ttl_seconds: int, *, limit: int = 100) -> list[ExpiredResult]:
    """Interactive jobs that ended before the TTL cutoff and whose data is still there."""
    rows = session.execute(
        select(Job.id, Job.dataset_id)
        .join(TdJob, TdJob.job_id == Job.id)
        .where(TdJob.interactive.is_(True), TdJob.result_expired_at.is_(None),
               Job.state.in_([JobState.COMPLETED.value, JobState.FAILED.value,
                              JobState.CANCELLED.value]),
               Job.ended_at < expiry_cutoff(ttl_seconds))
        .order_by(Job.ended_at).limit(limit)
    )
    return [ExpiredResult(row.id, row.dataset_id) for row in rows]


def mark_expired(session: Session, job_ids: Sequence[uuid.UUID]) -> int:
    if not job_ids:
        return 0
    return execute_dml(session, update(TdJob).where(
        TdJob.job_id.in_(list(job_ids)), TdJob.result_expired_at.is_(None)
    ).values(result_expired_at=utcnow()))
