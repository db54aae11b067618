"""`export` jobs: made by the TD surface (`/v3/export/run`, `/v3/job/result_export`, a
query's `result` URL) and run by `worker/export.py`.

An export job's row says little (`nql` is a readable, redacted description); its plan is in
`td_jobs`: `export_spec` (source and location, nothing secret) and `result_url_encrypted`
(the credentials, Fernet-encrypted). The Celery message carries the job id only.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import InvalidRequest
from shared.export_target import Location, Target, encrypt_credentials
from shared.states import ExecutionCluster, JobType
from shared.store.jobs import NewJob, create_job, get_job
from shared.store.models import Dataset, Job, TdJob
from shared.store.types import utcnow

TIME_COLUMN = "time"
_INTEGER_TYPES = ("BIGINT", "INTEGER", "INT", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER",
                  "HUGEINT", "INT8", "INT4")


def time_column_type(dataset: Dataset) -> str | None:
    for name, kind in dataset.schema:
        if name == TIME_COLUMN:
            return str(kind)
    return None


def check_time_range(dataset: Dataset, time_from: int | None, time_to: int | None) -> None:
    if time_from is None and time_to is None:
        return
    kind = time_column_type(dataset)
    if kind is None:
        raise InvalidRequest(f"Table {dataset.name!r} has no {TIME_COLUMN!r} column: "
                             "from/to cannot be applied to it")
    upper = kind.upper()
    if not (upper.startswith("TIMESTAMP") or upper in _INTEGER_TYPES):
        raise InvalidRequest(f"Table {dataset.name!r}: its {TIME_COLUMN!r} column is {kind}, "
                             "neither Unix seconds nor a timestamp")


def create_export(session: Session, settings: Settings, *, company_id: int, user_id: int,
                  source: dict[str, Any], target: Target, idempotency_key: str | None,
                  priority: int = 0, retry_limit: int = 0,
                  compute_pool_id: uuid.UUID | None = None,
                  database: str = "company_data", encrypted: str | None = None,
                  user_actor: str = "api") -> tuple[Job, bool]:
    """The export job (or the existing one of this idempotency key); (job, created).
    `source`: `{"kind": "job", "job_id"}` or `{"kind": "dataset", "dataset_id", "from", "to"}`.
    `encrypted`: the credentials already encrypted (a query's stored result URL)."""
    if encrypted is None:
        encrypted = encrypt_credentials(settings, target.credentials)  # 400 without a key
    location = target.location
    what = (f"RESULT OF JOB {source['job_id']}" if source["kind"] == "job"
            else f'company_data."{source["dataset_id"]}"')
    description = f"EXPORT {what} TO '{location.redacted()}' FORMAT {location.format}"
    job, created = create_job(session, NewJob(
        company_id=company_id, user_id=user_id, type=JobType.EXPORT.value, nql=description,
        idempotency_key=idempotency_key, priority=priority, retry_limit=retry_limit,
        compute_pool_id=compute_pool_id,
        execution_cluster=(ExecutionCluster.DEDICATED if compute_pool_id else
                           ExecutionCluster.SHARED).value), actor=user_actor)
    if not created:
        return job, False
    source_job_id = uuid.UUID(source["job_id"]) if source["kind"] == "job" else None
    session.add(TdJob(job_id=job.id, company_id=company_id, td_type=JobType.EXPORT.value,
                      query=description, database=database, interactive=False,
                      result_url_encrypted=encrypted, result_url_redacted=location.redacted(),
                      export_spec={"source": source, "location": location.to_json()},
                      result_export_target_job_id=source_job_id, created_at=utcnow()))
    if source_job_id is not None:
        link_source(session, source_job_id, job.id)
    session.flush()
    return job, True


def link_source(session: Session, source_job_id: uuid.UUID, export_job_id: uuid.UUID) -> None:
    """The originating job names its export (`linked_result_export_job_id`)."""
    row = session.get(TdJob, source_job_id)
    if row is None:  # a job made on our own API: give it its TD row now
        source = get_job(session, source_job_id)
        row = TdJob(job_id=source.id, company_id=source.company_id, td_type=source.type,
                    query=source.nql, database="company_data", interactive=False,
                    created_at=utcnow())
        session.add(row)
    row.linked_result_export_job_id = export_job_id


def location_of(spec: dict[str, Any]) -> Location:
    return Location.from_json(spec["location"])
