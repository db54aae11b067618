"""Our jobs as TD's job answers: status names, TD dates, and the seed's fields."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.results import FORECAST_FIELDS
from shared.states import JobState, JobType
from shared.storage import Storage, StorageError
from shared.store.datasets import snapshot_of_job
from shared.store.models import Dataset, Job, TdJob
from shared.store.td import is_expired
from shared.td_results import ensure_msgpack_gz, hive_schema, td_date

STATUS = {
    JobState.PENDING: "queued",
    JobState.RUNNING: "running",
    JobState.PENDING_CANCELLATION: "running",
    JobState.COMPLETED: "success",
    JobState.FAILED: "error",
    JobState.CANCELLED: "killed",
}
# TD's status filter of /v3/job/list, to our states.
STATES_OF_STATUS: dict[str, list[str]] = {}
for _state, _status in STATUS.items():
    STATES_OF_STATUS.setdefault(_status, []).append(_state.value)


def td_status(job: Job) -> str:
    return STATUS[JobState(job.state)]


def _duration(job: Job) -> int | None:
    if job.started_at is None:
        return None
    if job.ended_at is None:
        return None
    return max(int((job.ended_at - job.started_at).total_seconds()), 0)


def _num_records(session: Session, job: Job) -> int | None:
    if job.state != JobState.COMPLETED:
        return None
    if job.type == JobType.NQL_FORECAST:
        return 1
    if job.type == JobType.EXPORT:  # the rows written to the target
        return int((job.result or {}).get("rows", 0))
    snapshot = snapshot_of_job(session, job.id)
    return snapshot.added_rows if snapshot is not None else 0


def _schema(session: Session, job: Job) -> str | None:
    if job.state != JobState.COMPLETED:
        return None
    if job.type == JobType.NQL_FORECAST:
        result = job.result or {}
        return hive_schema([(f, "BIGINT") for f in FORECAST_FIELDS if f in result])
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id is not None else None
    return hive_schema(dataset.schema if dataset is not None else [])


def _id(value: Any) -> str | None:
    return str(value) if value is not None else None


def status_fields(session: Session, storage: Storage, job: Job, td: TdJob | None,
                  ttl_seconds: int, *, with_size: bool = True) -> dict[str, Any]:
    """The fields of `/v3/job/status` (a subset of show's)."""
    size = None
    if with_size and job.state == JobState.COMPLETED and not is_expired(job, td, ttl_seconds):
        try:
            size = ensure_msgpack_gz(session, storage, job)
        except StorageError:
            size = None  # an outage: show the job anyway, without its result size
    return {
        "job_id": str(job.id),
        "status": td_status(job),
        "cpu_time": None,
        "created_at": td_date(job.created_at),
        "updated_at": td_date(job.updated_at),
        "start_at": td_date(job.started_at),
        "end_at": td_date(job.ended_at),
        "duration": _duration(job),
        "num_records": _num_records(session, job),
        "result_size": size,
    }


def show_fields(session: Session, storage: Storage, job: Job, td: TdJob | None,
                ttl_seconds: int, *, base_url: str, with_size: bool = True) -> dict[str, Any]:
    stderr = "\n".join(str(f.get("message", "")) for f in job.failures or [])
    return {
        **status_fields(session, storage, job, td, ttl_seconds, with_size=with_size),
        "type": td.td_type if td is not None else job.type,
        "database": td.database if td is not None else "company_data",
        "query": td.query if td is not None else job.nql,
        "url": f"{base_url.rstrip('/')}/jobs/{job.id}",
        "user_name": str(job.user_id),
        "organization": None,
        "priority": job.priority,
        "retry_limit": job.retry_limit,
        # Always "": td-client iterates a non-empty `result` as if it were the rows. The
        # export target, redacted, is in result_url.
        "result": "",
        "result_url": (td.result_url_redacted or "") if td is not None else "",
        "hive_result_schema": _schema(session, job),
        "linked_result_export_job_id": _id(td.linked_result_export_job_id) if td else None,
        "result_export_target_job_id": _id(td.result_export_target_job_id) if td else None,
        "debug": {"cmdout": job.compiled_sql or "", "stderr": stderr or None},
        "result_expired": is_expired(job, td, ttl_seconds),
    }
